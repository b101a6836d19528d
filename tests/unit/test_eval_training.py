"""spec.evaluation in the runtime: the mapping onto eval_benchmarks, the status/manifest shapes, the stage rule and
the sinks that take the scores (pure parts; the scoring itself runs in tests/integration/test_local_evaluation)."""

from __future__ import annotations

import pytest

from kubetune.api.evaluation import score_verdict
from kubetune.api.finetunejob import FineTuneJob
from kubetune.config import ConfigError, config_from_flat
from kubetune.config.mapping.train import runtime_config_from_finetunejob
from kubetune.eval.training import EvaluationSink, evaluation_status, manifest_metrics, report, summary_line
from kubetune.local.progress import LocalProgressSink
from kubetune.status_reporter import FineTuneJobStatusSink
from tests.builders import make_finetunejob

BENCH = {"task": "mmlu_test", "taskDir": "pvc://bench/mmlu", "nShot": 0, "lang": "zh", "batchSize": 8}


def test_spec_evaluation_maps_onto_eval_benchmarks_with_resolved_folders():
    job = FineTuneJob.model_validate(make_finetunejob(evaluation={"benchmarks": [BENCH, {"task": "ceval_val",
                                                                                          "taskDir": "pvc://b/c"}],
                                                                  "baseline": True}))
    cfg = runtime_config_from_finetunejob(job, output_dir="/out", resolve=lambda uri: "/mnt/" + uri[6:])
    first, second = cfg.evaluation.eval_benchmarks
    assert (first.task, first.task_dir, first.n_shot, first.lang, first.batch_size) == (
        "mmlu_test", "/mnt/bench/mmlu", 0, "zh", 8)
    assert (second.task, second.n_shot, second.lang, second.batch_size) == ("ceval_val", 5, "en", 4)
    assert cfg.evaluation.eval_baseline is True


def test_no_evaluation_no_benchmarks():
    job = FineTuneJob.model_validate(make_finetunejob())
    cfg = runtime_config_from_finetunejob(job, output_dir="/out", resolve=lambda uri: uri)
    assert cfg.evaluation.eval_benchmarks == [] and cfg.evaluation.eval_baseline is False


def test_reward_models_are_not_scored_on_benchmarks():
    with pytest.raises(ConfigError, match="score causal LMs trained by pt, sft, dpo, kto or grpo, not stage rm"):
        config_from_flat({"stage": "rm", "model_name_or_path": "m", "dataset": "d", "output_dir": "/o",
                          "eval_benchmarks": [{"task": "mmlu_test", "task_dir": "/b"}]})


def test_status_and_manifest_shapes():
    status = evaluation_status({"mmlu_test": 61.5, "ceval_val": 40.0}, {"mmlu_test": 25.0, "ceval_val": 25.0})
    assert status == {"task": "mmlu_test", "score": 61.5, "scores": {"mmlu_test": 61.5, "ceval_val": 40.0},
                      "baseline": {"mmlu_test": 25.0, "ceval_val": 25.0}}
    assert "baseline" not in evaluation_status({"mmlu_test": 61.5}, None)
    assert manifest_metrics({"mmlu_test": 61.5}, {"mmlu_test": 25.0}) == {
        "accuracy/mmlu_test": 61.5, "baseline_accuracy/mmlu_test": 25.0}
    assert summary_line(status) == ("evaluation: mmlu_test 61.50  ceval_val 40.00  (baseline mmlu_test 25.00)  "
                                    "(baseline ceval_val 25.00)")


def test_both_status_sinks_take_the_scores():
    assert issubclass(FineTuneJobStatusSink, EvaluationSink) and issubclass(LocalProgressSink, EvaluationSink)


def test_a_failing_sink_never_fails_the_run():
    class Broken:
        def evaluation(self, status):
            raise OSError("apiserver unreachable")

    class Progress:  # a progress-only sink is skipped
        def update(self, progress):
            raise AssertionError("not a progress update")

    said: list[str] = []
    report([Broken(), Progress()], {"task": "t_x", "score": 1.0}, said.append)
    assert said == ["warning: could not report the evaluation to Broken: apiserver unreachable"]


def test_local_and_cluster_gates_share_one_rule():
    status = {"evaluation": {"task": "mmlu_test", "score": 40.0}}
    assert score_verdict(40, "FineTuneJob", "j", status) is None
    reason, message = score_verdict(40.5, "FineTuneJob", "j", status)
    assert reason == "ScoreBelowMinimum" and message.startswith("FineTuneJob 'j' scored 40 on mmlu_test")
    assert score_verdict(40, "FineTuneJob", "j", {})[0] == "WaitingForScore"


def test_training_pods_mount_the_benchmark_folders():
    from kubetune_operator.reconcile.finetunejob import read_uris

    job = FineTuneJob.model_validate(make_finetunejob(evaluation={"benchmarks": [BENCH]}))
    assert "pvc://bench/mmlu" in read_uris(job, [])
