"""Images in chat requests: ``image_url`` parts as data URLs, decoded to RGB pictures within the server's bounds.

Only ``data:image/...;base64,`` URLs are taken: the server never fetches a URL or reads a file named by a request
(an http(s) URL or a path is a 400 that says to send the image inline). The encoded size, the picture's pixel
count (read from its header, before decoding) and the number of images per request are bounded by
:class:`~kubetune.config.serve_limits.ServerLimits`. Each error is a 400 naming the message part.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any

from kubetune.config.serve_limits import ServerLimits
from kubetune.serve.errors import OpenAIError, bad_request

DATA_URL = re.compile(r"^data:(?P<mime>image/[a-z0-9.+-]+)?(?P<params>(;[a-z0-9=._-]+)*);base64,", re.IGNORECASE)
FORMATS = frozenset({"PNG", "JPEG", "GIF", "WEBP", "BMP"})


def check_url(url: str, param: str) -> str:
    """The base64 payload of a data URL. Raises a 400 for any other URL (no fetching, no file reads)."""
    match = DATA_URL.match(url)
    if match:
        return url[match.end():]
    if url.startswith("data:"):
        raise bad_request("an image data URL must look like data:image/png;base64,<base64 bytes>", param=param)
    shown = url if len(url) <= 60 else url[:57] + "..."
    raise bad_request(f"image {shown!r} is not a data URL: this server fetches no URLs and reads no files; send the "
                      "image inline as data:image/png;base64,<base64 bytes>", param=param)


def decode_payload(payload: str, max_bytes: int, param: str) -> bytes:
    """The bytes of a base64 payload, refused before decoding when they would exceed ``max_bytes``."""
    if len(payload) // 4 * 3 > max_bytes + 3:
        raise bad_request(f"the image is larger than {max_bytes} bytes (limits.max_image_bytes)", param=param)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("the image data URL is not valid base64", param=param) from None
    if len(raw) > max_bytes:
        raise bad_request(f"the image is {len(raw)} bytes; this server takes at most {max_bytes} "
                          "(limits.max_image_bytes)", param=param)
    return raw


def open_image(raw: bytes, max_pixels: int, param: str) -> Any:
    """An RGB PIL image of ``raw``; its size is checked from the header before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            if image.format not in FORMATS:
                raise bad_request(f"image format {image.format} is not supported (use one of "
                                  f"{', '.join(sorted(FORMATS))})", param=param)
            width, height = image.size
            if width * height > max_pixels:
                raise bad_request(f"the image is {width}x{height} pixels; this server takes at most {max_pixels} "
                                  "(limits.max_image_pixels)", param=param)
            return image.convert("RGB")
    except OpenAIError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise bad_request("the image data URL does not hold a readable image", param=param) from None


def load_images(urls: list[tuple[str, str]], limits: ServerLimits) -> list[Any]:
    """RGB images of ``(url, param)`` pairs, in order. Raises a 400 naming the part for the first bad one."""
    if len(urls) > limits.max_images_per_request:
        raise bad_request(f"the request holds {len(urls)} images; this server takes at most "
                          f"{limits.max_images_per_request} (limits.max_images_per_request)", param="messages")
    return [open_image(decode_payload(check_url(url, param), limits.max_image_bytes, param),
                       limits.max_image_pixels, param) for url, param in urls]
