"""Chat messages with images -> the prompt and pixel inputs of a vision-language model, as training builds them.

Each ``image_url`` part becomes LLaMA-Factory's ``<image>`` placeholder where it stood in the message; the images
are scaled to the serve config's pixel bounds and the placeholders expanded into the model family's image tokens
by the functions the training data path uses (kubetune.data.media), and the pixel inputs come from the same
``processor.image_processor`` call as the training collator's. So a served prompt is token for token a training
prompt.
"""

from __future__ import annotations

from typing import Any

from kubetune.data.media import (
    IMAGE_PLACEHOLDER,
    PLUGINS,
    MediaError,
    MediaPlugin,
    expand_placeholders,
    feature_counts,
    fit_image,
    plugin_for,
)
from kubetune.serve.errors import bad_request
from kubetune.serve.openai.protocol import ChatMessage


def message_text(message: ChatMessage, index: int, urls: list[tuple[str, str]]) -> str | None:
    """The text of ``message``: its text parts joined, an ``<image>`` placeholder for each image part (whose
    ``(url, param)`` is appended to ``urls``)."""
    if isinstance(message.content, str) or message.content is None:
        return message.content
    out = ""
    for j, part in enumerate(message.content):
        if part.type == "text":
            out += part.text
        else:
            out += IMAGE_PLACEHOLDER
            urls.append((part.image_url.url, f"messages[{index}].content[{j}].image_url.url"))
    return out


def media_plugin(template: str | None, processor: Any) -> MediaPlugin:
    """How images enter the text: the configured template's plugin, else the family whose image token the
    processor uses. Raises a 400 when neither takes images."""
    try:
        if template:
            from kubetune.data.templates import get_template

            return plugin_for(get_template(template))
    except MediaError as exc:
        raise bad_request(str(exc), param="messages") from exc
    token = getattr(processor, "image_token", None)
    for plugin in PLUGINS.values():
        if plugin.token == token:
            return plugin
    raise bad_request(f"no chat template for images with image token {token!r}; set template (one of "
                      f"{', '.join(PLUGINS)}) in the serve config", param="messages")


def image_prompt(processor: Any, plugin: MediaPlugin, messages: list[dict[str, Any]], images: list[Any],
                 max_pixels: int, min_pixels: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``messages`` with each placeholder expanded into the image's tokens, and the processor's pixel inputs
    (``pixel_values``, and ``image_grid_thw`` for Qwen2-VL style models)."""
    pictures = [fit_image(image, max_pixels, min_pixels) for image in images]
    counts = feature_counts(processor, pictures)
    expanded = expand_placeholders(messages, counts, plugin)
    return expanded, dict(processor.image_processor(images=pictures, return_tensors="pt"))
