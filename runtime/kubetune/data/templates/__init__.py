"""Chat templates: a typed table of families (``registry.TABLE``), each with its Jinja equivalent.

``get_template(name)`` returns a Template; ``resolve_template(name, tokenizer)`` also covers an unset name (the
tokenizer's own chat_template, or ``empty`` when it has none).
"""

from __future__ import annotations

from typing import Any

from kubetune.data.templates.registry import get_template, template_names
from kubetune.data.templates.template import EMPTY_THOUGHT, Message, Template, TemplateError
from kubetune.data.templates.tokenizer_template import TokenizerTemplate
from kubetune.data.templates.tools import TOOL_FORMATS, ToolCall


def resolve_template(name: str | None, tokenizer: Any) -> Template | TokenizerTemplate:
    """The named template; with no name, the tokenizer's chat_template, else the ``empty`` template."""
    if name:
        return get_template(name)
    if getattr(tokenizer, "chat_template", None):
        return TokenizerTemplate(tokenizer)
    return get_template("empty")


__all__ = ["EMPTY_THOUGHT", "TOOL_FORMATS", "Message", "Template", "TemplateError", "TokenizerTemplate",
           "ToolCall", "get_template", "resolve_template", "template_names"]
