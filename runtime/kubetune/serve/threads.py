"""Torch thread counts for the ``hf`` engine, chosen from the CPU budget before the model loads.

Why it matters: one engine thread runs a forward pass per decode step, and each matmul in it is a parallel region
whose threads all wait at a barrier for the slowest. With an intra-op pool sized to the node (or to more CPUs than
the cgroup quota pays for), or with cores shared with other work, one descheduled pool thread stalls the whole
step while the others spin; the event loop and the tokenizer thread then compete with spinning threads too. So:

- the intra-op pool gets the CPU budget (:mod:`kubetune.serve.cpus`), less one CPU for the HTTP side once there
  are enough CPUs to spare one, and a single thread for small models (hidden size below ``SMALL_HIDDEN``), whose
  decode steps are too small for a parallel region to pay for its barrier: measured on 2 shared cores, a model of
  hidden size 512 decodes faster on one thread than on two at concurrency 1 and 8;
- the inter-op pool gets one thread: the engine runs one forward pass at a time;
- OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning on CPUs other work needs; this
  is read when torch loads OpenMP, so :func:`thread_environment` is applied before torch is imported.

An explicit count (``threads`` in the serve config, ``spec.engine.threads`` on an InferenceService, or
``kubetune serve --threads``) replaces the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from kubetune.serve.cpus import CpuBudget

SMALL_HIDDEN = 1024  # below this hidden size one thread is fastest: a decode step's matmuls are too small to split
SPARE_FROM = 3  # from this many CPUs on, one is left to the event loop, tokenization and HTTP
# Set before torch loads, unless the environment already says otherwise.
THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True)
class ThreadPlan:
    """Threads of torch's intra-op and inter-op pools, and why (``reason``, for people)."""

    intra_op: int
    inter_op: int
    reason: str

    def describe(self) -> str:
        return f"torch threads: {self.intra_op} intra-op, {self.inter_op} inter-op ({self.reason})"


def plan_threads(budget: CpuBudget, hidden_size: int | None, requested: int | None = None) -> ThreadPlan:
    """The thread counts for a model of ``hidden_size`` (None: unknown) under ``budget``. Pure.

    ``requested`` (an explicit setting) wins; it may exceed the budget, which is then said in the reason.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be at least 1, got {requested}")
        note = f"; above the CPU budget of {budget.cpus}" if requested > budget.cpus else ""
        return ThreadPlan(requested, 1, f"set explicitly{note}")
    if hidden_size is not None and hidden_size < SMALL_HIDDEN:
        return ThreadPlan(1, 1, f"hidden size {hidden_size} < {SMALL_HIDDEN}: one thread beats a parallel region's "
                          f"barrier; CPU budget {budget.cpus} from {budget.reason}")
    if budget.cpus >= SPARE_FROM:
        return ThreadPlan(budget.cpus - 1, 1, f"CPU budget {budget.cpus} less one for the server, from "
                          f"{budget.reason}")
    return ThreadPlan(budget.cpus, 1, f"CPU budget {budget.cpus} from {budget.reason}")


def thread_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``env`` before torch loads: ``THREAD_ENV`` entries ``env`` does not set. Pure."""
    return {key: value for key, value in THREAD_ENV.items() if key not in env}


def prepare_environment(env: MutableMapping[str, str]) -> dict[str, str]:
    """Add :func:`thread_environment` to ``env`` (the process environment, before torch is imported)."""
    added = thread_environment(env)
    env.update(added)
    return added


def hidden_size(model_config: object) -> int | None:
    """The hidden size of a transformers config (or of its text model's config), None when it has none."""
    for config in (model_config, getattr(model_config, "text_config", None)):
        value = getattr(config, "hidden_size", None)
        if isinstance(value, int):
            return value
    return None


def apply_threads(plan: ThreadPlan) -> None:
    """Size torch's pools; call before the model loads (the inter-op pool is fixed once it has run work).

    Raises:
        RuntimeError: the inter-op pool already ran work with another size.
    """
    import torch

    torch.set_num_threads(plan.intra_op)
    if torch.get_num_interop_threads() != plan.inter_op:
        torch.set_num_interop_threads(plan.inter_op)
