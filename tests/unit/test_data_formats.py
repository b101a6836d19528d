"""Row formats normalise to one Example shape; malformed rows are reported with file, row and field."""

from __future__ import annotations

import json

import pytest

from kubetune.config import DataConfig, DatasetAttr
from kubetune.data.formats import DataFormatError, Example, convert_row
from kubetune.data.mixing import interleave, mix, split_eval
from kubetune.data.sources import DatasetSource, load_examples, resolve_sources

ALPACA = DatasetAttr(file_name="x.json")
SHAREGPT = DatasetAttr(file_name="x.jsonl", formatting="sharegpt")
OPENAI = DatasetAttr(file_name="x.jsonl", formatting="openai")


def test_alpaca_with_input_history_and_system():
    attr = DatasetAttr(file_name="x", columns={"history": "history", "system": "sys"})
    row = {"instruction": "Translate.", "input": "Hallo", "output": "Hello", "sys": "Be exact.",
           "history": [["Hi.", "Hi there."]]}
    assert convert_row(row, attr, "sft") == Example(
        messages=[{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hi there."},
                  {"role": "user", "content": "Translate.\nHallo"}, {"role": "assistant", "content": "Hello"}],
        system="Be exact.")
    assert convert_row({"instruction": "Some text."}, ALPACA, "pt") == Example(text="Some text.")


def test_preference_and_kto_shapes():
    pref = DatasetAttr(file_name="x", ranking=True)
    ex = convert_row({"instruction": "Q?", "chosen": "Good.", "rejected": "Bad."}, pref, "dpo")
    assert ex.messages == [{"role": "user", "content": "Q?"}]
    assert (ex.chosen, ex.rejected) == ({"role": "assistant", "content": "Good."},
                                        {"role": "assistant", "content": "Bad."})
    kto = DatasetAttr(file_name="x", formatting="sharegpt", columns={"kto_tag": "label"})
    row = {"conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}], "label": False}
    assert convert_row(row, kto, "kto").label is False
    with pytest.raises(DataFormatError, match="needs preference pairs"):
        convert_row({"instruction": "Q?", "output": "A."}, ALPACA, "dpo")


def test_sharegpt_system_tools_and_function_calls():
    row = {"conversations": [
        {"from": "system", "value": "Use tools."},
        {"from": "human", "value": "Weather?"},
        {"from": "function_call", "value": json.dumps({"name": "weather", "arguments": {"city": "Oslo"}})},
        {"from": "observation", "value": "rain"},
        {"from": "gpt", "value": "It rains."}], "tools": json.dumps([{"name": "weather"}])}
    ex = convert_row(row, DatasetAttr(file_name="x", formatting="sharegpt", columns={"tools": "tools"}), "sft")
    assert ex.system == "Use tools." and ex.tools == [{"name": "weather"}]
    assert [m["role"] for m in ex.messages] == ["user", "assistant", "tool", "assistant"]
    assert ex.messages[1]["tool_calls"] == [{"name": "weather", "arguments": '{"city": "Oslo"}'}]


def test_openai_messages_with_tool_calls():
    row = {"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "content": "sun"}, {"role": "tool", "content": "warm"},
        {"role": "assistant", "content": "Sunny and warm."}]}
    ex = convert_row(row, OPENAI, "sft")
    assert ex.messages[2] == {"role": "tool", "content": "sun\nwarm"}  # consecutive results join
    assert ex.messages[1]["tool_calls"] == [{"name": "w", "arguments": "{}"}]


@pytest.mark.parametrize(("row", "field", "fragment"), [
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
     "conversations[1]", "wrong role order: user after a user turn"),
    ({"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}]},
     "conversations[0]", "wrong role order: assistant as the first turn"),
    ({"conversations": [{"from": "human", "value": "a"}]}, "conversations[0]", "must end with an assistant"),
    ({"conversations": [{"from": "robot", "value": "a"}]}, "conversations[0].from", "unknown role 'robot'"),
    ({"messages": []}, "conversations", "missing column 'conversations'"),
])
def test_sharegpt_errors_name_the_field(row, field, fragment):
    with pytest.raises(DataFormatError) as info:
        convert_row(row, SHAREGPT, "sft")
    assert info.value.field == field and fragment in str(info.value)


def test_missing_alpaca_column():
    with pytest.raises(DataFormatError) as info:
        convert_row({"instruction": "a"}, ALPACA, "sft")
    assert info.value.field == "output" and "missing column 'output'" in str(info.value)


def _source(tmp_path, name: str, text: str, attr: DatasetAttr) -> DatasetSource:
    path = tmp_path / name
    path.write_text(text)
    return DatasetSource("d", attr, path)


GOOD = '{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}'


@pytest.mark.parametrize(("line", "row", "fragment"), [
    ('{"conversations": [', 2, "invalid JSON line"),
    ('{"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}', 2,
     "conversations[1]: wrong role order"),
    ('{"text": "no messages"}', 2, "conversations: missing column 'conversations'"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, line, row, fragment):
    src = _source(tmp_path, "d.jsonl", f"{GOOD}\n{line}\n{GOOD}\n", SHAREGPT)
    with pytest.raises(DataFormatError) as info:
        load_examples(src, "sft")
    err = info.value
    assert (err.file, err.row) == (str(tmp_path / "d.jsonl"), row)
    assert str(err).startswith(f"{tmp_path / 'd.jsonl'}:row {row}: ") and fragment in str(err)


def test_bad_rows_can_be_skipped_and_counted(tmp_path):
    src = _source(tmp_path, "d.jsonl", f"{GOOD}\n{{oops\n{GOOD}\n[1]\n", SHAREGPT)
    loaded = load_examples(src, "sft", skip_bad_rows=True)
    assert (len(loaded.examples), loaded.skipped) == (2, 2)


def test_registry_and_files(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"a": {"file_name": "a.csv"},
                                                            "t": {"file_name": "t.txt", "formatting": "text"}}))
    (tmp_path / "a.csv").write_text("instruction,input,output\nQ1,,A1\nQ2,x,A2\n")
    (tmp_path / "t.txt").write_text("line one\n\nline two\n")
    data = DataConfig(dataset=["a", "t"], dataset_dir=str(tmp_path))
    a, t = resolve_sources(["a", "t"], data)
    assert [e.messages[0]["content"] for e in load_examples(a, "sft").examples] == ["Q1", "Q2\nx"]
    assert [e.text for e in load_examples(t, "pt").examples] == ["line one", "line two"]
    assert len(load_examples(a, "sft", max_samples=1).examples) == 1
    with pytest.raises(DataFormatError, match=r"dataset 'nope' is not registered .* \(known: a, t\)"):
        resolve_sources(["nope"], data)


def test_num_samples_and_mixing():
    from kubetune.data.sources import sample

    assert sorted(sample(list(range(5)), 3, seed=1)) != [] and len(sample(list(range(5)), 8, seed=1)) == 8
    a, b = list(range(10)), list(range(100, 103))
    assert mix([a, b], "concat", None, 0) == a + b
    under = interleave([a, b], [0.5, 0.5], 0, "first_exhausted")
    over = interleave([a, b], [0.5, 0.5], 0, "all_exhausted")
    assert len(under) < len(a) + len(b) and set(a) <= set(over) and set(b) <= set(over)
    train, held = split_eval(list(range(20)), 0.25, seed=3)
    assert len(held) == 5 and sorted(train + held) == list(range(20))
    assert len(split_eval(list(range(20)), 4, seed=3)[1]) == 4
