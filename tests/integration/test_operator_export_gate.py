"""The promotion gate on a real apiserver: a ModelExport with spec.source.minScore exports a FineTuneJob's output
only when its status.evaluation.score reaches the minimum, fails with ScoreBelowMinimum when the run regressed,
and waits while no score is reported; a score the runtime reports after the job succeeded un-blocks it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubetune.eval.training import evaluation_status
from kubetune.status_reporter import from_env
from tests.builders import make_finetunejob, make_modelexport
from tests.integration.test_operator_chaining import FTJ, JOB, MEXP, condition, finish, in_ns
from tests.integration.test_operator_progress import pod_env, runtime_kubeconfig
from tests.support.operator import RunningOperator, get_json, patch_status, phase_of, start_operator, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def operator(operator_installed) -> Iterator[RunningOperator]:
    """An operator whose resync timer never fires during these tests: only watches can un-block an export."""
    running = start_operator(operator_installed, resync_seconds=3600)
    try:
        yield running
    finally:
        running.stop()


def trained(cluster, namespace: str, name: str, score: float | None) -> None:
    """A FineTuneJob whose runtime reported ``score`` (None: no evaluation), then succeeded."""
    cluster.apply(in_ns(make_finetunejob(name, output={"uri": "pvc://models/out/"}), namespace))
    wait_for(lambda: phase_of(cluster, FTJ, name, namespace), what=f"{name} status")
    if score is not None:
        patch_status(cluster, FTJ, name, namespace, {"evaluation": {"task": "mmlu_test", "score": score,
                                                                    "scores": {"mmlu_test": score}}})
    finish(cluster, name, namespace, "Succeeded")
    wait_for(lambda: phase_of(cluster, FTJ, name, namespace) == "Succeeded", what=f"{name} Succeeded")


def gated_export(cluster, namespace: str, name: str, source: str) -> None:
    cluster.apply(in_ns(make_modelexport(name, source={"fineTuneJobRef": {"name": source}, "minScore": 70},
                                         output={"uri": "pvc://models/exports/"}), namespace))


def test_a_score_above_the_minimum_exports(cluster, operator, namespace):
    trained(cluster, namespace, "good", 72.5)
    assert get_json(cluster, FTJ, "good", namespace)["status"]["evaluation"]["score"] == 72.5  # kept by the operator
    gated_export(cluster, namespace, "promoted", "good")
    wait_for(lambda: get_json(cluster, JOB, "promoted-export", namespace), what="export Job")
    assert condition(get_json(cluster, MEXP, "promoted", namespace), "SourceReady") == ("True", "Resolved")


def test_a_regressed_run_is_refused(cluster, operator, namespace):
    trained(cluster, namespace, "worse", 40)
    gated_export(cluster, namespace, "refused", "worse")
    wait_for(lambda: phase_of(cluster, MEXP, "refused", namespace) == "Failed", what="refused")
    mexp = get_json(cluster, MEXP, "refused", namespace)
    assert condition(mexp, "SourceReady") == ("False", "ScoreBelowMinimum")
    assert condition(mexp, "Failed") == ("True", "ScoreBelowMinimum")
    assert mexp["status"]["message"] == ("FineTuneJob 'worse' scored 40 on mmlu_test, below spec.source.minScore "
                                         "70: the run regressed and is not exported")
    assert get_json(cluster, JOB, "refused-export", namespace) is None


def test_an_unscored_run_waits(cluster, operator, namespace):
    trained(cluster, namespace, "unscored", None)
    gated_export(cluster, namespace, "pending", "unscored")
    wait_for(lambda: condition(get_json(cluster, MEXP, "pending", namespace), "SourceReady")
             == ("False", "WaitingForScore"), what="WaitingForScore")
    assert phase_of(cluster, MEXP, "pending", namespace) == "WaitingForSource"
    assert get_json(cluster, JOB, "pending-export", namespace) is None


def test_a_score_reported_after_success_unblocks_the_waiting_export(cluster, operator, namespace):
    trained(cluster, namespace, "late", None)
    gated_export(cluster, namespace, "waiting", "late")
    wait_for(lambda: condition(get_json(cluster, MEXP, "waiting", namespace), "SourceReady")
             == ("False", "WaitingForScore"), what="WaitingForScore")
    # The training pod's own reporting path: its rendered environment and the kubetune-runtime ServiceAccount.
    sink = from_env({**pod_env(cluster, namespace, "late"),
                     "KUBETUNE_KUBECONFIG": str(runtime_kubeconfig(cluster, namespace))})
    assert sink is not None
    sink.evaluation(evaluation_status({"mmlu_test": 72.5}, None))
    wait_for(lambda: get_json(cluster, JOB, "waiting-export", namespace), what="export Job after the late score")
    assert condition(get_json(cluster, MEXP, "waiting", namespace), "SourceReady") == ("True", "Resolved")


def test_min_score_needs_a_finetunejob_source(cluster, namespace):
    body = make_modelexport("uri-source", source={"model": {"uri": "pvc://models/m"}, "minScore": 70})
    body["spec"]["source"].pop("fineTuneJobRef")
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=body, check=False)
    assert result.returncode != 0 and "minScore gates a fineTuneJobRef source" in result.stderr
