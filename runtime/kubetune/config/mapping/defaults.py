"""Where a FineTuneJob's defaults differ from LLaMA-Factory's, as data: the docs and `kubetune convert` render it.

A flat runtime config (`kubetune train FILE.yaml`) keeps LLaMA-Factory's defaults, so an LLaMA-Factory YAML trains
the same. A FineTuneJob picks its own where LLaMA-Factory's suit one workstation run poorly. The values are read
from the types (``TrainingSpec`` field defaults, runtime config field defaults), so they cannot drift; the table
holds which fields differ and why, and a test fails when a difference appears that it does not explain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from kubetune.api.finetunejob import (
    FreezeSpec,
    GrpoSpec,
    KtoSpec,
    LoraSpec,
    PpoSpec,
    PreferenceSpec,
    QuantizationSpec,
    TrainingSpec,
)
from kubetune.config.grpo_args import DEFAULT_FORMAT
from kubetune.config.keys import GROUPS
from kubetune.config.mapping.train import (
    FREEZE_KEYS,
    GRPO_KEYS,
    KTO_KEYS,
    LORA_KEYS,
    PPO_KEYS,
    PREFERENCE_KEYS,
    QUANT_KEYS,
    TRAINING_KEYS,
)

# The spec blocks whose fields map one to one onto runtime keys: (spec field, model, attribute -> runtime key).
BLOCKS: tuple[tuple[str, type[BaseModel], dict[str, str]], ...] = (
    ("training", TrainingSpec, TRAINING_KEYS), ("lora", LoraSpec, LORA_KEYS), ("freeze", FreezeSpec, FREEZE_KEYS),
    ("quantization", QuantizationSpec, QUANT_KEYS), ("preference", PreferenceSpec, PREFERENCE_KEYS),
    ("kto", KtoSpec, KTO_KEYS), ("ppo", PpoSpec, PPO_KEYS), ("grpo", GrpoSpec, GRPO_KEYS),
)

# "block.attribute" -> why the FineTuneJob default differs from LLaMA-Factory's.
WHY: dict[str, str] = {
    "training.lr_scheduler": "cosine decays to zero, as LLaMA-Factory's own example configs set it",
    "training.per_device_batch_size": "one sequence per device fits long contexts on any GPU",
    "training.gradient_accumulation_steps": "with batch size 1, 8 micro-steps keep a batch of 8 per device",
    "training.logging_steps": "status.progress and the Loss column move every 10 steps, not every 500",
    "training.save_total_limit": "checkpoints do not fill the claim; the newest 3 are kept for resume",
    "training.optimizer": "runs on every device; the fused kernel needs a GPU that has it",
    "training.precision": "bf16 on GPUs that have it, else fp32 (LLaMA-Factory: fp32 unless bf16/fp16 is set)",
    "quantization.bits": "method qlora is quantized by definition: 4-bit unless set",
    "ppo.max_new_tokens": "each PPO step generates a rollout; short answers keep a step seconds, not minutes",
    "grpo.max_new_tokens": "every step samples a group of completions per prompt; 256 tokens keep a step short",
    "grpo.temperature": "GRPO learns from the spread within a group: sample from the model's distribution as is",
    "grpo.top_p": "GRPO learns from the spread within a group: sample from the model's distribution as is",
}
# Defaults written differently that mean the same: (block.attribute) -> (FineTuneJob value, runtime value).
SAME_MEANING: dict[str, tuple[Any, Any]] = {
    "training.max_steps": (None, -1),  # both: train for the epochs
    "grpo.format_pattern": (None, DEFAULT_FORMAT),  # unset: the default pattern
}
# How LLaMA-Factory spells a runtime key that it does not have under that name.
LF_SPELLING: dict[str, tuple[str, str]] = {"precision": ("bf16 / fp16", "false (fp32)")}


@dataclass(frozen=True)
class DefaultDifference:
    """One field whose FineTuneJob default is not LLaMA-Factory's."""

    field: str  # the FineTuneJob path, camelCase: spec.training.lrScheduler
    key: str  # the LLaMA-Factory key: lr_scheduler_type
    finetunejob: Any
    llamafactory: Any
    why: str


def _runtime_default(key: str) -> Any:
    for group in GROUPS.values():
        if key in group.model_fields:
            return group.model_fields[key].get_default(call_default_factory=True)
    raise KeyError(key)


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)  # enums as their YAML value


def default_differences() -> list[DefaultDifference]:
    """Every spec field whose default differs from the runtime (LLaMA-Factory) default, in spec order.

    Raises KeyError when a difference is not explained in :data:`WHY` (a new field, or a changed default).
    """
    out = []
    for block, model, keys in BLOCKS:
        for attr, key in keys.items():
            info = model.model_fields[attr]
            ours, theirs = _plain(info.get_default(call_default_factory=True)), _plain(_runtime_default(key))
            where = f"{block}.{attr}"
            if ours == theirs or SAME_MEANING.get(where) == (ours, theirs):
                continue
            key, theirs = LF_SPELLING.get(key, (key, theirs))
            camel = info.alias or attr
            out.append(DefaultDifference(f"spec.{block}.{camel}", key, ours, theirs, WHY[where]))
    return out


def _shown(value: Any) -> str:
    return "unset" if value is None else str(value)


def differences_comment() -> str:
    """The differences as YAML comment lines, for the top of `kubetune convert` output."""
    lines = ["# Defaults where a FineTuneJob differs from LLaMA-Factory (a field set below keeps your value):"]
    for d in default_differences():
        lines.append(f"#   {d.field}: {_shown(d.finetunejob)} (LLaMA-Factory {d.key}: {_shown(d.llamafactory)})")
    return "\n".join(lines)


def differences_markdown() -> str:
    """The differences as a Markdown table (docs/llamafactory.md holds this text; a test compares them)."""
    rows = ["| FineTuneJob field | FineTuneJob default | LLaMA-Factory key | LLaMA-Factory default | why |",
            "|---|---|---|---|---|"]
    for d in default_differences():
        rows.append(f"| `{d.field}` | {_shown(d.finetunejob)} | `{d.key}` | {_shown(d.llamafactory)} | {d.why} |")
    return "\n".join(rows)
