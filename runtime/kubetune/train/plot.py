"""The loss curve as a PNG, drawn from trainer_log.jsonl (matplotlib with the Agg backend: no display needed).

Preference stages get a second panel with the metrics that show whether preferences are learned: the implicit
rewards of dpo/kto (rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies), the reward model's
accuracy and margin (rm), and mean reward and KL of ppo.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

LOSS_PNG = "training_loss.png"
# trainer_log keys drawn in the metrics panel, in legend order.
METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "accuracy", "margin",
           "reward", "kl")


def smooth(values: Sequence[float], weight: float = 0.6) -> list[float]:
    """Exponential moving average (TensorBoard-style), bias-corrected so the first points are not pulled to 0."""
    out: list[float] = []
    last = 0.0
    for i, value in enumerate(values, start=1):
        last = weight * last + (1 - weight) * value
        out.append(last / (1 - weight**i))
    return out


def metric_series(records: Sequence[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """(steps, values) of each :data:`METRICS` key that was logged during training (eval records left out)."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for key in METRICS:
        points = [(r["step"], float(r[key])) for r in records if isinstance(r.get(key), int | float)]
        if points:
            series[key] = ([p[0] for p in points], [p[1] for p in points])
    return series


def plot_loss(records: Sequence[dict[str, Any]], out_path: str | Path, title: str = "training loss") -> Path | None:
    """Write the training (and, when logged, eval) loss over steps to ``out_path``, with a metrics panel when
    preference metrics were logged; None when nothing was logged."""
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    evals = [(r["step"], r["eval_loss"]) for r in records if r.get("eval_loss") is not None]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = metric_series(records)
    fig, axes = plt.subplots(1, 2 if series else 1, figsize=(12 if series else 7, 4), dpi=100, squeeze=False)
    ax = axes[0][0]
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
    if series:
        panel = axes[0][1]
        for key, (xs, values) in series.items():
            panel.plot(xs, values, label=key)
        panel.set_xlabel("step")
        panel.set_title("preference metrics")
        panel.grid(alpha=0.3)
        panel.legend(fontsize="small")
    fig.tight_layout()
    out = Path(out_path)
    fig.savefig(out)
    plt.close(fig)
    return out
