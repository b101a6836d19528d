"""Tool calls through the real server and the official client, streaming included.

A tiny random model does not emit tool calls and cannot be trained to within a test's budget on two CPU cores, so
the model is replaced by a script AT THE ENGINE PROTOCOL ONLY (tests/scripted_engine.py): prompts are rendered by
the real chat template, the scripted token ids go through the real tokenizer, decoder and stop handling, and the
router and the OpenAI layer (tool-call parsing, streaming deltas, finish reasons) are the production code.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from transformers import AutoTokenizer

from kubetune.config.serve_args import ServeConfig
from kubetune.serve.server import build_server
from tests.scripted_engine import ScriptedEngine
from tests.uvicorn_thread import serving

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CALL = 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
ANSWER = "It is sunny in Paris, 21 degrees."


@pytest.fixture(scope="module", params=[None, "qwen"], ids=["tokenizer-jinja", "registry-qwen"])
def client(tokenizer_dir, request):
    """The same scripted model behind the tokenizer's own Jinja template and behind the registry's qwen template."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.chat_template = (ASSETS / "chatml_tools.jinja").read_text()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompts: list[str] = []

    def respond(prompt_ids: list[int]) -> list[int]:
        prompt = tokenizer.decode(prompt_ids)
        prompts.append(prompt)
        reply = ANSWER if "<tool_response>" in prompt else CALL
        return [*tokenizer.encode(reply, add_special_tokens=False), im_end]

    engine = ScriptedEngine(tokenizer, respond, stop_ids=frozenset({im_end, tokenizer.eos_token_id}))
    config = ServeConfig(model_name_or_path="scripted", served_model_name="tools-bot", template=request.param)
    server = build_server(config, engine=engine)
    with serving(server.app) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        c.seen_prompts = prompts  # type: ignore[attr-defined]
        yield c


def test_tool_call_round_trip(client):
    first = client.chat.completions.create(model="tools-bot", messages=ASK, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert '"name": "get_weather"' in client.seen_prompts[-1]  # the tool schema was rendered into the prompt

    messages = [*ASK, choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"sky": "sunny", "celsius": 21})}]
    second = client.chat.completions.create(model="tools-bot", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == ANSWER and second.choices[0].finish_reason == "stop"
    assert not second.choices[0].message.tool_calls
    rendered = client.seen_prompts[-1]
    assert '"city": "Paris"' in rendered and "<tool_response>" in rendered and "sunny" in rendered


def test_streaming_tool_call_deltas(client):
    chunks = list(client.chat.completions.create(model="tools-bot", messages=ASK, tools=TOOLS, stream=True, n=2))
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == index]
        content = "".join(c.delta.content or "" for c in mine)
        calls = [tc for c in mine for tc in (c.delta.tool_calls or [])]
        assert content == "Let me check."
        assert "<tool_call>" not in content
        assert len(calls) == 1 and calls[0].index == 0 and calls[0].function.name == "get_weather"
        assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
        assert [c.finish_reason for c in mine if c.finish_reason] == ["tool_calls"]


def test_without_tools_the_markup_is_plain_text(client):
    r = client.chat.completions.create(model="tools-bot", messages=ASK)
    assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls
    assert "get_weather" in r.choices[0].message.content


def test_tool_choice_none_disables_parsing(client):
    r = client.chat.completions.create(model="tools-bot", messages=ASK, tools=TOOLS, tool_choice="none")
    assert not r.choices[0].message.tool_calls
    assert '"name": "get_weather"' not in client.seen_prompts[-1]
