"""Preference rows -> token ids with kubetune's chat templates. Pure functions of (row, template, tokenizer).

The rm, dpo, kto and ppo stages get conversational rows from ``build_datasets`` (see
``kubetune.data.tokenize.preference_row``) and encode them here, so the prompt is formatted exactly as in sft,
export and serving, whatever the trainer underneath. Shapes:

- pairs (rm, dpo): ``{"prompt_ids", "chosen_ids", "rejected_ids"}``; the answers end with the template's end of
  turn (and EOS for templates with ``efficient_eos``);
- unpaired (kto): ``{"prompt_ids", "completion_ids", "label"}``;
- prompts (ppo): ``{"prompt_ids"}``, the generation prompt, plus ``messages``/``system`` for the reward model;
- prompts with a reference answer (grpo): as ppo, plus ``prompt`` (the prompt's text) and ``answer``.

Truncation follows the sft rule (:func:`kubetune.data.tokenize.split_budget`): a long prompt is cut from its end
side first, answers are cut to what is left of ``cutoff_len``.
"""

from __future__ import annotations

import json
from typing import Any

from kubetune.data.tokenize import IGNORE_INDEX, split_budget


def _tools(row: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = row.get("tools")
    return json.loads(tools) if isinstance(tools, str) and tools else None


def encode_turns(row: dict[str, Any], answer: dict[str, Any], template: Any, tokenizer: Any,
                 efficient_eos: bool) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of ``row["prompt"]`` followed by ``answer``: every earlier turn is prompt."""
    pairs = template.encode_multiturn(tokenizer, [*row["prompt"], answer], row.get("system"), _tools(row))
    prompt = [t for p, a in pairs[:-1] for t in (*p, *a)] + list(pairs[-1][0])
    completion = list(pairs[-1][1])
    if efficient_eos and tokenizer.eos_token_id is not None:
        completion.append(tokenizer.eos_token_id)
    return prompt, completion


def truncate(prompt: list[int], answers: list[list[int]], cutoff_len: int) -> tuple[list[int], list[list[int]]]:
    """Fit the prompt and the longest answer into ``cutoff_len`` tokens (each answer cut to the same budget)."""
    source, target = split_budget(len(prompt), max(len(a) for a in answers), cutoff_len)
    return prompt[:source], [a[:target] for a in answers]


def encode_pair(row: dict[str, Any], template: Any, tokenizer: Any, cutoff_len: int,
                efficient_eos: bool = False) -> dict[str, list[int]]:
    """A ``{"prompt", "chosen", "rejected"}`` row as prompt/chosen/rejected ids."""
    prompt, chosen = encode_turns(row, row["chosen"][0], template, tokenizer, efficient_eos)
    _, rejected = encode_turns(row, row["rejected"][0], template, tokenizer, efficient_eos)
    prompt, (chosen, rejected) = truncate(prompt, [chosen, rejected], cutoff_len)
    return {"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected}


def encode_unpaired(row: dict[str, Any], template: Any, tokenizer: Any, cutoff_len: int,
                    efficient_eos: bool = False) -> dict[str, Any]:
    """A ``{"prompt", "completion", "label"}`` row (kto) as prompt/completion ids and the label."""
    prompt, completion = encode_turns(row, row["completion"][0], template, tokenizer, efficient_eos)
    prompt, (completion,) = truncate(prompt, [completion], cutoff_len)
    return {"prompt_ids": prompt, "completion_ids": completion, "label": bool(row["label"])}


def encode_prompt(row: dict[str, Any], template: Any, tokenizer: Any, max_prompt_len: int) -> dict[str, Any]:
    """A prompt row (ppo) as its generation prompt, keeping the last ``max_prompt_len`` tokens."""
    ids = template.encode_prompt(tokenizer, list(row["prompt"]), row.get("system"), _tools(row))
    return {"prompt_ids": ids[-max_prompt_len:], "messages": json.dumps(row["prompt"]), "system": row.get("system")}


def encode_grpo_prompt(row: dict[str, Any], template: Any, tokenizer: Any, max_prompt_len: int) -> dict[str, Any]:
    """A prompt row (grpo) as its generation prompt (ids and text) and the reference answer its rewards see."""
    out = encode_prompt(row, template, tokenizer, max_prompt_len)
    answer = row.get("completion") or [{}]
    return {**out, "prompt": tokenizer.decode(out["prompt_ids"]), "answer": answer[0].get("content")}


def with_kl_completions(rows: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """One batch of kto rows plus ``KL_completion_ids``: each prompt paired with the previous row's answer
    (the mismatched pairs KTO estimates its KL term from)."""
    answers = rows["completion_ids"]
    return {**rows, "KL_completion_ids": answers[-1:] + answers[:-1]}


def pair_columns(row: dict[str, Any]) -> dict[str, list[int]]:
    """prompt/chosen/rejected ids as the CPO/ORPO trainers' row: full sequences, masks, labels -100 on the prompt."""
    prompt = list(row["prompt_ids"])
    out = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        answer = list(row[f"{side}_ids"])
        out[f"{side}_input_ids"] = prompt + answer
        out[f"{side}_attention_mask"] = [1] * (len(prompt) + len(answer))
        out[f"{side}_labels"] = [IGNORE_INDEX] * len(prompt) + answer
    return out


def reward_pair(row: dict[str, Any], **kwargs: Any) -> dict[str, list[int]]:
    """A preference row as the two full sequences a reward model scores (``chosen_ids``, ``rejected_ids``)."""
    ids = encode_pair(row, **kwargs)
    prompt = ids["prompt_ids"]
    return {"chosen_ids": prompt + ids["chosen_ids"], "rejected_ids": prompt + ids["rejected_ids"]}
