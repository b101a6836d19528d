"""Turn chat messages into prompt token ids, and name the tokens that end an assistant turn.

With a template name the kubetune template registry renders the prompt (the same code that formats training
data, so served prompts match trained ones). Without one, the tokenizer's own ``chat_template`` is used: "template
unset" means exactly that, for training and for serving; a tokenizer without one gets the registry's ``empty``
template, as in training.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

from transformers import PreTrainedTokenizerBase


class ChatFormatError(ValueError):
    """A prompt that cannot be rendered (no chat template, unknown template name, bad messages)."""


def _registry_template(name: str) -> Any:
    try:
        templates = importlib.import_module("kubetune.data.templates")
    except ModuleNotFoundError as exc:
        raise ChatFormatError(f"template {name!r}: the template registry is not installed in this build; "
                              "leave template unset to use the tokenizer's chat_template") from exc
    try:
        return templates.get_template(name)
    except KeyError as exc:
        raise ChatFormatError(f"template {name!r}: {exc.args[0]}") from exc


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], *,
                  tools: list[dict[str, Any]] | None = None, template: str | None = None,
                  system: str | None = None) -> list[int]:
    """Token ids of ``messages`` followed by the start of an assistant turn.

    Args:
        tokenizer: the model's tokenizer.
        messages: OpenAI-style messages (role, content, optional tool_calls with arguments as dicts).
        tools: OpenAI tool definitions, rendered the way the template family expects.
        template: registry template name; None uses ``tokenizer.chat_template``.
        system: default system prompt used when messages carry none.
    Raises:
        ChatFormatError: no usable template, or the template rejects the messages.
    """
    if template or not getattr(tokenizer, "chat_template", None):
        try:
            return list(_registry_template(template or "empty").encode_prompt(tokenizer, messages, system=system,
                                                                               tools=tools))
        except ValueError as exc:  # the registry's TemplateError: role order, tools on a family without them
            raise ChatFormatError(str(exc)) from exc
    if system and not any(m.get("role") == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    try:
        # transformers types tools as a list of schemas or callables; these are schemas
        ids = tokenizer.apply_chat_template(messages, tools=cast(Any, tools) or None, add_generation_prompt=True,
                                            tokenize=True, return_dict=False)
    except Exception as exc:  # jinja raises TemplateError or anything the template's own checks raise
        raise ChatFormatError(f"the chat template rejected the messages: {exc}") from exc
    return list(ids)


def tool_format_of(template: str) -> str | None:
    """The tool-call syntax of a registry template (qwen, llama3, mistral, glm4), None when it has none."""
    return _registry_template(template).tool_format


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, template: str | None = None,
                   generation_eos: int | list[int] | None = None) -> list[int]:
    """Token ids that end generation: the template's stop words, the model's EOS ids and the tokenizer's EOS."""
    ids: list[int] = []
    if template:
        ids.extend(_registry_template(template).stop_token_ids(tokenizer))
    if isinstance(generation_eos, int):
        ids.append(generation_eos)
    elif generation_eos:
        ids.extend(generation_eos)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(ids))
