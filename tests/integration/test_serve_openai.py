"""The HF-engine server driven by the official `openai` client over a loopback port: what only kubetune's own
engine promises (penalties, batching equal to serial runs, its error shapes, metrics, tools in the template).
The OpenAI behaviour both engines share is tested once, on both, in test_serve_conformance.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from transformers import AutoTokenizer, GenerationConfig

from kubetune.config.serve_args import ServeConfig
from kubetune.model.tiny import build_tiny_model
from kubetune.serve.server import build_server
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
def server_url(chat_model):
    config = ServeConfig(model_name_or_path=str(chat_model), served_model_name="tiny", api_key=KEY,
                         max_batch_size=8)
    server = build_server(config)
    with serving(server.app) as url:
        yield url
    server.engine.close()


@pytest.fixture(scope="module")
def client(server_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=server_url + "/v1", api_key=KEY, max_retries=0)


def greedy(client, model="tiny", messages=HELLO, **kw):
    return client.chat.completions.create(model=model, messages=messages, temperature=0, **kw)


def test_presence_and_frequency_penalties_change_greedy_output(client):
    plain = greedy(client, max_tokens=24).choices[0].message.content
    penalised = greedy(client, max_tokens=24, frequency_penalty=2.0, presence_penalty=1.0).choices[0].message.content
    assert penalised != plain


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
