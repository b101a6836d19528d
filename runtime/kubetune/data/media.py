"""Images in conversations: LLaMA-Factory's ``<image>`` placeholders, pixel bounds, and each family's image tokens.

A row's ``images`` column lists files (relative to ``media_dir``); its messages hold one ``<image>`` placeholder per
image, in order. Before tokenizing, every placeholder becomes the model's own image tokens, as many as the vision
tower yields features for that image (the processor says how many); at batch time the collator turns the same files
into ``pixel_values``. :data:`PLUGINS` is the table of families (LLaMA-Factory's ``mm_plugin``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

IMAGE_PLACEHOLDER = "<image>"
REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class MediaError(ValueError):
    """An image reference or placeholder the run cannot use; the message names the field and what to do."""


@dataclass(frozen=True)
class MediaPlugin:
    """How one model family writes an image into text: ``prefix`` + ``token`` x features + ``suffix``."""

    name: str
    token: str
    prefix: str = ""
    suffix: str = ""

    def expand(self, features: int) -> str:
        return self.prefix + self.token * features + self.suffix


PLUGINS: dict[str, MediaPlugin] = {
    "qwen2_vl": MediaPlugin("qwen2_vl", token="<|image_pad|>", prefix="<|vision_start|>", suffix="<|vision_end|>"),
    "llava": MediaPlugin("llava", token="<image>"),
}


def count_placeholders(messages: list[dict[str, Any]]) -> int:
    return sum(str(m.get("content") or "").count(IMAGE_PLACEHOLDER) for m in messages)


def check_image_refs(images: Any, column: str) -> list[str]:
    """The ``images`` column as a list of local paths. Raises MediaError for what is not one (remote URLs too)."""
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        raise MediaError(f"expected a list of image paths, got {images!r}")
    for i, ref in enumerate(images):
        if REMOTE.match(ref) or ref.startswith("data:"):
            raise MediaError(f"{ref[:60]!r} is not a local file: images are read from media_dir "
                             f"(download them next to the dataset)", )
        if ".." in PurePath(ref).parts:
            raise MediaError(f"{ref!r} leads outside media_dir (field {column}[{i}])")
    return list(images)


def check_placeholder_count(messages: list[dict[str, Any]], images: list[str]) -> None:
    """As many ``<image>`` placeholders in the messages as images in the row (LLaMA-Factory's rule)."""
    found = count_placeholders(messages)
    if found != len(images):
        raise MediaError(f"the messages hold {found} {IMAGE_PLACEHOLDER} placeholder(s) for {len(images)} image(s); "
                         f"write one {IMAGE_PLACEHOLDER} where each image belongs")


def resolve_image(ref: str, media_dir: str | Path) -> Path:
    """A row's image path under ``media_dir`` (absolute paths as given). Raises MediaError when it is missing."""
    path = Path(ref) if Path(ref).is_absolute() else Path(media_dir) / ref
    if not path.is_file():
        raise MediaError(f"image {ref!r} not found (looked for {path}; relative paths are under media_dir)")
    return path


def fit_size(width: int, height: int, max_pixels: int, min_pixels: int) -> tuple[int, int]:
    """The size LLaMA-Factory scales an image to: down to ``max_pixels`` or up to ``min_pixels``, same ratio."""
    if width * height > max_pixels:
        factor = math.sqrt(max_pixels / (width * height))
    elif width * height < min_pixels:
        factor = math.sqrt(min_pixels / (width * height))
    else:
        return width, height
    return max(int(width * factor), 1), max(int(height * factor), 1)


def load_image(path: str | Path, max_pixels: int, min_pixels: int) -> Any:
    """An RGB PIL image within the pixel bounds. Raises MediaError naming the file when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as raw:
            image = raw.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise MediaError(f"{path}: not a readable image ({exc})") from None
    return fit_image(image, max_pixels, min_pixels)


def fit_image(image: Any, max_pixels: int, min_pixels: int) -> Any:
    size = fit_size(image.width, image.height, max_pixels, min_pixels)
    return image if size == image.size else image.resize(size)


def feature_counts(processor: Any, images: list[Any]) -> list[int]:
    """Image tokens per image as the model's processor computes them (Qwen2-VL: grid / merge; LLaVA: patches)."""
    if not images:
        return []
    inputs = processor.image_processor(images=images, return_tensors="pt")
    token = processor.image_token
    return [processor.replace_image_token(inputs, i).count(token) for i in range(len(images))]


def expand_placeholders(messages: list[dict[str, Any]], counts: list[int],
                        plugin: MediaPlugin) -> list[dict[str, Any]]:
    """Messages with the i-th ``<image>`` replaced by the family's tokens for ``counts[i]`` features. Pure."""
    queue = iter(counts)
    out = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, str) and IMAGE_PLACEHOLDER in content:
            parts = content.split(IMAGE_PLACEHOLDER)
            content = parts[0] + "".join(plugin.expand(next(queue)) + p for p in parts[1:])
            msg = {**msg, "content": content}
        out.append(msg)
    return out


def plugin_for(template: Any) -> MediaPlugin:
    """The media plugin of a template. Raises MediaError naming the templates that take images."""
    name = getattr(template, "mm_plugin", None)
    if name not in PLUGINS:
        raise MediaError(f"template {getattr(template, 'name', template)!r} takes no images; use one of "
                         f"{', '.join(PLUGINS)} with a vision-language model")
    return PLUGINS[name]


def expand_example(example: Any, template: Any, processor: Any, media_dir: str | Path, max_pixels: int,
                   min_pixels: int) -> list[str]:
    """Load the example's images, expand its placeholders in place; returns the resolved image paths."""
    plugin = plugin_for(template)
    paths = [resolve_image(ref, media_dir) for ref in example.images]
    counts = feature_counts(processor, [load_image(p, max_pixels, min_pixels) for p in paths])
    example.messages = expand_placeholders(example.messages, counts, plugin)
    return [str(p.resolve()) for p in paths]
