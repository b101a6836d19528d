"""Server limits without a model: admission and fair slots, metric labels, request fields, the request guard."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from transformers import AutoTokenizer

from kubetune.config.serve_args import ServeConfig
from kubetune.serve.errors import OpenAIError
from kubetune.serve.guard import RequestGuard
from kubetune.serve.metrics import Metrics, route_label
from kubetune.serve.openai.admission import Admission
from kubetune.serve.openai.completions import CompletionService
from kubetune.serve.openai.protocol import ChatCompletionRequest, CompletionRequest
from kubetune.serve.openai.service import model_table
from tests.scripted_engine import ScriptedEngine


def test_admission_refuses_too_many_sequences_per_request_and_past_the_queue():
    metrics = Metrics()
    admission = Admission(slots=4, max_queued=10, max_per_request=8, metrics=metrics)
    with pytest.raises(OpenAIError) as err:
        admission.reserve(9, param="prompt")
    assert err.value.status == 400 and err.value.param == "prompt" and "max_sequences_per_request" in err.value.message
    first = admission.reserve(8)
    with pytest.raises(OpenAIError) as err:
        admission.reserve(3)
    assert err.value.status == 429 and err.value.code == "rate_limit_exceeded"
    admission.reserve(2)  # what is left still fits
    first.close()
    first.close()  # idempotent: the reservation is returned once
    admission.reserve(8)
    assert metrics.rejected.labels("busy")._value.get() == 1


def test_a_free_slot_goes_to_the_request_that_has_had_none():
    """16 generation requests of one big request queue first; a small request that comes later runs second."""
    admission = Admission(slots=2, max_queued=100, max_per_request=100)
    order: list[str] = []

    async def run(ticket, tag: str, release: asyncio.Event) -> None:
        async with admission.slots_for(ticket, 2):
            order.append(tag)
            await release.wait()

    async def scenario() -> None:
        big, small = admission.reserve(32), admission.reserve(2)
        gates = [asyncio.Event() for _ in range(17)]
        tasks = [asyncio.create_task(run(big, f"big{i}", gates[i])) for i in range(16)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(run(small, "small", gates[16])))
        await asyncio.sleep(0)
        for gate in gates:
            gate.set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert order[:2] == ["big0", "small"]
    assert sorted(order) == sorted([f"big{i}" for i in range(16)] + ["small"])


def test_a_cancelled_waiter_gives_its_place_back():
    admission = Admission(slots=1, max_queued=10, max_per_request=10)

    async def scenario() -> list[str]:
        ticket, ran = admission.reserve(3), []
        hold = asyncio.Event()

        async def run(tag: str, gate: asyncio.Event | None = None) -> None:
            async with admission.slots_for(ticket, 1):
                ran.append(tag)
                if gate:
                    await gate.wait()

        first = asyncio.create_task(run("first", hold))
        await asyncio.sleep(0)
        doomed = asyncio.create_task(run("doomed"))
        await asyncio.sleep(0)
        doomed.cancel()
        last = asyncio.create_task(run("last"))
        hold.set()
        await asyncio.gather(first, last)
        assert admission.running == 0 and not admission._waiters
        return ran

    assert asyncio.run(scenario()) == ["first", "last"]


def test_metrics_label_routes_not_raw_paths():
    app = FastAPI()

    @app.get("/v1/models/{model:path}")
    async def model(model: str) -> dict:
        return {}

    def scope(path: str, method: str = "GET") -> dict:
        return {"type": "http", "path": path, "method": method, "root_path": ""}

    assert route_label(app.router.routes, scope("/v1/models/a/b")) == "/v1/models/{model:path}"
    assert route_label(app.router.routes, scope("/v1/models/x", "POST")) == "/v1/models/{model:path}"
    assert {route_label(app.router.routes, scope(f"/v1/random-{i}")) for i in range(100)} == {"unmatched"}


@pytest.mark.parametrize(("field", "value"), [("seed", 2**70), ("seed", -(2**64)), ("temperature", float("nan")),
                                               ("presence_penalty", float("inf"))])
def test_out_of_range_sampling_fields_are_refused(field, value):
    body = json.loads(json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], field: value}))
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest.model_validate(body)
    assert err.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("prompt", [[True, 2], [1.0, 2.0], [[1], [True]]])
def test_token_prompts_take_integers_only(prompt):
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "m", "prompt": prompt})


def _service(tokenizer_dir, **limits) -> CompletionService:
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    engine = ScriptedEngine(tok, lambda ids: [tok.eos_token_id], frozenset({tok.eos_token_id}), max_model_len=64)
    config = ServeConfig(model_name_or_path="/m/tiny", limits=limits)
    return CompletionService(engine, config, model_table(config))


@pytest.mark.parametrize(("prompt", "param"), [
    ([10**9], "prompt"), ([-1], "prompt"), ([[]], "prompt[0]"), ([[1, 2], [3, 10**9]], "prompt[1]"),
    (["fine", ""], "prompt[1]"),
])
def test_token_prompts_are_checked_against_the_vocabulary(tokenizer_dir, prompt, param):
    service = _service(tokenizer_dir)
    with pytest.raises(OpenAIError) as err:
        asyncio.run(service.prepare(CompletionRequest(model="tiny", prompt=prompt)))
    assert err.value.status == 400 and err.value.param == param
    assert service.admission is not None and service.admission.reserved == 0


def test_a_prompt_over_the_character_limit_is_refused_before_tokenizing(tokenizer_dir):
    service = _service(tokenizer_dir, max_prompt_chars=1000)
    calls: list[str] = []
    tokenizer = service.engine.tokenizer
    service.engine.tokenizer = lambda text, **kw: calls.append(text) or tokenizer(text, **kw)  # type: ignore[misc]
    with pytest.raises(OpenAIError) as err:
        asyncio.run(service.prepare(CompletionRequest(model="tiny", prompt=["ok", "x" * 1001])))
    assert err.value.param == "prompt[1]" and "limits.max_prompt_chars" in err.value.message
    assert calls == []


def test_prompts_are_tokenized_off_the_event_loop(tokenizer_dir):
    service = _service(tokenizer_dir)
    threads: list[threading.Thread] = []
    tokenizer = service.engine.tokenizer
    service.engine.tokenizer = lambda text, **kw: threads.append(threading.current_thread()) or tokenizer(text, **kw)  # type: ignore[misc]

    async def scenario() -> threading.Thread:
        await service.prepare(CompletionRequest(model="tiny", prompt="Hello there"))
        return threading.current_thread()

    loop_thread = asyncio.run(scenario())
    assert threads and all(t is not loop_thread for t in threads)


async def _call(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes], complete: bool = True
                ) -> tuple[list[dict], int]:
    """Run ``app`` on one request whose body arrives in ``chunks``; return what it sent and chunks it read."""
    sent: list[dict] = []
    read = 0

    async def receive() -> dict:
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks) or not complete}
        await asyncio.Event().wait()  # a client that never sends more
        raise AssertionError

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/v1/completions", "method": "POST", "headers": headers}
    await asyncio.wait_for(app(scope, receive, send), 30)
    return sent, read


def test_guard_checks_the_key_before_reading_and_caps_the_body():
    reached: list[bytes] = []

    async def app(scope, receive, send) -> None:
        reached.append((await receive())["body"])

    guard = RequestGuard(app, api_key="k", max_body_bytes=2048, read_timeout_seconds=0.5)
    sent, read = asyncio.run(_call(guard, [(b"content-length", b"999999")], [b"x" * 1024] * 1000))
    assert sent[0]["status"] == 401 and read == 0 and not reached
    key = (b"authorization", b"Bearer k")
    sent, read = asyncio.run(_call(guard, [key, (b"content-length", b"999999")], [b"x" * 1024] * 1000))
    assert sent[0]["status"] == 413 and read == 0
    sent, read = asyncio.run(_call(guard, [key], [b"x" * 1024] * 1000))  # chunked: no length declared
    assert sent[0]["status"] == 413 and read == 3 and not reached
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_too_large"
    sent, read = asyncio.run(_call(guard, [key], [b"{"], complete=False))  # then silence
    assert sent[0]["status"] == 408 and not reached
    sent, _ = asyncio.run(_call(guard, [key], [b'{"a":', b"1}"]))
    assert reached[-1] == b'{"a":1}'


def test_inferenceservice_limits_map_the_same_way_locally_and_in_the_cluster():
    from kubetune.api.inferenceservice import InferenceService, ServerLimitsSpec
    from kubetune.config.mapping.serve import serve_config_from_inferenceservice
    from kubetune.config.serve_limits import ServerLimits
    from kubetune_operator.render.serving import ServingInputs, serve_config
    from tests.builders import make_inferenceservice

    assert set(ServerLimitsSpec.model_fields) == set(ServerLimits.model_fields), "one CR knob per serve limit"
    isvc = InferenceService.model_validate(make_inferenceservice(
        "bot", limits={"maxBodyBytes": 65536, "maxQueuedSequences": 8, "readTimeoutSeconds": 2.5}))
    local = serve_config_from_inferenceservice(isvc, model_path="/m", adapters={}).limits
    cluster = ServeConfig.model_validate(serve_config(isvc, ServingInputs("/m", "bot"))).limits
    assert local == cluster
    assert (local.max_body_bytes, local.max_queued_sequences, local.read_timeout_seconds) == (65536, 8, 2.5)
    assert local.max_connections == ServerLimits().max_connections  # unset keeps the default
    plain = InferenceService.model_validate(make_inferenceservice("bot"))
    assert "limits" not in serve_config(plain, ServingInputs("/m", "bot"))
