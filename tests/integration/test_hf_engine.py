"""The hf engine's batching: rows join a running batch, adapters mix in one batch, results match solo runs."""

from __future__ import annotations

import asyncio

import pytest

from kubetune.artifacts import ArtifactError
from kubetune.config.serve_args import LoraAdapter, ServeConfig
from kubetune.serve.engine import GenerationRequest, SamplingParams
from kubetune.serve.engine.hf_load import load_hf_engine
from tests.adapters import train_lora

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tiny_llama, tmp_path_factory):
    adapter = train_lora(tiny_llama, tmp_path_factory.mktemp("ad"), ["A short text to learn."], steps=3)
    engine = load_hf_engine(ServeConfig(model_name_or_path=str(tiny_llama),
                                        lora_adapters=[LoraAdapter(name="ad", path=str(adapter))]))
    yield engine
    engine.close()


def _request(prompt: list[int], max_tokens: int, adapter: str | None = None) -> GenerationRequest:
    return GenerationRequest(prompt, SamplingParams(max_tokens=max_tokens, temperature=0.0), adapter)


async def _run(engine, request: GenerationRequest, events: list | None = None, tag: str = "") -> str:
    text = ""
    async for delta in engine.generate(request):
        text += delta.text
        if events is not None:
            events.append((tag, delta.finish_reason))
    return text


def test_a_request_joins_a_running_batch(engine):
    long_req = _request([83, 356, 122, 534, 264], 48)
    short_req = _request([400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410], 6)  # longer prompt: pads the batch

    async def scenario():
        alone_long = await _run(engine, long_req)
        alone_short = await _run(engine, short_req)
        events: list = []
        long_task = asyncio.create_task(_run(engine, long_req, events, "long"))
        while not events:
            await asyncio.sleep(0.001)
        short_text = await _run(engine, short_req, events, "short")
        return alone_long, alone_short, await long_task, short_text, events

    alone_long, alone_short, long_text, short_text, events = asyncio.run(scenario())
    assert long_text == alone_long and short_text == alone_short
    finished = [tag for tag, finish in events if finish]
    assert finished == ["short", "long"], "the short request ran inside the long one's batch"
    first_short = next(i for i, (tag, _) in enumerate(events) if tag == "short")
    assert any(tag == "long" for tag, _ in events[first_short:]), "both advanced in the same steps"


def test_adapters_mix_in_one_batch(engine):
    prompt = [83, 356, 122, 534, 264, 14]

    async def scenario():
        solo = [await _run(engine, _request(prompt, 12, a)) for a in (None, "ad")]
        together = await asyncio.gather(*(_run(engine, _request(prompt, 12, a)) for a in (None, "ad")))
        return solo, list(together)

    solo, together = asyncio.run(scenario())
    assert solo[0] != solo[1], "the adapter changes the output"
    assert together == solo


def test_a_cancelled_request_does_not_block_others(engine):
    async def scenario():
        stream = engine.generate(_request([83, 356], 1000))
        await stream.__anext__()
        await stream.aclose()
        return await asyncio.wait_for(_run(engine, _request([83, 356, 122], 4)), timeout=60)

    assert asyncio.run(scenario())


def test_a_request_that_does_not_stream_gets_its_whole_text_at_once(engine):
    params = SamplingParams(max_tokens=20, temperature=0.0, logprobs=2, n=2)
    prompt = [83, 356, 122, 534]

    async def deltas(stream: bool) -> list:
        return [d async for d in engine.generate(GenerationRequest(prompt, params, stream=stream))]

    streamed, whole = asyncio.run(deltas(True)), asyncio.run(deltas(False))
    assert len(streamed) > 2 * 2, "a streaming request gets a delta per token"
    assert sorted(d.index for d in whole) == [0, 1] and all(d.finish_reason for d in whole)
    for index in (0, 1):
        pieces = [d for d in streamed if d.index == index]
        (one,) = [d for d in whole if d.index == index]
        assert one.text == "".join(d.text for d in pieces)
        assert one.logprobs == tuple(lp for d in pieces for lp in d.logprobs) and len(one.logprobs) == 20
        assert (one.completion_tokens, one.finish_reason) == (pieces[-1].completion_tokens, pieces[-1].finish_reason)


def test_adapter_for_another_base_is_refused_at_start(tiny_model_factory, tiny_llama, tmp_path):
    other = tiny_model_factory("llama", hidden_size=32, intermediate_size=64)
    adapter = train_lora(other, tmp_path / "other", ["text"], steps=1)
    with pytest.raises(ArtifactError, match=f"trained on {other} and does not fit"):
        load_hf_engine(ServeConfig(model_name_or_path=str(tiny_llama),
                                   lora_adapters=[LoraAdapter(name="x", path=str(adapter))]))
