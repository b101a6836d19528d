"""Torch thread counts for the hf engine: the rule, the override, the environment, and applying them."""

from __future__ import annotations

import threading

import pytest

from kubetune.serve.cpus import CpuBudget
from kubetune.serve.threads import THREAD_ENV, ThreadPlan, hidden_size, plan_threads, prepare_environment

QUIET = CpuBudget(2, "cpuset of 2 CPUs, no CPU quota", None, 2)


@pytest.mark.parametrize(("cpus", "hidden", "requested", "intra"), [
    (2, 1024, None, 2),  # small budget: all of it
    (1, 4096, None, 1),
    (3, 1024, None, 2),  # one CPU left to the server from 3 on
    (16, 512, None, 1),  # small model: one thread
    (16, 2048, None, 15),
    (16, 1023, None, 1),
    (8, None, None, 7),  # unknown hidden size: the budget rule
    (2, 128, 4, 4),  # an explicit count wins, even above the budget
    (16, 2048, 1, 1),
], ids=["two", "one", "three-spare-one", "small", "sixteen", "just-small", "unknown-hidden", "explicit-above",
        "explicit-one"])
def test_plan(cpus, hidden, requested, intra):
    plan = plan_threads(CpuBudget(cpus, f"{cpus} cpus"), hidden, requested)
    assert (plan.intra_op, plan.inter_op) == (intra, 1)


def test_reason_says_why():
    assert "hidden size 128 < 1024" in plan_threads(QUIET, 128).reason
    assert plan_threads(QUIET, 1024).reason == "CPU budget 2 from cpuset of 2 CPUs, no CPU quota"
    assert plan_threads(QUIET, 1024, 8).reason == "set explicitly; above the CPU budget of 2"
    assert plan_threads(QUIET, 1024, 2).describe() == "torch threads: 2 intra-op, 1 inter-op (set explicitly)"


def test_explicit_zero_is_an_error():
    with pytest.raises(ValueError, match="threads must be at least 1"):
        plan_threads(QUIET, 1024, 0)


def test_environment_keeps_what_the_user_set():
    env = {"OMP_WAIT_POLICY": "ACTIVE", "PATH": "/bin"}
    added = prepare_environment(env)
    assert added == {k: v for k, v in THREAD_ENV.items() if k != "OMP_WAIT_POLICY"}
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and env["TOKENIZERS_PARALLELISM"] == "false"


def test_hidden_size_of_text_and_multimodal_configs():
    from transformers import LlamaConfig

    class Wrapped:
        text_config = LlamaConfig(hidden_size=256)

    assert hidden_size(LlamaConfig(hidden_size=384)) == 384
    assert hidden_size(Wrapped()) == 256
    assert hidden_size(object()) is None


def test_applied_plan_reaches_threads_started_later():
    """The engine's generation thread starts after the plan is applied and runs with its intra-op count."""
    import torch

    from kubetune.serve.threads import apply_threads

    before = torch.get_num_threads()
    try:
        apply_threads(ThreadPlan(1, torch.get_num_interop_threads(), "test"))
        seen: list[int] = []
        worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        worker.start()
        worker.join()
        assert seen == [1]
    finally:
        torch.set_num_threads(before)
