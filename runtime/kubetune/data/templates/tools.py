"""Tool-calling formats: how a family writes tool schemas into the prompt, how it writes calls, and how calls
are parsed back out of generated text. One small class per format, chosen by name from ``TOOL_FORMATS``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    """One function call: its name and its arguments as a JSON object string."""

    name: str
    arguments: str

    @staticmethod
    def of(call: dict[str, Any]) -> ToolCall:
        """From {name, arguments} (arguments a dict or JSON string) or OpenAI's {function: {...}}."""
        fn = call.get("function", call)
        args = fn.get("arguments", fn.get("parameters", {}))
        return ToolCall(str(fn["name"]), args if isinstance(args, str) else json.dumps(args, ensure_ascii=False))

    def args(self) -> Any:
        return json.loads(self.arguments)



def _dumps(obj: Any) -> str:
    # Same as the Jinja `tojson` filter of transformers' chat templates.
    return json.dumps(obj, ensure_ascii=False)


class QwenTools:
    """Hermes-style XML tags (Qwen2.5, Qwen3): <tools>schemas</tools>, <tool_call>{name, arguments}</tool_call>."""

    HEADER = ("\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
              "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
    FOOTER = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
              "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
              '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')
    CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)

    def format_tools(self, tools: list[dict[str, Any]]) -> str:
        return self.HEADER + "".join("\n" + _dumps(t) for t in tools) + self.FOOTER

    def format_calls(self, calls: list[ToolCall]) -> str:
        return "\n".join(f'<tool_call>\n{{"name": "{c.name}", "arguments": {c.arguments}}}\n</tool_call>'
                         for c in calls)

    def parse_calls(self, text: str) -> tuple[str, list[ToolCall]]:
        calls = [ToolCall.of(json.loads(m)) for m in self.CALL.findall(text)]
        return (self.CALL.sub("", text).strip() if calls else text), calls


class Llama3Tools:
    """Llama 3.1 JSON calls: {"name": ..., "parameters": {...}}; schemas listed in the system prompt."""

    HEADER = ("\n\nYou have access to the following functions. To call a function, respond with JSON of the form "
              '{"name": function name, "parameters": dictionary of argument name and its value}.\n')

    def format_tools(self, tools: list[dict[str, Any]]) -> str:
        return self.HEADER + "".join("\n" + _dumps(t) for t in tools)

    def format_calls(self, calls: list[ToolCall]) -> str:
        return "\n".join(f'{{"name": "{c.name}", "parameters": {c.arguments}}}' for c in calls)

    def parse_calls(self, text: str) -> tuple[str, list[ToolCall]]:
        calls = []
        for line in text.strip().splitlines():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                return text, []
            if not isinstance(obj, dict) or "name" not in obj:
                return text, []
            calls.append(ToolCall.of(obj))
        return ("", calls) if calls else (text, [])


class MistralTools:
    """Mistral: [AVAILABLE_TOOLS] [schemas][/AVAILABLE_TOOLS] and [TOOL_CALLS] [{name, arguments}, ...]."""

    def format_tools(self, tools: list[dict[str, Any]]) -> str:
        return "[AVAILABLE_TOOLS] " + _dumps(tools) + "[/AVAILABLE_TOOLS]"

    def format_calls(self, calls: list[ToolCall]) -> str:
        return "[TOOL_CALLS] [" + ", ".join(f'{{"name": "{c.name}", "arguments": {c.arguments}}}'
                                            for c in calls) + "]"

    def parse_calls(self, text: str) -> tuple[str, list[ToolCall]]:
        head, sep, tail = text.partition("[TOOL_CALLS]")
        if not sep:
            return text, []
        try:
            items = json.loads(tail.strip())
        except json.JSONDecodeError:
            return text, []
        return head.strip(), [ToolCall.of(item) for item in items]


class Glm4Tools:
    """GLM-4: a call is the function name on one line and its JSON arguments on the next."""

    HEADER = "\n\n# Available tools"

    def format_tools(self, tools: list[dict[str, Any]]) -> str:
        return self.HEADER + "".join(f"\n\n## {t.get('function', t).get('name')}\n\n{_dumps(t)}" for t in tools)

    def format_calls(self, calls: list[ToolCall]) -> str:
        return "\n".join(f"{c.name}\n{c.arguments}" for c in calls)

    def parse_calls(self, text: str) -> tuple[str, list[ToolCall]]:
        name, sep, args = text.strip().partition("\n")
        if not sep or not re.fullmatch(r"[\w.-]+", name):
            return text, []
        try:
            json.loads(args)
        except json.JSONDecodeError:
            return text, []
        return "", [ToolCall(name, args.strip())]


TOOL_FORMATS: dict[str, Any] = {"qwen": QwenTools(), "llama3": Llama3Tools(), "mistral": MistralTools(),
                                "glm4": Glm4Tools()}
