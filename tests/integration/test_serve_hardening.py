"""The HF-engine server under hostile or careless clients: bad prompts, big bodies, idle sockets, floods.

Each test drives a real server (uvicorn with kubetune's HTTP settings, a tiny local model) with the official
`openai` client, or with raw httpx/sockets where the client cannot express the attack. Waits are bounded only to
turn a hang into a failure; what is asserted is behaviour.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn

from kubetune.config.serve_args import ServeConfig
from kubetune.config.serve_limits import ServerLimits
from kubetune.model.tiny import build_tiny_model
from kubetune.serve.engine import EngineError, GenerationRequest, SamplingParams
from kubetune.serve.engine.hf_load import load_hf_engine
from kubetune.serve.http import uvicorn_config
from kubetune.serve.server import build_server
from tests.uvicorn_thread import free_port

pytestmark = pytest.mark.slow
KEY = "sk-hardening"
ASSETS = Path(__file__).resolve().parents[1] / "assets"
HANG = 120  # seconds after which a wait is a failure, never a measurement


@contextmanager
def serving(config: ServeConfig) -> Iterator[tuple[str, object]]:
    """(base URL, Server) of ``config`` served by uvicorn as `kubetune serve` configures it."""
    server = build_server(config)
    port = free_port()
    web = uvicorn.Server(uvicorn_config(server.app, "127.0.0.1", port, config.limits, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + HANG
    while not web.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        web.should_exit = True
        thread.join(timeout=HANG)
        server.engine.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model"), "qwen2",
                            chat_template=(ASSETS / "chatml_tools.jinja").read_text())


LIMITS = {"max_body_bytes": 256 * 1024, "max_prompt_chars": 20_000, "max_sequences_per_request": 32,
          "max_queued_sequences": 40, "max_connections": 16, "read_timeout_seconds": 2}


@pytest.fixture(scope="module")
def served(model):
    config = ServeConfig(model_name_or_path=str(model), served_model_name="tiny", api_key=KEY, max_batch_size=8,
                         limits=LIMITS)
    with serving(config) as (url, server):
        yield url, server


@pytest.fixture(scope="module")
def url(served) -> str:
    return served[0]


@pytest.fixture(scope="module")
def client(url) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=HANG)


def metric(url: str, name: str, labels: str = "") -> float:
    """A sample's value from /metrics (0 when it is not there yet)."""
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)"
    found = re.search(r"^" + pattern + "$", httpx.get(url + "/metrics").text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_for(probe, what: str):
    deadline = time.monotonic() + HANG
    while not (value := probe()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)
    return value


# --- item 6: token ids and shapes ------------------------------------------------------------------------------

@pytest.mark.parametrize(("prompt", "param"), [([999999999], "prompt"), ([[]], "prompt[0]"), ([-5, 3], "prompt"),
                                               ([[1, 2], [3, 999999999]], "prompt[1]")])
def test_bad_token_prompts_are_a_400_and_running_requests_go_on(url, client, prompt, param):
    stream = client.completions.create(model="tiny", prompt="The sea", max_tokens=40, temperature=0, stream=True)
    first = next(iter(stream))  # the good request is generating
    with pytest.raises(openai.BadRequestError) as err:
        client.with_options(timeout=30).completions.create(model="tiny", prompt=prompt, max_tokens=4)
    assert err.value.body["param"] == param and err.value.body["type"] == "invalid_request_error"
    rest = list(stream)
    assert rest[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].text for c in [first, *rest])
    wait_for(lambda: metric(url, "kubetune_requests_in_flight") == 0, "no request left in flight")


def test_seed_beyond_64_bits_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="tiny", prompt="hi", max_tokens=2, seed=2**70)
    assert err.value.body["param"] == "seed"


# --- item 7: metrics, body, prompt size ---------------------------------------------------------------------------

def test_random_paths_do_not_grow_metrics(url):
    for _ in range(200):
        httpx.get(f"{url}/{uuid.uuid4().hex}")
    text = httpx.get(url + "/metrics").text
    assert 'kubetune_requests_total{path="unmatched",status="404"}' in text
    assert not re.search(r'path="/[0-9a-f]{32}"', text)
    assert len(text) < 64 * 1024


def _raw(url: str, head: bytes, body: bytes) -> bytes:
    """Send headers and part of a body, never the rest; return the server's answer (it must not wait for more)."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_the_key_is_checked_before_the_body_is_read(url):
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer wrong\r\nContent-Length: 200000000\r\n\r\n")
    assert _raw(url, head, b'{"model": "tiny", "prompt": "').startswith(b"HTTP/1.1 401")


def test_a_body_over_the_limit_is_a_413_before_it_is_read(url):
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 200000000\r\n\r\n")
    assert _raw(url, head, b'{"model": "tiny", "prompt": "').startswith(b"HTTP/1.1 413")
    chunked = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Authorization: Bearer " + KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    part = b"x" * 65536
    body = (f"{len(part):x}\r\n".encode() + part + b"\r\n") * 6  # 384 KiB of a body that never ends
    assert _raw(url, chunked, body).startswith(b"HTTP/1.1 413")


def test_a_prompt_over_the_character_limit_is_refused(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "word " * 10_000}],
                                       max_tokens=2)
    assert err.value.body["param"] == "messages" and "limits.max_prompt_chars" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="tiny", prompt="word " * 10_000, max_tokens=2)
    assert err.value.body["param"] == "prompt"


# --- item 7: abandoned requests, sequences, fairness ------------------------------------------------------------

def test_an_abandoned_non_streaming_request_stops_generating(url):
    before = metric(url, "kubetune_generated_tokens_total", 'model="tiny"')
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=1.0,
                   json={"model": "tiny", "prompt": "Once", "max_tokens": 2000, "temperature": 0,
                         "stop": ["never-stops-here"]})
    wait_for(lambda: metric(url, "kubetune_requests_cancelled_total") >= 1, "the request is cancelled")
    wait_for(lambda: metric(url, "kubetune_sequences_running") == 0, "its engine slot is free")
    assert metric(url, "kubetune_generated_tokens_total", 'model="tiny"') == before, "it never ran to the end"


def test_prompts_times_n_over_the_limit_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="tiny", prompt=["a", "b", "c"], n=16, max_tokens=1)
    assert err.value.body["param"] == "prompt" and "max_sequences_per_request" in err.value.body["message"]


def test_a_small_request_is_served_while_a_flood_runs_and_the_queue_is_bounded(url, client):
    events: list[str] = []
    flood_done = threading.Event()

    def flood() -> None:
        client.completions.create(model="tiny", prompt=[f"story {i}" for i in range(2)], n=16, max_tokens=40,
                                  temperature=0, stop=["never-stops-here"])
        events.append("flood")
        flood_done.set()

    worker = threading.Thread(target=flood)
    worker.start()
    wait_for(lambda: metric(url, "kubetune_sequences_running") > 0, "the flood is generating")
    # a second flood does not fit the queue: refused at once, not queued
    with pytest.raises(openai.RateLimitError) as err:
        client.completions.create(model="tiny", prompt=[f"more {i}" for i in range(2)], n=16, max_tokens=48)
    assert err.value.status_code == 429 and err.value.body["code"] == "rate_limit_exceeded"
    small = client.completions.create(model="tiny", prompt="hi", max_tokens=3, temperature=0)
    events.append("small")
    worker.join(timeout=HANG)
    assert flood_done.is_set() and small.choices[0].finish_reason == "length"
    assert events == ["small", "flood"]


# --- item 7: connections -------------------------------------------------------------------------------------------

def test_idle_and_excess_connections_are_closed(url, client):
    port = int(url.rsplit(":", 1)[1])
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=HANG) for _ in range(40)]
    try:
        sockets[0].sendall(b"GET /health HTTP/1.1\r\nHo")  # slow headers: trickled, never finished
        for sock in sockets:
            assert sock.recv(1024) == b"", "the server closes connections that send no request"
    finally:
        for sock in sockets:
            sock.close()
    assert client.models.list().data[0].id == "tiny"


# --- item 6: the engine fails one request, not its batch; close fails the rest -----------------------------------

@pytest.fixture
def engine(model):
    engine = load_hf_engine(ServeConfig(model_name_or_path=str(model), max_batch_size=8))
    yield engine
    engine.close()


def _greedy(prompt: list[int], max_tokens: int) -> GenerationRequest:
    return GenerationRequest(prompt, SamplingParams(max_tokens=max_tokens, temperature=0.0))


async def _text(engine, request: GenerationRequest) -> str:
    return "".join([d.text async for d in engine.generate(request)])


POISON = 777  # a prompt holding this token makes the model's forward pass fail (an engine error on one request)


def test_an_engine_error_fails_only_its_request(engine):
    forward = engine.model.forward

    def poisoned(*args, input_ids=None, **kwargs):
        if input_ids is not None and bool((input_ids == POISON).any()):
            raise RuntimeError("poisoned prompt")
        return forward(*args, input_ids=input_ids, **kwargs)

    async def scenario():
        alone = [await _text(engine, _greedy(p, n)) for p, n in (([83, 356, 122], 160), ([400, 401], 24))]
        engine.model.forward = poisoned
        running = asyncio.create_task(_text(engine, _greedy([83, 356, 122], 160)))
        await asyncio.sleep(0.05)
        bad, good = await asyncio.gather(_text(engine, _greedy([5, POISON, 6], 8)),
                                         _text(engine, _greedy([400, 401], 24)), return_exceptions=True)
        return alone, await running, bad, good

    alone, running, bad, good = asyncio.run(asyncio.wait_for(scenario(), HANG))
    assert isinstance(bad, EngineError)
    assert [running, good] == alone


def test_out_of_vocabulary_ids_never_reach_the_model(engine):
    async def scenario():
        with pytest.raises(EngineError):
            await _text(engine, _greedy([engine.vocab_size], 4))
        return await _text(engine, _greedy([83, 356], 4))

    assert asyncio.run(asyncio.wait_for(scenario(), HANG))


def test_close_fails_waiting_and_running_requests(engine):
    async def scenario():
        running = asyncio.create_task(_text(engine, _greedy([83, 356], 1800)))
        await asyncio.sleep(0.1)
        await asyncio.get_running_loop().run_in_executor(None, engine.close)
        with pytest.raises(EngineError):
            await running
        with pytest.raises(EngineError):
            await _text(engine, _greedy([83], 4))

    asyncio.run(asyncio.wait_for(scenario(), HANG))


def test_shutdown_cancels_requests_that_outlast_the_grace_period(model):
    config = ServeConfig(model_name_or_path=str(model), served_model_name="tiny",
                         limits=ServerLimits(shutdown_seconds=0.5))
    server = build_server(config)
    port = free_port()
    web = uvicorn.Server(uvicorn_config(server.app, "127.0.0.1", port, config.limits, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    wait_for(lambda: web.started, "uvicorn started")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=HANG)
    stream = client.completions.create(model="tiny", prompt="Once", max_tokens=1900, temperature=0,
                                       stop=["never-stops-here"], stream=True)
    next(iter(stream))
    web.should_exit = True
    thread.join(timeout=HANG)
    server.engine.close()
    assert not thread.is_alive(), "the server stopped while a long request was running"
