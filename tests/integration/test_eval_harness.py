"""`kubetune eval` task_type harness: an lm-evaluation-harness task from examples/evaluation (a local jsonl, nothing
downloaded) scored on a model directory and on the same model served by `kubetune serve`.

The task is ``generate_until`` (greedy continuations, exact match): kubetune's hf engine serves /v1/completions with
text prompts and greedy decoding, but its ``echo`` returns the prompt text without prompt-token logprobs, so
loglikelihood and multiple-choice tasks score on a model directory or on vLLM's endpoint, not on the hf engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from kubetune.cli.main import main
from kubetune.eval.config import EvalConfig
from kubetune.eval.harness import evaluate
from tests.support.processes import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "examples" / "evaluation" / "harness-tasks"
TASK = "kubetune_words_generate"


def _responses(results: dict) -> list[str]:
    return [s["filtered_resps"][0] for s in sorted(results["samples"][TASK], key=lambda s: s["doc_id"])]


@pytest.fixture
def endpoint(tiny_llama, tmp_path):
    """`kubetune serve` on a free loopback port, the tiny model as ``tiny``; waits until /v1/models answers."""
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_llama)}))
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "kubetune.cli.main", "serve", str(config), "--host",
                                "127.0.0.1", "--port", str(port), "--served-model-name", "tiny"],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        while process.poll() is None:
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert process.poll() is None, (tmp_path / "serve.log").read_text()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_the_same_task_scores_alike_on_a_model_directory_and_its_endpoint(tiny_llama, endpoint, tmp_path):
    keys = {"task_type": "harness", "model_name_or_path": str(tiny_llama), "tasks": [TASK],
            "include_path": str(TASKS), "batch_size": 1}
    on_dir = evaluate(EvalConfig.model_validate(keys), samples=True)
    served = {**keys, "base_url": f"{endpoint}/completions", "served_model_name": "tiny"}
    on_endpoint = evaluate(EvalConfig.model_validate(served), samples=True)
    documents = [json.loads(line) for line in (TASKS / "words.jsonl").read_text().splitlines()]
    assert len(_responses(on_dir)) == len(documents)
    assert _responses(on_dir) == _responses(on_endpoint)  # the same greedy continuation of every document
    assert any(r.strip() for r in _responses(on_dir))  # the model said something
    responses = _responses(on_dir)
    expected = sum(r.strip() == d["answer"] for r, d in zip(responses, documents, strict=True)) / len(documents)
    score = on_dir["results"][TASK]["exact_match,none"]
    assert score == on_endpoint["results"][TASK]["exact_match,none"] == pytest.approx(expected)

    # the command line: the same score in results.json (percent, as the other task types)
    config = tmp_path / "harness.yaml"
    config.write_text(yaml.safe_dump({**served, "save_dir": str(tmp_path / "out")}))
    assert main(["eval", str(config)]) == 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["score"] == round(100 * score, 2) and saved["tasks"] == [TASK]


def test_harness_config_errors_are_named(tmp_path, capsys):
    with pytest.raises(ValueError, match="needs tasks"):
        EvalConfig(model_name_or_path="m", task_type="harness")
    with pytest.raises(ValueError, match="needs served_model_name"):
        EvalConfig(model_name_or_path="m", task_type="harness", tasks=["t"], base_url="http://x/v1/completions")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"task_type": "harness", "model_name_or_path": "m", "tasks": ["t"],
                                      "include_path": str(tmp_path / "missing")}))
    assert main(["eval", str(config)]) == 2
    assert "missing: not a folder of lm-eval task YAML files" in capsys.readouterr().err
