"""The loss curve as a PNG, drawn from trainer_log.jsonl (matplotlib with the Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

LOSS_PNG = "training_loss.png"


def smooth(values: Sequence[float], weight: float = 0.6) -> list[float]:
    """Exponential moving average (TensorBoard-style), bias-corrected so the first points are not pulled to 0."""
    out: list[float] = []
    last = 0.0
    for i, value in enumerate(values, start=1):
        last = weight * last + (1 - weight) * value
        out.append(last / (1 - weight**i))
    return out


def plot_loss(records: Sequence[dict[str, Any]], out_path: str | Path, title: str = "training loss") -> Path | None:
    """Write the training (and, when logged, eval) loss over steps to ``out_path``; None when nothing was logged."""
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    evals = [(r["step"], r["eval_loss"]) for r in records if r.get("eval_loss") is not None]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        steps, losses = zip(*train, strict=True)
        ax.plot(steps, losses, color="#9ab", alpha=0.6, label="loss")
        ax.plot(steps, smooth(losses), color="#1f5fa8", label="loss (smoothed)")
    if evals:
        steps, losses = zip(*evals, strict=True)
        ax.plot(steps, losses, "o-", color="#c4452c", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out_path)
    fig.savefig(out)
    plt.close(fig)
    return out
