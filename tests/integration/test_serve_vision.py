"""Images in chat requests, end to end: the official `openai` client against `kubetune serve`'s app on a tiny
Qwen2-VL model built from its config.

The reference for every answer is the model's own ``generate`` on the inputs transformers' processor makes from the
same picture and the template's prompt (the processor expands the image placeholder itself), so the tests show that
the server builds the prompt training builds, feeds the pixels, and decodes with the model's 3-D rope positions,
alone and batched with other image and text requests.
"""

from __future__ import annotations

import base64
import io
import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import torch
import yaml
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from kubetune.cli.main import main as kubetune_main
from kubetune.config.serve_args import ServeConfig
from kubetune.config.serve_limits import ServerLimits
from kubetune.data.templates import get_template
from kubetune.model.chatformat import stop_token_ids
from kubetune.model.tiny import build_tiny_model, build_tiny_vlm
from kubetune.serve.server import build_server
from tests.integration.test_export_vision import vision_adapter
from tests.integration.test_multimodal_sft import IMAGE_TEXT, QUESTION, data_dir, picture  # noqa: F401 (fixture)
from tests.uvicorn_thread import serving

pytestmark = pytest.mark.slow
LIMITS = ServerLimits(max_image_bytes=48 * 1024, max_image_pixels=160 * 160, max_images_per_request=2)


def data_url(image: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def image_message(image: Image.Image, question: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(image)}},
                                         {"type": "text", "text": question}]}]


class Reference:
    """The model's own greedy ``generate`` on the processor's inputs, stopping where the server stops."""

    def __init__(self, model_dir: Path, adapter: Path | None = None, arch: str = "qwen2_vl"):
        self.processor = AutoProcessor.from_pretrained(model_dir)
        model = AutoModelForImageTextToText.from_pretrained(model_dir)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.eval()
        tokenizer = self.processor.tokenizer
        self.stops = stop_token_ids(tokenizer, arch, self.model.generation_config.eos_token_id)
        self.template = get_template(arch)
        self.image_text = IMAGE_TEXT[arch]

    def answer(self, image: Image.Image | None, question: str, max_tokens: int) -> tuple[str, int]:
        """(text, prompt tokens) of the greedy answer."""
        content = (self.image_text if image is not None else "") + question
        prompt = self.template.render_prompt([{"role": "user", "content": content}],
                                             eos_token=self.processor.tokenizer.eos_token)
        inputs = self.processor(text=[prompt], images=[image] if image is not None else None, return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, eos_token_id=self.stops)
        prompt_len = inputs["input_ids"].shape[1]
        text = self.processor.tokenizer.decode(out[0, prompt_len:], skip_special_tokens=True)
        # a stream cut by max_tokens inside a character ends before it (the server sends no replacement character)
        return text.rstrip("\ufffd"), prompt_len


@pytest.fixture(scope="module")
def vl_model(tmp_path_factory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("vl-model"), "qwen2_vl", seed=3)


@pytest.fixture(scope="module")
def client(vl_model):
    config = ServeConfig(model_name_or_path=str(vl_model), served_model_name="vl", template="qwen2_vl",
                         device="cpu", max_batch_size=8, limits=LIMITS)
    server = build_server(config)
    with serving(server.app) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    server.engine.close()


@pytest.fixture(scope="module")
def reference(vl_model) -> Reference:
    return Reference(vl_model)


def pictures(n: int, seed: int) -> list[Image.Image]:
    rng = random.Random(seed)
    return [picture(colour, rng, size) for colour, size in zip(["red", "blue", "green", "yellow"] * n,
                                                               [56, 84, 64, 112] * n, strict=False)][:n]


def ask(client, messages, max_tokens: int = 12):
    return client.chat.completions.create(model="vl", messages=messages, temperature=0, max_tokens=max_tokens)


def test_image_request_equals_the_models_own_generate(client, reference):
    for image in pictures(2, seed=5):
        reply = ask(client, image_message(image))
        text, prompt_len = reference.answer(image, QUESTION, 12)
        assert reply.usage.prompt_tokens == prompt_len  # the same prompt: image tokens expanded as the processor does
        assert reply.choices[0].message.content == text
        assert reply.choices[0].finish_reason in ("stop", "length")
    two = client.chat.completions.create(model="vl", messages=image_message(image), temperature=0, max_tokens=12, n=2)
    assert [c.message.content for c in two.choices] == [text, text]  # each of n rows carries the pictures


def test_llava_image_requests_equal_its_own_generate(tmp_path):
    model = build_tiny_vlm(tmp_path / "llava", "llava", seed=3)
    server = build_server(ServeConfig(model_name_or_path=str(model), served_model_name="vl", template="llava",
                                      device="cpu"))
    reference = Reference(model, arch="llava")
    images = pictures(2, seed=7)
    try:
        with serving(server.app) as url:
            llava = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            with ThreadPoolExecutor(2) as pool:
                replies = list(pool.map(lambda i: ask(llava, image_message(i)), images))
    finally:
        server.engine.close()
    for image, reply in zip(images, replies, strict=True):
        text, prompt_len = reference.answer(image, QUESTION, 12)
        assert (reply.choices[0].message.content, reply.usage.prompt_tokens) == (text, prompt_len)


def test_separate_adapters_of_the_vision_tower_and_projector_serve_images_beside_the_base(tmp_path):
    """Per-row adapter selection cannot reach the vision tower (its rows are image patches, not requests): image
    requests of an adapter that changes the vision tower or the projector still get that adapter's answer, batched
    with base-model and other-adapter requests."""
    model = build_tiny_vlm(tmp_path / "model", "qwen2_vl", seed=3)
    first, second = vision_adapter(model, tmp_path / "a", seed=1), vision_adapter(model, tmp_path / "b", seed=2)
    config = ServeConfig(model_name_or_path=str(model), served_model_name="vl", template="qwen2_vl", device="cpu",
                         lora_adapters=[{"name": "a", "path": str(first)}, {"name": "b", "path": str(second)}])
    server = build_server(config)
    images = pictures(3, seed=13)
    jobs = [("vl", images[0]), ("a", images[1]), ("b", images[2]), ("a", images[0]), ("b", None)]
    try:
        with serving(server.app) as url:
            served = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            with ThreadPoolExecutor(len(jobs)) as pool:
                replies = list(pool.map(lambda job: served.chat.completions.create(
                    model=job[0], temperature=0, max_tokens=10,
                    messages=image_message(job[1]) if job[1] else [{"role": "user", "content": QUESTION}]), jobs))
    finally:
        server.engine.close()
    references = {"vl": Reference(model), "a": Reference(model, first), "b": Reference(model, second)}
    expected = [references[name].answer(image, QUESTION, 10)[0] for name, image in jobs]
    assert [r.choices[0].message.content for r in replies] == expected
    assert len(set(expected[:3] + expected[3:4])) > 1  # the adapters answer differently


def test_concurrent_image_and_text_requests_each_get_their_own_answer(client, reference):
    images = pictures(4, seed=11)  # four sizes: different image token counts and rope offsets in one batch
    jobs = [image_message(i) for i in images] + [[{"role": "user", "content": "Name a colour."}]]
    with ThreadPoolExecutor(len(jobs)) as pool:
        replies = list(pool.map(lambda m: ask(client, m, max_tokens=16), jobs))
    expected = [reference.answer(i, QUESTION, 16)[0] for i in images] + [reference.answer(None, "Name a colour.",
                                                                                          16)[0]]
    assert [r.choices[0].message.content for r in replies] == expected


def test_streamed_image_request_equals_the_whole_answer(client, reference):
    image = pictures(1, seed=3)[0]
    stream = client.chat.completions.create(model="vl", messages=image_message(image), temperature=0,
                                            max_tokens=12, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == reference.answer(image, QUESTION, 12)[0]


def bad_request(client, messages) -> dict:
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, messages, max_tokens=2)
    assert err.value.status_code == 400
    return err.value.body


def with_url(url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


def test_bad_images_are_400s_naming_the_part(client):
    part = "messages[0].content[1].image_url.url"
    for url, words in [("https://example.com/cat.png", "fetches no URLs"), ("/etc/passwd", "reads no files"),
                       ("file:///etc/hostname", "not a data URL"), ("data:image/png;base64,@@@@", "not valid base64"),
                       ("data:image/png;base64," + base64.b64encode(b"not a picture").decode(), "readable image"),
                       ("data:text/plain,hello", "data:image/png;base64")]:
        body = bad_request(client, with_url(url))
        assert words in body["message"] and body["param"] == part, (url, body)
    big = bad_request(client, with_url(data_url(Image.new("RGB", (300, 100)))))  # 30000 > 160 x 160 pixels
    assert "max_image_pixels" in big["message"] and "300x100" in big["message"]
    noise = Image.frombytes("RGB", (150, 150), random.Random(0).randbytes(150 * 150 * 3))  # ~67 kB as PNG
    heavy = bad_request(client, with_url(data_url(noise)))
    assert "max_image_bytes" in heavy["message"]
    small = data_url(Image.new("RGB", (56, 56), (1, 2, 3)))
    many = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": small}}] * 3}]
    assert "max_images_per_request" in bad_request(client, many)["message"]
    literal = [{"role": "user", "content": [{"type": "text", "text": "<image> is a tag"},
                                            {"type": "image_url", "image_url": {"url": small}}]}]
    assert "literal <image>" in bad_request(client, literal)["message"]


def test_images_to_a_text_model_are_a_400(tmp_path):
    text_model = build_tiny_model(tmp_path / "text", "qwen2")
    server = build_server(ServeConfig(model_name_or_path=str(text_model), served_model_name="text", device="cpu",
                                      template="qwen"))
    try:
        with serving(server.app) as url:
            text_client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            small = data_url(Image.new("RGB", (56, 56), (1, 2, 3)))
            with pytest.raises(openai.BadRequestError) as err:
                text_client.chat.completions.create(model="text", messages=with_url(small), max_tokens=2)
            assert "takes no images" in err.value.body["message"]
            assert err.value.body["param"] == "messages[0].content[1].image_url.url"
            # text parts alone are served as before
            reply = text_client.chat.completions.create(model="text", max_tokens=2, messages=[
                {"role": "user", "content": [{"type": "text", "text": "Hello"}]}])
            assert reply.usage.completion_tokens >= 1
    finally:
        server.engine.close()


def test_trained_colour_adapter_answers_through_the_server_as_in_process(data_dir, tmp_path):  # noqa: F811
    model = build_tiny_vlm(tmp_path / "model", "qwen2_vl", seed=3)
    cfg = {"model_name_or_path": str(model), "stage": "sft", "finetuning_type": "lora", "lora_rank": 8,
           "dataset": "colours", "dataset_dir": str(data_dir), "template": "qwen2_vl", "cutoff_len": 256,
           "output_dir": str(tmp_path / "out"), "per_device_train_batch_size": 8, "learning_rate": 1e-2,
           "max_steps": 40, "logging_steps": 5, "save_steps": 1000, "report_to": "none", "seed": 7,
           "gradient_checkpointing": False, "tokenized_cache_dir": str(tmp_path / "cache")}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert kubetune_main(["train", str(tmp_path / "train.yaml"), "--no-progress"]) == 0
    adapter = tmp_path / "out"
    in_process = Reference(model, adapter)
    heldout = json.loads((data_dir / "heldout.json").read_text())
    images = [Image.open(data_dir / path).convert("RGB") for path, _ in heldout]
    expected = [in_process.answer(image, QUESTION, 3)[0] for image in images]
    server = build_server(ServeConfig(model_name_or_path=str(model), served_model_name="vl", template="qwen2_vl",
                                      device="cpu", default_adapter=str(adapter)))
    try:
        with serving(server.app) as url:
            served_client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            served = [ask(served_client, image_message(image), max_tokens=3).choices[0].message.content
                      for image in images]
    finally:
        server.engine.close()
    assert served == expected
    right = sum(text.strip().startswith(colour) for text, (_, colour) in zip(served, heldout, strict=True))
    print(f"served colour answers right: {right}/{len(heldout)}")
    assert right >= len(heldout) // 2  # chance is 1 in 4
