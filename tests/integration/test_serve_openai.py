"""The HF-engine server driven by the official `openai` client over a loopback port."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from transformers import AutoTokenizer, GenerationConfig

from kubetune.model.tiny import build_tiny_model
from kubetune.serve.config import LoraAdapter, ServeConfig
from kubetune.serve.server import build_server
from tests.adapters import train_lora
from tests.uvicorn_thread import serving

pytestmark = pytest.mark.slow
ASSETS = Path(__file__).resolve().parents[1] / "assets"
KEY = "sk-test-key"
HELLO = [{"role": "user", "content": "Say something about the sea."}]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    """Tiny qwen2 with a chatml template; like real chatml models it stops at <|im_end|> too."""
    out = build_tiny_model(tmp_path_factory.mktemp("chat-model"), "qwen2",
                           chat_template=(ASSETS / "chatml_tools.jinja").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out)
    config = GenerationConfig.from_pretrained(out)
    config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    config.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def server_url(chat_model, tmp_path_factory):
    adapters = [
        LoraAdapter(name="sea-poet", path=str(train_lora(chat_model, tmp_path_factory.mktemp("a1"),
                                                          ["The sea is wide and blue and deep."], steps=4))),
        LoraAdapter(name="land-poet", path=str(train_lora(chat_model, tmp_path_factory.mktemp("a2"),
                                                           ["Mountains stand tall over green fields."], steps=4,
                                                           seed=1))),
    ]
    config = ServeConfig(model_name_or_path=str(chat_model), served_model_name="tiny", lora_adapters=adapters,
                         api_key=KEY, max_batch_size=8)
    server = build_server(config)
    with serving(server.app) as url:
        yield url
    server.engine.close()


@pytest.fixture(scope="module")
def client(server_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=server_url + "/v1", api_key=KEY, max_retries=0)


def greedy(client, model="tiny", messages=HELLO, **kw):
    return client.chat.completions.create(model=model, messages=messages, temperature=0, **kw)


def test_models_lists_base_and_adapters(client):
    assert {m.id for m in client.models.list()} == {"tiny", "sea-poet", "land-poet"}


def test_chat_non_streaming(client, chat_model):
    start = time.perf_counter()
    r = greedy(client, max_tokens=12)
    print(f"chat latency (12 tokens, CPU): {time.perf_counter() - start:.3f}s")
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length" and r.usage.completion_tokens == 12
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    prompt = tokenizer.apply_chat_template(HELLO, add_generation_prompt=True, return_dict=False)
    assert r.usage.prompt_tokens == len(prompt)
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12


def test_streaming_matches_non_streaming(client):
    expected = greedy(client, max_tokens=12).choices[0].message.content
    chunks = list(greedy(client, max_tokens=12, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].usage.completion_tokens == 12


def test_stop_sequence_ends_generation(client):
    full = greedy(client, max_tokens=24).choices[0].message.content
    stop = full[len(full) // 2: len(full) // 2 + 3]
    expected = full[:full.find(stop)]
    r = greedy(client, max_tokens=24, stop=[stop, "zzzz-never"])
    assert r.choices[0].message.content == expected
    assert stop not in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in greedy(client, max_tokens=24, stop=stop, stream=True))
    assert streamed == expected


def test_n_and_seed(client):
    kw = {"model": "tiny", "messages": HELLO, "n": 2, "temperature": 1.0, "seed": 7, "max_tokens": 10}
    first = client.chat.completions.create(**kw)
    assert [c.index for c in first.choices] == [0, 1]
    assert first.usage.completion_tokens == sum(10 for _ in first.choices)
    again = client.chat.completions.create(**kw)
    assert [c.message.content for c in again.choices] == [c.message.content for c in first.choices]


def test_adapter_selected_by_model_name(client):
    outputs = {m: greedy(client, model=m, max_tokens=12).choices[0].message.content
               for m in ("tiny", "sea-poet", "land-poet")}
    assert len(set(outputs.values())) == 3, outputs
    assert greedy(client, model="sea-poet", max_tokens=12).choices[0].message.content == outputs["sea-poet"]


def test_presence_and_frequency_penalties_change_greedy_output(client):
    plain = greedy(client, max_tokens=24).choices[0].message.content
    penalised = greedy(client, max_tokens=24, frequency_penalty=2.0, presence_penalty=1.0).choices[0].message.content
    assert penalised != plain


def test_logprobs(client):
    r = greedy(client, max_tokens=5, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == 5
    for item in content:
        assert len(item.top_logprobs) == 3 and item.logprob <= 0
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob, abs=1e-5)  # greedy took the top token


def test_completions_endpoint(client):
    r = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6, temperature=0, echo=True,
                                  logprobs=2)
    assert r.choices[0].text.startswith("Once upon a time")
    assert r.usage.completion_tokens == 6 and len(r.choices[0].logprobs.tokens) == 6
    streamed = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6, temperature=0,
                                         stream=True)
    assert "Once upon a time" + "".join(c.choices[0].text for c in streamed) == r.choices[0].text


def test_concurrent_requests_are_batched_and_equal_to_sequential(client):
    prompts = [[{"role": "user", "content": f"Tell me about number {i}."}] for i in range(6)]
    sequential = [greedy(client, messages=p, max_tokens=16).choices[0].message.content for p in prompts]
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        time.sleep(0.05 * i)  # staggered: later requests join a batch that is already generating
        results[i] = greedy(client, messages=prompts[i], max_tokens=16).choices[0].message.content

    start = time.perf_counter()
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    print(f"6 concurrent requests x 16 tokens: {elapsed:.2f}s ({96 / elapsed:.1f} tokens/s)")
    assert [results[i] for i in range(6)] == sequential


def test_errors_have_openai_shape(server_url, client):
    no_key = openai.OpenAI(base_url=server_url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        no_key.models.list()
    assert err.value.status_code == 401
    raw = httpx.get(server_url + "/v1/models")
    assert raw.status_code == 401 and set(raw.json()["error"]) == {"message", "type", "param", "code"}

    with pytest.raises(openai.NotFoundError) as err:
        greedy(client, model="no-such-model", max_tokens=2)
    assert err.value.status_code == 404 and err.value.body["code"] == "model_not_found"

    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny", messages=HELLO, temperature=5)
    assert err.value.status_code == 400 and err.value.body["param"] == "temperature"

    with pytest.raises(openai.BadRequestError) as err:
        greedy(client, max_tokens=10**6)
    assert err.value.body["param"] == "max_tokens"

    bad = httpx.post(server_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                     content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    missing = httpx.post(server_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                         json={"model": "tiny"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"


def test_health_and_metrics(server_url, client):
    greedy(client, max_tokens=3)
    assert httpx.get(server_url + "/health").json() == {"status": "ok"}
    text = httpx.get(server_url + "/metrics").text
    assert 'kubetune_requests_total{path="/v1/chat/completions",status="200"}' in text
    generated = [line for line in text.splitlines() if line.startswith('kubetune_generated_tokens_total{model="tiny"}')]
    assert generated and float(generated[0].split()[-1]) >= 3
    assert "kubetune_request_duration_seconds_bucket" in text


def test_tools_in_request_reach_the_template(client):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    r = greedy(client, max_tokens=4, tools=tools)
    without = greedy(client, max_tokens=4)
    assert r.usage.prompt_tokens > without.usage.prompt_tokens  # the tool schema is rendered into the prompt
