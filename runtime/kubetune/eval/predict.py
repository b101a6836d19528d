"""`do_predict` with `predict_with_generate`: generate an answer for every evaluation example and score it.

Writes LLaMA-Factory's files into the output directory: ``generated_predictions.jsonl`` (one ``{"prompt",
"predict", "label"}`` per example, in dataset order) and ``predict_results.json`` (``predict_bleu-4``,
``predict_rouge-1``, ``predict_rouge-2``, ``predict_rouge-l``, ``predict_samples``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kubetune.config.model_args import GenerationConfig
from kubetune.eval.metrics import similarity

PREDICTIONS_FILE = "generated_predictions.jsonl"
RESULTS_FILE = "predict_results.json"


def split_prompt(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """(the conversation up to the last answer, that answer): the prompt to generate from and its label."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("an example to predict must end with an assistant answer (its label)")
    return messages[:-1], str(messages[-1].get("content") or "")


def generation_kwargs(gen: GenerationConfig, pad_id: int, stop_ids: Sequence[int]) -> dict[str, Any]:
    """transformers ``generate`` arguments for the configured sampling settings."""
    kwargs: dict[str, Any] = {"do_sample": gen.do_sample, "num_beams": gen.num_beams,
                              "repetition_penalty": gen.repetition_penalty, "length_penalty": gen.length_penalty,
                              "pad_token_id": pad_id, "eos_token_id": list(stop_ids)}
    if gen.do_sample:
        kwargs |= {"temperature": gen.temperature, "top_p": gen.top_p, "top_k": gen.top_k}
    if gen.max_new_tokens > 0:
        kwargs["max_new_tokens"] = gen.max_new_tokens
    else:
        kwargs["max_length"] = gen.max_length
    return kwargs


def until_stop(ids: list[int], stops: Sequence[int]) -> list[int]:
    """``ids`` up to (not including) the first stop token; what follows it in a batch is padding."""
    cut = next((i for i, token in enumerate(ids) if token in stops), len(ids))
    return ids[:cut]


def decode_prediction(tokenizer: Any, ids: list[int], stops: Sequence[int], skip_special_tokens: bool) -> str:
    """The text of one generated answer: up to its stop token, special tokens dropped when asked."""
    return str(tokenizer.decode(until_stop(ids, stops), skip_special_tokens=skip_special_tokens)).strip()


@torch.inference_mode()
def generate(model: Any, prompts: Sequence[list[int]], kwargs: dict[str, Any], batch_size: int) -> list[list[int]]:
    """New token ids for each prompt (left-padded batches, the prompt cut off)."""
    device = next(model.parameters()).device
    pad_id = kwargs["pad_token_id"]
    out: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        generated = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        out.extend(row[width:].tolist() for row in generated)
    return out


def predict_and_score(model: Any, tokenizer: Any, examples: Sequence[Any], *, template: str | None,
                      gen: GenerationConfig, out_dir: str | Path, batch_size: int = 8) -> dict[str, float]:
    """Generate for ``examples`` (kubetune.data Examples ending with the reference answer), write both files
    into ``out_dir`` and return the metrics (``predict_`` keys)."""
    from kubetune.model.chatformat import render_prompt, stop_token_ids

    prompts, labels = [], []
    for example in examples:
        history, label = split_prompt(example.messages)
        prompts.append(render_prompt(tokenizer, history, tools=example.tools, template=template,
                                     system=example.system))
        labels.append(label)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_token_ids(tokenizer, template, model.generation_config.eos_token_id)
    new_ids = generate(model, prompts, generation_kwargs(gen, pad_id, stops), batch_size)
    predictions = [decode_prediction(tokenizer, ids, stops, gen.skip_special_tokens) for ids in new_ids]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / PREDICTIONS_FILE).open("w", encoding="utf-8") as f:
        for ids, predict, label in zip(prompts, predictions, labels, strict=True):
            prompt = tokenizer.decode(ids, skip_special_tokens=False)
            f.write(json.dumps({"prompt": prompt, "predict": predict, "label": label}, ensure_ascii=False) + "\n")
    metrics: dict[str, float] = {f"predict_{k}": v for k, v in similarity(predictions, labels).items()}
    metrics["predict_samples"] = len(predictions)
    (out / RESULTS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics
