"""Hostile and careless YAML: alias bombs, deep nesting, other encodings, duplicate keys and empty files are
refused with the file, line and what was expected, and every command that reads user YAML exits 2 (validate 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune.api.documents import load_documents, validate_file
from kubetune.api.yamlfile import MAX_DEPTH, MAX_NODES, YamlFileError, compose_all, decode, load_value
from kubetune.cli.main import main as kubetune_main
from tests.builders import make_finetunejob

ROOT = Path(__file__).resolve().parents[2]


def alias_bomb(levels: int = 9) -> str:
    """``a`` holds 9 strings, each next key 9 aliases of the one before: 9**levels strings once expanded."""
    lines = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def load(text: str) -> list:
    return [value for _, value in compose_all(text, "f.yaml")]


def refusal(text: str) -> YamlFileError:
    with pytest.raises(YamlFileError) as info:
        load(text)
    return info.value


def test_alias_bomb_is_refused_at_the_alias_that_expands_too_far():
    err = refusal(alias_bomb())
    assert f"expands to more than {MAX_NODES:,} nodes" in err.message
    assert (err.file, err.line) == ("f.yaml", 6)  # 9**6 strings; line 5 (9**5 = 59,049) is still within the limit


def test_anchors_for_sharing_still_work():
    text = "base: &b {lr: 0.1, steps: 3}\nrun:\n  <<: *b\n  steps: 5\ncopy: *b\n"
    assert load(text) == [{"base": {"lr": 0.1, "steps": 3}, "run": {"lr": 0.1, "steps": 5},
                           "copy": {"lr": 0.1, "steps": 3}}]


def test_deep_nesting_is_refused_not_a_recursion_error():
    err = refusal("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert err.message == f"nested more than {MAX_DEPTH} levels deep" and err.line == 1
    nested: list = []
    for _ in range(MAX_DEPTH - 3):
        nested = [nested]
    assert load(f"a: {nested}\n") == [{"a": nested}]  # the document, the mapping and the key leave 97 levels


@pytest.mark.parametrize(("text", "line", "first"), [
    ("model_name_or_path: m\nstage: sft\nlr: 1\nstage: pt\n", 4, 2),
    ("spec:\n  x: {a: 1, a: 2}\n", 2, 2),
])
def test_duplicate_keys_are_errors_naming_both_lines(text, line, first):
    err = refusal(text)
    assert err.line == line and f"(first at line {first})" in err.message and "duplicate key" in err.message


def test_recursive_alias_is_refused():
    assert "inside its own anchor" in refusal("a: &a [1, *a]\n").message


def test_non_utf8_names_line_and_column():
    with pytest.raises(YamlFileError) as info:
        decode(b"stage: sft\ntemplate: caf\xe9\n", "cfg.yaml")
    assert str(info.value) == "cfg.yaml:2:14: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    assert decode("\ufeffa: 1\n".encode(), "bom.yaml") == "a: 1\n"


def test_override_values_use_the_same_limits():
    assert load_value("[1, 2]") == [1, 2]
    with pytest.raises(YamlFileError, match="nested more than"):
        load_value("[" * 500 + "]" * 500)


def test_empty_file_does_not_validate(tmp_path):
    for text in ("", "# only a comment\n", "---\n---\n"):
        (tmp_path / "empty.yaml").write_text(text)
        [err] = validate_file(tmp_path / "empty.yaml")
        assert "holds no YAML document" in err.message
    assert list(load_documents(tmp_path / "empty.yaml")) == []


# Each command that reads user YAML, and the exit code it gives for a file it cannot use.
COMMANDS = {"validate": 1, "run": 2, "train": 2, "convert": 2, "export": 2, "serve": 2}
BAD_FILES = {
    "empty": (b"", "holds no YAML document"),
    "latin1": (b"model_name_or_path: m\ntemplate: caf\xe9\n", ":2: <document>: not UTF-8 text"),
    "nested": (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", ":1: <document>: nested more than"),
    "duplicate": (b"model_name_or_path: m\nstage: sft\nstage: pt\n", ":3: <document>: duplicate key 'stage'"),
}


def argv(command: str, file: Path, tmp_path: Path) -> list[str]:
    return [command, str(file), *(["--work-dir", str(tmp_path / "work")] if command == "run" else [])]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", BAD_FILES)
def test_commands_report_bad_yaml_located(command, kind, tmp_path, capsys):
    raw, message = BAD_FILES[kind]
    file = tmp_path / f"{kind}.yaml"
    file.write_bytes(raw)
    assert kubetune_main(argv(command, file, tmp_path)) == COMMANDS[command]
    err = capsys.readouterr().err
    assert f"{file}{message}" in err if message.startswith(":") else message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_alias_bomb_exits_at_once_in_a_real_process(command, tmp_path):
    """In a subprocess, as people run it: the exit code and message, no traceback, no minutes of expansion."""
    file = tmp_path / "bomb.yaml"
    file.write_text(alias_bomb())
    proc = subprocess.run([sys.executable, "-m", "kubetune.cli.main", *argv(command, file, tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == COMMANDS[command], proc.stderr
    assert f"{file}:6: <document>: expands to more than {MAX_NODES:,} nodes" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_of_an_empty_file_is_not_a_silent_success(tmp_path, capsys):
    """With a good file next to it, nothing runs: the whole command is refused before any record is written."""
    good = tmp_path / "job.yaml"
    good.write_text(yaml.safe_dump(make_finetunejob("a")))
    (tmp_path / "empty.yaml").write_text("")
    argv = ["run", str(good), str(tmp_path / "empty.yaml"), "--work-dir", str(tmp_path / "w")]
    assert kubetune_main(argv) == 2
    assert f"{tmp_path / 'empty.yaml'}: <document>: the file holds no YAML document" in capsys.readouterr().err
    assert not (tmp_path / "w" / "objects").exists()
