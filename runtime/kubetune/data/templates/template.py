"""A chat template as data (text slots per role) plus the one algorithm that renders and encodes with it.

Slots hold ``{content}`` (and ``{system}`` for families that fuse the system prompt into a user turn: the first,
or the last with ``system_last``), ``{eos}`` for the tokenizer's EOS text. ``system_always`` renders the system
slot even without a system prompt (families whose header carries fixed text, such as Llama 3.1's dates). The user
slot ends with the assistant header, so a prompt for generation is the history plus the last user slot. Encoding
tokenizes the whole rendered conversation in one call and splits the ids at the turn boundaries by character
offsets, so the ids are exactly those of tokenizing the rendered text (what ``tokenizer.apply_chat_template``
does) and BPE merges across turn boundaries cannot make them differ.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from kubetune.data.templates.tools import TOOL_FORMATS, ToolCall

Message = dict[str, Any]  # {"role": "user"|"assistant"|"tool", "content": str, "tool_calls"?: [...]}
EMPTY_THOUGHT = "<think>\n\n</think>\n\n"
_THOUGHT = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


class TemplateError(ValueError):
    """A conversation the template cannot render (wrong role order, tools on a family without them)."""


def split_system(messages: list[Message], system: str | None) -> tuple[list[Message], str | None]:
    """Take a leading system message out of ``messages`` (an explicit ``system`` argument wins)."""
    if messages and messages[0]["role"] == "system":
        return list(messages[1:]), system if system is not None else messages[0]["content"]
    return list(messages), system


def check_roles(messages: list[Message], *, ends_with_assistant: bool) -> None:
    """user/tool at even positions, assistant at odd positions; raise TemplateError naming the position."""
    for i, msg in enumerate(messages):
        expected = ("assistant",) if i % 2 else ("user", "tool")
        if msg["role"] not in expected:
            raise TemplateError(f"message {i} has role {msg['role']!r}, expected {' or '.join(expected)} "
                                "(turns alternate user/tool then assistant)")
    if not messages or (len(messages) % 2 == 0) != ends_with_assistant:
        last = "an assistant" if ends_with_assistant else "a user or tool"
        raise TemplateError(f"conversation must end with {last} message")


@dataclass(frozen=True)
class Template:
    """One chat format. See the module docstring for the slot language; ``jinja`` is the equivalent
    Jinja chat template (what an exported tokenizer carries and ``apply_chat_template`` renders)."""

    name: str
    user: str
    assistant: str
    system: str | None = None
    first_user: str | None = None  # families without a system slot fuse it into the first user turn
    system_last: bool = False  # ... or into the last user turn (Mistral's v3 and Tekken formats)
    system_always: bool = False
    prefix: str = ""
    observation: str | None = None
    default_system: str = ""
    stop_words: tuple[str, ...] = ()
    efficient_eos: bool = False
    tool_format: str | None = None
    thinking: bool = False
    mm_plugin: str | None = None  # how images enter the text (kubetune.data.media.PLUGINS); None = text only
    jinja: str = ""

    # ---- rendering (pure) ----

    def _system_text(self, system: str | None, tools: list[dict[str, Any]] | None) -> str:
        text = self.default_system if system is None else system
        if tools:
            if self.tool_format is None:
                raise TemplateError(f"template {self.name} has no tool format; tools cannot be used")
            described = TOOL_FORMATS[self.tool_format].format_tools(tools)
            # without a system prompt the tool description opens the system turn (no leading blank lines)
            text = text + described if text else described.lstrip("\n")
        return text

    def _query(self, index: int, msg: Message, system: str, last: bool) -> str:
        if msg["role"] == "tool":
            return (self.observation or self.user).replace("{content}", msg["content"])
        fused = last if self.system_last else index == 0
        if fused and system and self.system is None and self.first_user is not None:
            return self.first_user.replace("{system}", system).replace("{content}", msg["content"])
        return self.user.replace("{content}", msg["content"])

    def _answer_text(self, msg: Message, last: bool) -> str:
        text = msg.get("content") or ""
        if msg.get("tool_calls"):
            if self.tool_format is None:
                raise TemplateError(f"template {self.name} has no tool format; tool calls cannot be used")
            calls = [c if isinstance(c, ToolCall) else ToolCall.of(c) for c in msg["tool_calls"]]
            text = (text + "\n" if text else "") + TOOL_FORMATS[self.tool_format].format_calls(calls)
        if self.thinking:
            text = text if last and "<think>" in text else _THOUGHT.sub("", text)
        return text

    def render_turns(self, messages: list[Message], system: str | None = None,
                     tools: list[dict[str, Any]] | None = None, *, eos_token: str = "",
                     enable_thinking: bool = True, final: bool = True) -> list[tuple[str, str]]:
        """(prompt text, response text) per turn of a conversation that ends with an assistant message.

        ``final`` marks the last answer as the one being produced (reasoning families keep or add its thought
        block); history inside a generation prompt is rendered with ``final=False``.
        """
        messages, system = split_system(messages, system)
        check_roles(messages, ends_with_assistant=True)
        sys_text = self._system_text(system, tools)
        turns = []
        for i in range(0, len(messages), 2):
            last = final and i + 2 == len(messages)
            prompt = self._head(i, sys_text) + self._query(i, messages[i], sys_text, last)
            answer = self._answer_text(messages[i + 1], last)
            if self.thinking and last and "<think>" not in answer:
                if enable_thinking:
                    answer = EMPTY_THOUGHT + answer  # learned: the model keeps emitting the (empty) block
                else:
                    prompt += EMPTY_THOUGHT
            turns.append((prompt, self.assistant.replace("{eos}", eos_token).replace("{content}", answer)))
        return turns

    def _head(self, index: int, sys_text: str) -> str:
        if index:
            return ""
        if (sys_text or self.system_always) and self.system is not None:
            return self.prefix + self.system.replace("{content}", sys_text)
        return self.prefix

    def render_prompt(self, messages: list[Message], system: str | None = None,
                      tools: list[dict[str, Any]] | None = None, *, eos_token: str = "",
                      enable_thinking: bool = True) -> str:
        """The text a model continues to answer the last user (or tool) message."""
        messages, system = split_system(messages, system)
        check_roles(messages, ends_with_assistant=False)
        history = self.render_turns(messages[:-1], system, tools, eos_token=eos_token,
                                    final=False) if len(messages) > 1 else []
        sys_text = self._system_text(system, tools)
        i = len(messages) - 1
        text = "".join(p + r for p, r in history) + self._head(i, sys_text) + self._query(i, messages[-1], sys_text,
                                                                                          True)
        return text + (EMPTY_THOUGHT if self.thinking and not enable_thinking else "")

    # ---- encoding ----

    def encode_multiturn(self, tokenizer: Any, messages: list[Message], system: str | None = None,
                         tools: list[dict[str, Any]] | None = None,
                         enable_thinking: bool = True) -> list[tuple[list[int], list[int]]]:
        """(prompt ids, response ids) per turn; their concatenation equals tokenizing the rendered text."""
        turns = self.render_turns(messages, system, tools, eos_token=tokenizer.eos_token or "",
                                  enable_thinking=enable_thinking)
        ids = encode_segments(tokenizer, [part for turn in turns for part in turn])
        return [(ids[2 * k], ids[2 * k + 1]) for k in range(len(turns))]

    def encode_prompt(self, tokenizer: Any, messages: list[Message], system: str | None = None,
                      tools: list[dict[str, Any]] | None = None, enable_thinking: bool = True) -> list[int]:
        """Token ids of the generation prompt for ``messages`` (ending with a user or tool message)."""
        text = self.render_prompt(messages, system, tools, eos_token=tokenizer.eos_token or "",
                                  enable_thinking=enable_thinking)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    # ---- generation helpers ----

    def stop_token_ids(self, tokenizer: Any) -> list[int]:
        """Ids that end a reply: the stop words that are single tokens, plus the tokenizer's EOS."""
        ids = [tokenizer.convert_tokens_to_ids(w) for w in self.stop_words]
        ids.append(tokenizer.eos_token_id)
        unk = getattr(tokenizer, "unk_token_id", None)
        return sorted({i for i in ids if i is not None and i != unk})

    def parse_tool_calls(self, text: str) -> tuple[str, list[ToolCall]]:
        """Split generated text into (content, tool calls); families without tools return (text, [])."""
        if self.tool_format is None:
            return text, []
        return TOOL_FORMATS[self.tool_format].parse_calls(text)


def encode_segments(tokenizer: Any, segments: list[str]) -> list[list[int]]:
    """Tokenize the concatenation of ``segments`` once and give each segment the tokens that start in it.

    Slow tokenizers (no offsets) fall back to tokenizing each segment on its own.
    """
    text = "".join(segments)
    if not getattr(tokenizer, "is_fast", False):
        return [list(tokenizer(s, add_special_tokens=False)["input_ids"]) if s else [] for s in segments]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ends, pos = [], 0
    for seg in segments:
        pos += len(seg)
        ends.append(pos)
    out: list[list[int]] = [[] for _ in segments]
    for token, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        out[min(bisect_right(ends, start), len(segments) - 1)].append(token)
    return out


def tool_calls_json(calls: list[ToolCall]) -> str:
    """Tool calls as the JSON list the dataset formats store in function messages."""
    return json.dumps([{"name": c.name, "arguments": c.args()} for c in calls], ensure_ascii=False)
