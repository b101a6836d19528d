"""Tool calls in model output: the syntaxes of the template families, as data, and their parsers.

A format names the marker that opens a call in the generated text, the marker that closes it (None: the call
runs to the end of the output) and how to read the body. The same format drives the whole-text parse and the
streaming parser, so streamed and non-streamed responses agree.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubetune.serve.engine.textstream import held_back

Call = tuple[str, str]  # (function name, JSON arguments)


def _call(obj: Any) -> Call:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ValueError("a tool call is an object with a string 'name'")
    args = obj.get("arguments", obj.get("parameters", {}))
    return obj["name"], args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


def _one_object(body: str) -> list[Call]:
    return [_call(json.loads(body))]


def _object_or_list(body: str) -> list[Call]:
    data = json.loads(body)
    return [_call(d) for d in data] if isinstance(data, list) else [_call(data)]


def _json_lines(body: str) -> list[Call]:
    """Llama 3.1: one JSON call per line, optionally after <|python_tag|>."""
    lines = body.removeprefix("<|python_tag|>").strip().splitlines()
    if not lines:
        raise ValueError("no tool call")
    return [_call(json.loads(line)) for line in lines]


def _name_then_arguments(body: str) -> list[Call]:
    """GLM-4: the function name on one line, its JSON arguments on the next."""
    name, sep, args = body.strip().partition("\n")
    if not sep or not re.fullmatch(r"[\w.-]+", name):
        raise ValueError("not a GLM-4 tool call")
    json.loads(args)
    return [(name, args.strip())]


@dataclass(frozen=True)
class ToolFormat:
    name: str
    start: str
    end: str | None
    parse: Callable[[str], list[Call]]


TOOL_FORMATS: dict[str, ToolFormat] = {
    # Qwen2.5/Qwen3, Hermes and other chatml models: <tool_call>{"name": ..., "arguments": {...}}</tool_call>
    "hermes": ToolFormat("hermes", "<tool_call>", "</tool_call>", _one_object),
    # Mistral: [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]
    "mistral": ToolFormat("mistral", "[TOOL_CALLS]", None, _object_or_list),
    # Formats without an opening marker: the whole output is read once it is complete (no content streaming).
    # Llama 3.1+: {"name": ..., "parameters": {...}} per line
    "llama3": ToolFormat("llama3", "", None, _json_lines),
    # GLM-4: name\n{arguments}
    "glm4": ToolFormat("glm4", "", None, _name_then_arguments),
}
# the template registry's tool_format names -> the formats above
REGISTRY_TOOL_FORMATS = {"qwen": "hermes", "mistral": "mistral", "llama3": "llama3", "glm4": "glm4"}


def tool_format_for(tool_format: str | None, template_format: str | None) -> ToolFormat:
    """The configured format, else the template's (``template_format``: the registry's name), else hermes."""
    name = tool_format or REGISTRY_TOOL_FORMATS.get(template_format or "", "hermes")
    if name not in TOOL_FORMATS:
        raise ValueError(f"tool_format {name!r}: expected one of {', '.join(TOOL_FORMATS)}")
    return TOOL_FORMATS[name]


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class ToolCallStream:
    """Split streamed text into content and complete tool calls.

    Text that may be the start of the opening marker is held back; a call is emitted whole once its closing
    marker (or the end of output) arrives. A body that does not parse is returned as content, unchanged.
    """

    fmt: ToolFormat
    buffer: str = ""
    in_call: bool = False
    calls: int = 0
    events: list[tuple[str, Any]] = field(default_factory=list)

    def feed(self, text: str) -> list[tuple[str, Any]]:
        """Events for ``text``: ("content", str) and ("call", (index, id, name, arguments))."""
        self.buffer += text
        self.events = []
        while self._advance():
            pass
        return self.events

    def finish(self) -> list[tuple[str, Any]]:
        self.events = []
        if self.in_call:
            self._close(self.buffer)
        elif self.buffer:
            self.events.append(("content", self.buffer))
        self.buffer, self.in_call = "", False
        return self.events

    def _advance(self) -> bool:
        if not self.in_call:
            at = self.buffer.find(self.fmt.start)
            if at < 0:
                keep = held_back(self.buffer, (self.fmt.start,))
                if len(self.buffer) > keep:
                    self.events.append(("content", self.buffer[:len(self.buffer) - keep]))
                    self.buffer = self.buffer[len(self.buffer) - keep:]
                return False
            if at:
                self.events.append(("content", self.buffer[:at]))
            self.buffer, self.in_call = self.buffer[at + len(self.fmt.start):], True
            return True
        if self.fmt.end is None or (at := self.buffer.find(self.fmt.end)) < 0:
            return False
        self._close(self.buffer[:at])
        self.buffer, self.in_call = self.buffer[at + len(self.fmt.end):], False
        return True

    def _close(self, body: str) -> None:
        try:
            calls = self.fmt.parse(body.strip())
        except ValueError:  # json.JSONDecodeError is a ValueError
            self.events.append(("content", self.fmt.start + body + (self.fmt.end or "")))
            return
        for name, arguments in calls:
            self.events.append(("call", (self.calls, new_call_id(), name, arguments)))
            self.calls += 1


def parse_tool_calls(text: str, fmt: ToolFormat) -> tuple[str | None, list[tuple[str, str, str]]]:
    """(content, [(id, name, arguments)]) of a whole output; content is None when only whitespace is left."""
    stream = ToolCallStream(fmt)
    events = stream.feed(text) + stream.finish()
    content = "".join(v for kind, v in events if kind == "content")
    calls = [value[1:] for kind, value in events if kind == "call"]
    return (content if content.strip() or not calls else None), calls
