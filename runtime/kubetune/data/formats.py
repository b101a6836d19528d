"""Row formats (alpaca, sharegpt, openai, text) -> one normalised Example. Pure functions on dicts.

Example shapes by stage:
- sft: ``messages`` alternate user/tool and assistant and end with an assistant message.
- pt: ``text``.
- rm/dpo (``ranking``): ``messages`` end with a user (or tool) message; ``chosen`` and ``rejected`` are assistant
  messages.
- kto: ``messages`` end with the assistant completion; ``label`` is true for desirable completions.
Messages are ``{"role": "user"|"assistant"|"tool", "content": str}`` and assistant messages may carry
``tool_calls: [{"name", "arguments"}]`` (arguments a JSON string).
``images`` (sft only) lists the row's image files, one ``<image>`` placeholder each in the messages, in order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kubetune.config.data_args import DatasetAttr
from kubetune.data.media import MediaError, check_image_refs, check_placeholder_count


class DataFormatError(ValueError):
    """A malformed row: names the file, the row (1-based) and the field."""

    def __init__(self, message: str, *, field: str = "", file: str = "", row: int | None = None):
        self.file, self.row, self.field, self.reason = file, row, field, message
        where = ":".join(p for p in (file, f"row {row}" if row is not None else "") if p)
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}" if where else message)

    def at(self, file: str, row: int) -> DataFormatError:
        return DataFormatError(self.reason, field=self.field, file=file, row=row)


@dataclass
class Example:
    """One normalised training example (see the module docstring for the shape per stage)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    system: str | None = None
    tools: list[dict[str, Any]] | None = None
    text: str | None = None
    chosen: dict[str, Any] | None = None
    rejected: dict[str, Any] | None = None
    label: bool | None = None
    images: list[str] = field(default_factory=list)


ALPACA = {"prompt": "instruction", "query": "input", "response": "output"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "observation_tag": "tool", "function_tag": "function", "system_tag": "system"}


def _col(attr: DatasetAttr, name: str, default: str | None = None) -> str | None:
    value = getattr(attr.columns, name) if attr.columns else None
    return value or default


def _text(row: dict[str, Any], column: str, *, required: bool = True) -> str | None:
    if column not in row or row[column] is None:
        if required:
            raise DataFormatError(f"missing column {column!r} (columns: {', '.join(map(str, row)) or 'none'})",
                                  field=column)
        return None
    if not isinstance(row[column], str):
        raise DataFormatError(f"expected a string, got {type(row[column]).__name__}", field=column)
    return row[column]


def _tools(row: dict[str, Any], attr: DatasetAttr) -> list[dict[str, Any]] | None:
    column = _col(attr, "tools")
    value = row.get(column) if column else None
    if not value:
        return None
    try:
        tools = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"tools are not valid JSON: {exc.msg}", field=str(column)) from None
    if not isinstance(tools, list):
        raise DataFormatError("tools must be a JSON list", field=str(column))
    return tools


def _kto_label(row: dict[str, Any], attr: DatasetAttr) -> bool | None:
    column = _col(attr, "kto_tag")
    if column is None:
        return None
    if not isinstance(row.get(column), bool):
        raise DataFormatError(f"expected true or false, got {row.get(column)!r}", field=column)
    return bool(row[column])


def from_alpaca(row: dict[str, Any], attr: DatasetAttr, stage: str) -> Example:
    """instruction (+ input) as the user turn, output as the answer; history as earlier turns."""
    prompt_col = _col(attr, "prompt", ALPACA["prompt"])
    query_col = _col(attr, "query", ALPACA["query"])
    instruction = _text(row, str(prompt_col))
    query = _text(row, str(query_col), required=False)
    user = f"{instruction}\n{query}" if query else str(instruction)
    if stage == "pt":
        return Example(text=user)
    messages: list[dict[str, Any]] = []
    history_col = _col(attr, "history")
    for i, pair in enumerate(row.get(history_col) or [] if history_col else []):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise DataFormatError("expected a [user, assistant] pair of strings", field=f"{history_col}[{i}]")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    messages.append({"role": "user", "content": user})
    system_col = _col(attr, "system")
    example = Example(messages=messages, system=_text(row, system_col, required=False) if system_col else None,
                      tools=_tools(row, attr))
    if attr.ranking:
        example.chosen = {"role": "assistant", "content": _text(row, str(_col(attr, "chosen", "chosen")))}
        example.rejected = {"role": "assistant", "content": _text(row, str(_col(attr, "rejected", "rejected")))}
        return example
    response_col = str(_col(attr, "response", ALPACA["response"]))
    messages.append({"role": "assistant", "content": _text(row, response_col)})
    example.label = _kto_label(row, attr)
    return example


def _tags(attr: DatasetAttr) -> dict[str, str]:
    defaults = OPENAI_TAGS if attr.formatting == "openai" else SHAREGPT_TAGS
    given = attr.tags.model_dump(exclude_none=True) if attr.tags else {}
    return {**defaults, **given}


def _tool_calls(content: Any, where: str) -> list[dict[str, Any]]:
    try:
        calls = json.loads(content) if isinstance(content, str) else content
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"function call is not valid JSON: {exc.msg}", field=where) from None
    calls = calls if isinstance(calls, list) else [calls]
    out = []
    for call in calls:
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or "name" not in fn:
            raise DataFormatError("a function call needs a name and arguments", field=where)
        args = fn.get("arguments", {})
        out.append({"name": fn["name"], "arguments": args if isinstance(args, str) else json.dumps(args)})
    return out


def _message(raw: Any, tags: dict[str, str], where: str) -> dict[str, Any]:
    """One sharegpt/openai message as a normalised message (system messages keep role system)."""
    if not isinstance(raw, dict):
        raise DataFormatError(f"expected a message object, got {type(raw).__name__}", field=where)
    role, content = raw.get(tags["role_tag"]), raw.get(tags["content_tag"])
    roles = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["observation_tag"]: "tool",
             tags["function_tag"]: "function", tags["system_tag"]: "system"}
    if role not in roles:
        raise DataFormatError(f"unknown role {role!r} (expected one of {', '.join(roles)})",
                              field=f"{where}.{tags['role_tag']}")
    kind = roles[role]
    if kind == "function":
        return {"role": "assistant", "content": "", "tool_calls": _tool_calls(content, where)}
    if kind == "assistant" and raw.get("tool_calls"):
        return {"role": "assistant", "content": content or "", "tool_calls": _tool_calls(raw["tool_calls"], where)}
    if not isinstance(content, str):
        raise DataFormatError(f"expected a string, got {type(content).__name__}",
                              field=f"{where}.{tags['content_tag']}")
    return {"role": kind, "content": content}


def _merge_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Several tool results in a row answer one assistant turn: they become one tool message.
    out: list[dict[str, Any]] = []
    for msg in messages:
        if out and msg["role"] == "tool" and out[-1]["role"] == "tool":
            out[-1] = {"role": "tool", "content": out[-1]["content"] + "\n" + msg["content"]}
        else:
            out.append(msg)
    return out


def check_turn_order(messages: list[dict[str, Any]], column: str, *, ends_with: str) -> None:
    """user/tool at even positions, assistant at odd ones, ending as the stage needs."""
    for i, msg in enumerate(messages):
        expected = ("assistant",) if i % 2 else ("user", "tool")
        if msg["role"] not in expected:
            previous = f" after a {messages[i - 1]['role']} turn" if i else " as the first turn"
            raise DataFormatError(f"wrong role order: {msg['role']}{previous} (expected {' or '.join(expected)})",
                                  field=f"{column}[{i}]")
    if not messages:
        raise DataFormatError("no messages", field=column)
    last = messages[-1]["role"]
    if (ends_with == "assistant") != (last == "assistant"):
        want = "an assistant" if ends_with == "assistant" else "a user"
        raise DataFormatError(f"the conversation must end with {want} turn, not {last}",
                              field=f"{column}[{len(messages) - 1}]")


def from_sharegpt(row: dict[str, Any], attr: DatasetAttr, stage: str) -> Example:
    """A message list (sharegpt or openai tags) -> Example; a leading system message becomes ``system``."""
    tags = _tags(attr)
    column = str(_col(attr, "messages", "messages" if attr.formatting == "openai" else "conversations"))
    raw = row.get(column)
    if not isinstance(raw, list):
        raise DataFormatError(f"missing column {column!r} or not a list of messages", field=column)
    messages = [_message(m, tags, f"{column}[{i}]") for i, m in enumerate(raw)]
    system_col = _col(attr, "system")
    system = _text(row, system_col, required=False) if system_col else None
    if messages and messages[0]["role"] == "system":
        system = messages.pop(0)["content"]
    messages = _merge_tool_results(messages)
    if stage == "pt":
        return Example(text=messages[0]["content"] if messages else "")
    example = Example(messages=messages, system=system, tools=_tools(row, attr))
    if attr.ranking:
        check_turn_order(messages, column, ends_with="user")
        for side in ("chosen", "rejected"):
            col = str(_col(attr, side, side))
            value = row.get(col)
            if isinstance(value, str):
                value = {tags["role_tag"]: tags["assistant_tag"], tags["content_tag"]: value}
            if value is None:
                raise DataFormatError(f"missing column {col!r}", field=col)
            setattr(example, side, _message(value, tags, col))
        return example
    check_turn_order(messages, column, ends_with="assistant")
    example.label = _kto_label(row, attr)
    return example


def from_text(row: dict[str, Any], attr: DatasetAttr, stage: str) -> Example:
    """One text column (pre-training)."""
    del stage
    return Example(text=_text(row, str(_col(attr, "text", "text"))))


CONVERTERS = {"alpaca": from_alpaca, "sharegpt": from_sharegpt, "openai": from_sharegpt, "text": from_text}


def _images(row: dict[str, Any], attr: DatasetAttr, stage: str, example: Example) -> list[str]:
    """The row's image paths (columns.images), checked against its ``<image>`` placeholders."""
    column = _col(attr, "images")
    if column is None:
        return []
    try:
        images = check_image_refs(row.get(column) or [], column)
        if images and stage != "sft":
            raise MediaError(f"images are used by stage sft only, not {stage}")
        if stage == "sft":
            check_placeholder_count(example.messages, images)
    except MediaError as exc:
        raise DataFormatError(str(exc), field=column) from None
    return images


def convert_row(row: Any, attr: DatasetAttr, stage: str) -> Example:
    """Normalise one row; raises DataFormatError naming the field (callers add file and row)."""
    if not isinstance(row, dict):
        raise DataFormatError(f"expected an object per row, got {type(row).__name__}")
    example = CONVERTERS[attr.formatting](row, attr, stage)
    example.images = _images(row, attr, stage, example)
    if stage == "kto" and example.label is None:
        raise DataFormatError("stage kto needs a kto_tag column (columns.kto_tag in dataset_info.json)")
    if stage in ("rm", "dpo") and example.chosen is None:
        raise DataFormatError(f"stage {stage} needs preference pairs: set ranking: true on the dataset")
    if stage == "pt" and not example.text:
        raise DataFormatError("empty text")
    return example
