"""Images in chat requests without a model: data URL parsing and bounds, placeholders in message text, and the
per-row rope offsets a batch carries through joins and removals."""

from __future__ import annotations

import base64
import io

import pytest
import torch
from PIL import Image
from transformers import DynamicCache

from kubetune.config.serve_limits import ServerLimits
from kubetune.serve.engine.batch import BatchState
from kubetune.serve.errors import OpenAIError
from kubetune.serve.images import check_url, decode_payload, load_images, open_image
from kubetune.serve.openai.chat import template_messages
from kubetune.serve.openai.protocol import ChatCompletionRequest

PARAM = "messages[0].content[1].image_url.url"


def png(width: int = 8, height: int = 6, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buf, fmt)
    return buf.getvalue()


def url_of(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def refused(fn, *args) -> OpenAIError:
    with pytest.raises(OpenAIError) as err:
        fn(*args)
    assert err.value.status == 400
    return err.value


@pytest.mark.parametrize("url", ["https://example.com/a.png", "http://10.0.0.1/x", "/var/run/secrets/token",
                                 "file:///etc/passwd", "../../etc/passwd", "s3://bucket/a.png"])
def test_only_data_urls_are_taken(url):
    err = refused(check_url, url, PARAM)
    assert "fetches no URLs and reads no files" in err.message and err.param == PARAM


def test_data_url_payloads_and_their_bounds():
    raw = png()
    assert decode_payload(check_url(url_of(raw), PARAM), 10_000, PARAM) == raw
    assert check_url("data:image/jpeg;charset=x;base64,QUJD", PARAM) == "QUJD"
    assert "base64" in refused(check_url, "data:image/png,rawbytes", PARAM).message
    assert "not valid base64" in refused(decode_payload, "ab$d", 100, PARAM).message
    assert "max_image_bytes" in refused(decode_payload, base64.b64encode(b"x" * 101).decode(), 100, PARAM).message
    # a payload far over the bound is refused before it is decoded
    assert "larger than 100 bytes" in refused(decode_payload, "A" * 10_000, 100, PARAM).message


def test_images_are_checked_before_decoding_and_come_back_rgb():
    image = open_image(png(8, 6), 48, PARAM)
    assert image.mode == "RGB" and image.size == (8, 6)
    big = refused(open_image, png(8, 7), 48, PARAM)
    assert "8x7" in big.message and "max_image_pixels" in big.message
    assert "readable image" in refused(open_image, b"GIF89a-but-not-really", 48, PARAM).message
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "TIFF")
    assert "TIFF is not supported" in refused(open_image, buf.getvalue(), 48, PARAM).message


def test_images_per_request_are_bounded():
    limits = ServerLimits(max_images_per_request=1)
    urls = [(url_of(png()), PARAM), (url_of(png()), PARAM)]
    assert "max_images_per_request" in refused(load_images, urls, limits).message
    assert [i.size for i in load_images(urls[:1], limits)] == [(8, 6)]


def test_image_parts_become_placeholders_in_order():
    req = ChatCompletionRequest.model_validate({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Compare "},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                                     {"type": "text", "text": " and "},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,BBBB",
                                                                         "detail": "low"}}]}]})
    urls: list[tuple[str, str]] = []
    messages = template_messages(req.messages, urls)
    assert messages[1]["content"] == "Compare <image> and <image>"
    assert urls == [("data:image/png;base64,AAAA", "messages[1].content[1].image_url.url"),
                    ("data:image/png;base64,BBBB", "messages[1].content[3].image_url.url")]
    assert template_messages(req.messages)[0]["content"] == "Be brief."


def test_unknown_content_part_types_are_refused():
    with pytest.raises(ValueError, match="input_audio"):
        ChatCompletionRequest.model_validate({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]})


def state(rows: int, width: int, delta: list[int] | None) -> BatchState:
    cache = DynamicCache()
    cache.update(torch.zeros(rows, 1, width, 2), torch.zeros(rows, 1, width, 2), 0)
    mask = torch.ones(rows, width, dtype=torch.long)
    return BatchState(cache=cache, mask=mask, lengths=mask.sum(-1),
                      completion=torch.empty((rows, 0), dtype=torch.long), logits=torch.zeros(rows, 5),
                      rope_delta=None if delta is None else torch.tensor(delta))


def test_rope_offsets_follow_their_rows_through_joins_and_removals():
    text = state(2, 3, None)
    assert text.next_positions().tolist() == [[3], [3]]
    joined = text.join(state(1, 5, [-7]))
    assert joined.rope_delta is not None and joined.rope_delta.tolist() == [0, 0, -7]
    assert joined.next_positions().tolist() == [[3], [3], [-2]]
    joined = state(1, 4, [2]).join(joined)
    assert joined.next_positions().tolist() == [[6], [3], [3], [-2]]
    kept = joined.keep([3, 0])
    assert kept.next_positions().tolist() == [[-2], [6]]
    assert state(1, 2, None).join(state(1, 2, None)).rope_delta is None
