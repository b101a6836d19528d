"""The key lists of docs/llamafactory.md, generated from the key tables (a test compares them with the file).

Three lists: keys kubetune honours (each changes what a run does; tests/unit/test_key_effects.py shows how), keys
it accepts at one value only (LLaMA-Factory configs set them; another value is refused), and LLaMA-Factory keys
it refuses with the feature they belong to.
"""

from __future__ import annotations

from kubetune.config.hf_keys import HF_TRAINING_KEYS
from kubetune.config.keys import (
    DEFAULT_ONLY,
    GROUPS,
    KEY_GROUP,
    RENAMED,
    TOP_LEVEL_KEYS,
    UNSUPPORTED,
    UNSUPPORTED_PREFIXES,
)


def _codes(keys: list[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


def passthrough_keys() -> list[str]:
    """transformers.TrainingArguments keys without a typed field, passed to TrainingArguments unchanged."""
    return sorted(HF_TRAINING_KEYS - set(KEY_GROUP) - set(DEFAULT_ONLY))


def key_lists_markdown() -> str:
    """The honoured, one-value and refused key lists as Markdown."""
    lines = ["### Honoured", ""]
    lines.append(f"- **top level**: {_codes(sorted(TOP_LEVEL_KEYS))}")
    for group, cls in GROUPS.items():
        lines.append(f"- **{group}**: {_codes([k for k in cls.model_fields if k not in DEFAULT_ONLY])}")
    renamed = [f"`{key}` (`{new}`" + (", inverted)" if invert else ")") for key, (new, invert) in RENAMED.items()]
    lines.append(f"- **renamed**: {', '.join(renamed)}")
    passthrough = passthrough_keys()
    lines.append(f"- **transformers TrainingArguments, passed through** ({len(passthrough)}): {_codes(passthrough)}")
    lines += ["", "### Accepted at one value only", "", "| key | accepted | why |", "|---|---|---|"]
    lines += [f"| `{key}` | `{value!r}` | {why} |" for key, (value, why) in DEFAULT_ONLY.items()]
    lines += ["", "### Refused", ""]
    by_reason: dict[str, list[str]] = {}
    for key, why in UNSUPPORTED.items():
        by_reason.setdefault(why, []).append(key)
    lines += [f"- {_codes(keys)}: {why}" for why, keys in by_reason.items()]
    lines.append(f"- keys starting with {', '.join(f'`{p}`: {why}' for p, why in UNSUPPORTED_PREFIXES.items())}")
    return "\n".join(lines) + "\n"
