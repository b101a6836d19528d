"""Reward functions of stage grpo, in TRL's reward signature: ``fn(prompts, completions, **columns) -> list``.

Every dataset column travels to the rewards as a keyword argument holding one value per completion; kubetune's
grpo rows carry ``answer`` (the reference answer: the dataset's response), ``messages`` (the conversation before
the answer, as JSON) and ``system``. See :mod:`kubetune.config.grpo_args` for what ``reward_funcs`` may name.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from kubetune.config.grpo_args import GrpoConfig, reward_kind
from kubetune.train.reward import HttpScorer
from kubetune.train.stages import StageConfigError

RewardFunc = Callable[..., list[float | None]]
_THOUGHT = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def final_answer(completion: str) -> str:
    """The answer part of a completion: after any leading ``<think>`` block, inside ``<answer>`` tags when present,
    whitespace trimmed."""
    text = _THOUGHT.sub("", completion, count=1)
    tagged = _ANSWER.search(text)
    return (tagged.group(1) if tagged else text).strip()


def exact_match(prompts: Sequence[str], completions: Sequence[str], answer: Sequence[str | None],
                **_: Any) -> list[float | None]:
    """1.0 when a completion's final answer equals the reference answer (both trimmed), else 0.0."""
    return [None if ref is None else float(final_answer(c) == ref.strip())
            for c, ref in zip(completions, answer, strict=True)]


def format_reward(pattern: str) -> RewardFunc:
    """A reward that is 1.0 when the whole (trimmed) completion matches ``pattern``, else 0.0."""
    compiled = re.compile(pattern, re.DOTALL)

    def format(prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float | None]:
        return [float(compiled.fullmatch(c.strip()) is not None) for c in completions]

    return format


def http_reward(url: str, timeout_s: float) -> RewardFunc:
    """A reward asking an HTTP scorer about each conversation (its messages plus the completion as the answer)."""
    scorer = HttpScorer(url, timeout_s)

    def http(prompts: Sequence[str], completions: Sequence[str], messages: Sequence[str],
             system: Sequence[str | None], **_: Any) -> list[float | None]:
        conversations = [{"messages": [*json.loads(m), {"role": "assistant", "content": c}], "system": s}
                         for c, m, s in zip(completions, messages, system, strict=True)]
        return list(scorer.score(conversations))

    http.__name__ = f"http:{url}"
    return http


def import_reward(path: str, where: str) -> RewardFunc:
    """The function at ``package.module:function`` (or ``package.module.function``)."""
    module_name, _, attr = path.rpartition(":") if ":" in path else path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StageConfigError(f"{where}: cannot import module {module_name!r} ({exc}); install it in the image "
                               "or put it on PYTHONPATH") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise StageConfigError(f"{where}: module {module_name!r} has no function {attr!r}")
    return func


def build_rewards(cfg: GrpoConfig) -> list[RewardFunc]:
    """The reward functions named by ``cfg.reward_funcs``, in order. Raises StageConfigError naming the entry."""
    funcs: list[RewardFunc] = []
    for i, entry in enumerate(cfg.reward_funcs):
        kind = reward_kind(entry)
        if kind == "http":
            funcs.append(http_reward(entry, cfg.reward_timeout))
        elif kind == "import":
            funcs.append(import_reward(entry, f"reward_funcs[{i}]"))
        elif entry == "exact_match":
            funcs.append(exact_match)
        else:
            funcs.append(format_reward(cfg.reward_format_pattern))
    return funcs
