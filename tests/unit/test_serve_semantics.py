"""Pure pieces of serving: stop strings, incremental decoding, OpenAI penalties, per-row sampling, tool parsing."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from kubetune.serve.engine.sampling import OpenAIPenaltyLogitsProcessor, RowwiseSamplingWarper, sample_rows
from kubetune.serve.engine.textstream import IncrementalDecoder, StopStringFilter, held_back
from kubetune.serve.openai.tools import TOOL_FORMATS, ToolCallStream, parse_tool_calls


@pytest.mark.parametrize(("text", "stops", "expected"), [
    ("hello wor", ("world",), 3), ("hello", ("world",), 0), ("abc<", ("<stop>", "c<s"), 2), ("x", (), 0),
])
def test_held_back(text, stops, expected):
    assert held_back(text, stops) == expected


def test_stop_filter_cuts_across_pieces():
    f = StopStringFilter(("STOP",))
    assert f.feed("Hello ST") == ("Hello ", False)
    assert f.feed("O") == ("", False)
    assert f.feed("P and more") == ("", True)
    g = StopStringFilter(("STOP",))
    assert g.feed("almost ST") == ("almost ", False)
    assert g.feed("ep") == ("STep", False)
    assert g.flush() == ""


def test_incremental_decoder_matches_full_decode(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = tok.encode("Hello wörld, naïve café <tool_call>{}</tool_call>", add_special_tokens=False)
    special = frozenset({i for i, t in tok.added_tokens_decoder.items() if t.special})
    keep = frozenset({tok.convert_tokens_to_ids("<tool_call>"), tok.convert_tokens_to_ids("</tool_call>")})
    dec = IncrementalDecoder(tok, special, keep)
    assert "".join(dec.add(i) for i in ids) == tok.decode(ids)
    drop = IncrementalDecoder(tok, special)
    assert "".join(drop.add(i) for i in ids) == tok.decode(ids, skip_special_tokens=True)


def test_openai_penalties_are_additive_over_completion_counts():
    scores = torch.zeros(2, 5)
    completion = torch.tensor([[1, 1, 3, -1], [2, 2, 2, 2]])  # -1 = padding
    out = OpenAIPenaltyLogitsProcessor(torch.tensor([0.5, 0.0]), torch.tensor([1.0, 0.25]))(completion, scores)
    assert out[0].tolist() == [0.0, -2.5, 0.0, -1.5, 0.0]  # token 1: 2×1.0 + 0.5 ; token 3: 1×1.0 + 0.5
    assert out[1].tolist() == [0.0, 0.0, -1.0, 0.0, 0.0]  # token 2: 4×0.25, no presence penalty


def test_rowwise_top_k_top_p_and_temperature():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 3))
    warper = RowwiseSamplingWarper(temperature=torch.tensor([1.0, 1.0, 2.0]), top_k=torch.tensor([2, 0, 0]),
                                   top_p=torch.tensor([1.0, 0.7, 1.0]))
    out = warper(torch.empty(3, 0, dtype=torch.long), scores)
    assert torch.isinf(out[0, 2:]).all() and torch.isfinite(out[0, :2]).all()  # top-k 2
    assert torch.isinf(out[1, 2:]).all() and torch.isfinite(out[1, :2]).all()  # 0.5 + 0.3 reaches 0.7
    assert torch.allclose(out[2], scores[2] / 2)  # temperature only


def test_sample_rows_greedy_and_seeded():
    scores = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 0.0]])
    gens = [None, torch.Generator().manual_seed(3)]
    a = sample_rows(scores, [True, False], gens)
    gens = [None, torch.Generator().manual_seed(3)]
    b = sample_rows(scores, [True, False], gens)
    assert a[0] == 1 and a.tolist() == b.tolist()


def test_tool_stream_holds_partial_marker_and_emits_whole_calls():
    stream = ToolCallStream(TOOL_FORMATS["hermes"])
    events = []
    for piece in ["Sure.", "<tool", "_call>", '{"name": "f", ', '"arguments": {"x": 1}}', "</tool_call>", " done"]:
        events += stream.feed(piece)
    events += stream.finish()
    assert events[0] == ("content", "Sure.")
    kind, (index, call_id, name, args) = events[1]
    assert (kind, index, name, json.loads(args)) == ("call", 0, "f", {"x": 1}) and call_id.startswith("call_")
    assert events[2:] == [("content", " done")]


@pytest.mark.parametrize(("fmt", "text", "calls"), [
    ("hermes", '<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": '
               '{"k": "v"}}</tool_call>', [("a", {}), ("b", {"k": "v"})]),
    ("mistral", '[TOOL_CALLS][{"name": "a", "arguments": {"n": 2}}]', [("a", {"n": 2})]),
    ("llama3", '<|python_tag|>{"name": "a", "parameters": {"n": 2}}', [("a", {"n": 2})]),
    ("llama3", '{"name": "a", "parameters": {"n": 2}}\n{"name": "b", "parameters": {}}', [("a", {"n": 2}), ("b", {})]),
    ("glm4", 'get_weather\n{"city": "Paris"}', [("get_weather", {"city": "Paris"})]),
])
def test_parse_tool_calls_per_family(fmt, text, calls):
    content, parsed = parse_tool_calls(text, TOOL_FORMATS[fmt])
    assert content is None
    assert [(name, json.loads(args)) for _, name, args in parsed] == calls


def test_formats_without_marker_read_the_whole_output():
    stream = ToolCallStream(TOOL_FORMATS["llama3"])
    assert stream.feed("Plain ") == [] and stream.feed("answer.") == []
    assert stream.finish() == [("content", "Plain answer.")]


def test_unparseable_call_stays_content():
    content, calls = parse_tool_calls("<tool_call>not json</tool_call>", TOOL_FORMATS["hermes"])
    assert calls == [] and content == "<tool_call>not json</tool_call>"
