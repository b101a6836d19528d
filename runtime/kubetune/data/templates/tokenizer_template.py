"""The tokenizer's own Jinja chat template behind the Template interface (used when no template is named).

Turn boundaries come from rendering growing prefixes of the conversation: the text up to turn k's generation
prompt, then up to the end of turn k's answer. This needs an incremental template (each render extends the
previous one); templates that rewrite history (for example by dropping earlier reasoning) are rejected with a
message that says to name a template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.data.templates.template import (
    Message,
    TemplateError,
    check_roles,
    encode_segments,
    split_system,
)
from kubetune.data.templates.tools import ToolCall


@dataclass(frozen=True)
class TokenizerTemplate:
    """Chat formatting by ``tokenizer.apply_chat_template``; same methods as Template."""

    tokenizer: Any
    name: str = "tokenizer"
    efficient_eos: bool = False

    def _render(self, messages: list[Message], tools: Any, generation: bool, **kwargs: Any) -> str:
        return str(self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                      add_generation_prompt=generation, **kwargs))

    def _segments(self, messages: list[Message], system: str | None, tools: Any, **kwargs: Any) -> list[str]:
        body, system = split_system(messages, system)
        check_roles(body, ends_with_assistant=True)
        head = [{"role": "system", "content": system}] if system is not None else []
        segments, done = [], ""
        for k in range(0, len(body), 2):
            for upto, generation in ((k + 1, True), (k + 2, False)):
                text = self._render(head + body[:upto], tools, generation, **kwargs)
                if not text.startswith(done):
                    raise TemplateError("the tokenizer's chat_template rewrites earlier turns, so turns cannot be "
                                        "split for training; set `template` to a registered template")
                segments.append(text[len(done):])
                done = text
        return segments

    def encode_multiturn(self, tokenizer: Any, messages: list[Message], system: str | None = None,
                         tools: list[dict[str, Any]] | None = None,
                         enable_thinking: bool = True) -> list[tuple[list[int], list[int]]]:
        ids = encode_segments(tokenizer, self._segments(messages, system, tools, enable_thinking=enable_thinking))
        return [(ids[k], ids[k + 1]) for k in range(0, len(ids), 2)]

    def encode_prompt(self, tokenizer: Any, messages: list[Message], system: str | None = None,
                      tools: list[dict[str, Any]] | None = None, enable_thinking: bool = True) -> list[int]:
        body, system = split_system(messages, system)
        check_roles(body, ends_with_assistant=False)
        head = [{"role": "system", "content": system}] if system is not None else []
        text = self._render(head + body, tools, True, enable_thinking=enable_thinking)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def stop_words(self) -> tuple[str, ...]:
        return (self.tokenizer.eos_token,) if self.tokenizer.eos_token else ()

    def stop_token_ids(self, tokenizer: Any) -> list[int]:
        return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def parse_tool_calls(self, text: str) -> tuple[str, list[ToolCall]]:
        return text, []
