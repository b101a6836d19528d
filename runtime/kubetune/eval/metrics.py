"""BLEU-4 and ROUGE-1/2/L of generated text against references, exactly as LLaMA-Factory computes them.

Per sample (its ``ComputeSimilarity``): ROUGE F1 from ``rouge_chinese`` on jieba-segmented words (jieba keeps
English words whole, so English is scored per word too); BLEU-4 from NLTK's ``sentence_bleu`` on characters with
smoothing method 3. Each score x100, then averaged over the samples. A sample whose prediction or reference has
no word scores 0 on every ROUGE. Needs the metric libraries of the ``train`` extra (nltk, jieba, rouge-chinese).
"""

from __future__ import annotations

from collections.abc import Sequence

METRICS = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")


def sample_scores(prediction: str, reference: str) -> dict[str, float]:
    """The four scores (0-100, rounded to 4 decimals as LLaMA-Factory does) of one prediction."""
    import jieba
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    hypothesis, words = list(jieba.cut(prediction)), list(jieba.cut(reference))
    if not " ".join(hypothesis).split() or not " ".join(words).split():
        rouge = {key: 0.0 for key in ("rouge-1", "rouge-2", "rouge-l")}
    else:
        scores = Rouge().get_scores(" ".join(hypothesis), " ".join(words))[0]
        rouge = {key: round(value["f"] * 100, 4) for key, value in scores.items()}
    bleu = sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3)
    return {"bleu-4": round(float(bleu) * 100, 4), **rouge}


def similarity(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean of each score over the samples (an empty list gives zeros)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    rows = [sample_scores(p, r) for p, r in zip(predictions, references, strict=True)]
    return {key: sum(r[key] for r in rows) / len(rows) if rows else 0.0 for key in METRICS}
