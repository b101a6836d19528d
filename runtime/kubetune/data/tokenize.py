"""Examples -> token ids and labels. Pure functions of (ids, settings); the template does the chat formatting.

Labels are ``IGNORE_INDEX`` (-100) where no loss is computed: prompts (unless ``train_on_prompt``), earlier
answers under ``mask_history``, and padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.data.formats import Example

IGNORE_INDEX = -100


@dataclass(frozen=True)
class SftSettings:
    cutoff_len: int
    train_on_prompt: bool = False
    mask_history: bool = False
    efficient_eos: bool = False
    eos_token_id: int | None = None


def split_budget(source_len: int, target_len: int, budget: int) -> tuple[int, int]:
    """How many prompt and answer tokens of one turn fit into ``budget``.

    A short answer (under half the budget) is kept whole and the prompt is cut; a short prompt is kept whole and
    the answer is cut; otherwise both are cut in proportion to their lengths.
    """
    if target_len * 2 < budget:
        max_target = budget
    elif source_len * 2 < budget:
        max_target = budget - source_len
    else:
        max_target = int(budget * target_len / (source_len + target_len))
    target = min(max_target, target_len)
    source = min(max(budget - target, 0), source_len)
    return source, target


def encode_sft(pairs: list[tuple[list[int], list[int]]], s: SftSettings) -> dict[str, list[int]]:
    """Concatenate (prompt, answer) turns into input_ids/labels, truncated to ``cutoff_len``.

    Under ``mask_history`` the turns are taken last-first so truncation drops the oldest turns.
    With ``efficient_eos`` the answers carry no end token: the first token of the next prompt (the family's
    turn marker, also a stop word) is trained instead, and one EOS closes the conversation.
    """
    budget = s.cutoff_len - (1 if s.efficient_eos else 0)
    order = list(range(len(pairs)))[::-1] if s.mask_history else list(range(len(pairs)))
    pieces: dict[int, tuple[list[int], list[int]]] = {}
    used = 0
    for k in order:
        if used >= budget:
            break
        prompt, answer = pairs[k]
        n_src, n_tgt = split_budget(len(prompt), len(answer), budget - used)
        prompt, answer = prompt[:n_src], answer[:n_tgt]
        used += len(prompt) + len(answer)
        train_answer = not s.mask_history or k == len(pairs) - 1
        prompt_labels = list(prompt) if s.train_on_prompt else [IGNORE_INDEX] * len(prompt)
        if s.efficient_eos and k > 0 and prompt and not s.train_on_prompt:
            prompt_labels[0] = prompt[0]
        answer_labels = list(answer) if train_answer else [IGNORE_INDEX] * len(answer)
        pieces[k] = (list(prompt) + list(answer), prompt_labels + answer_labels)
    input_ids = [t for k in sorted(pieces) for t in pieces[k][0]]
    labels = [t for k in sorted(pieces) for t in pieces[k][1]]
    if s.efficient_eos and s.eos_token_id is not None:
        input_ids.append(s.eos_token_id)
        labels.append(s.eos_token_id)
    return {"input_ids": input_ids, "labels": labels}


def encode_example(example: Example, template: Any, tokenizer: Any, s: SftSettings,
                   enable_thinking: bool = True) -> dict[str, list[int]]:
    """One sft Example through the template into input_ids/labels."""
    pairs = template.encode_multiturn(tokenizer, example.messages, example.system, example.tools,
                                      enable_thinking=enable_thinking)
    return encode_sft(pairs, s)


def encode_text(text: str, tokenizer: Any, cutoff_len: int | None) -> dict[str, list[int]]:
    """Pre-training text + EOS; truncated to ``cutoff_len`` when given (packing chunks instead)."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    if cutoff_len is not None:
        ids = ids[:cutoff_len]
    return {"input_ids": ids, "labels": list(ids)}


def preference_row(example: Example) -> dict[str, Any]:
    """An rm/dpo/kto Example as a row in TRL's conversational format.

    rm/dpo: {"prompt": messages, "chosen": [assistant msg], "rejected": [assistant msg], "system", "tools"};
    kto: {"prompt": messages without the completion, "completion": [assistant msg], "label": bool, ...}.
    ``system`` (str or None) and ``tools`` (JSON string or None) travel alongside for template-aware encoding.
    """
    import json

    head = {"system": example.system, "tools": json.dumps(example.tools) if example.tools else None}
    if example.chosen is not None:
        return {"prompt": example.messages, "chosen": [example.chosen], "rejected": [example.rejected], **head}
    return {"prompt": example.messages[:-1], "completion": example.messages[-1:], "label": example.label, **head}
