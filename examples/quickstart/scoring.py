"""Score a model directory on the held-out questions with `kubetune eval` (task_type generation).

The greedy answers and their exact-match score come from kubetune's evaluation: the demo reads them back from
``results.json`` to print the accuracy, the per-operation split and sample answers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from endpoint import Answer


def score(model_dir: Path, dataset: Path, save_dir: Path, max_new_tokens: int = 16) -> tuple[float, list[Answer]]:
    """(exact-match accuracy in [0, 1], every answer) of ``model_dir`` on ``dataset``; results in ``save_dir``."""
    shutil.rmtree(save_dir, ignore_errors=True)  # results are never overwritten: this run's folder starts empty
    save_dir.parent.mkdir(parents=True, exist_ok=True)
    config = save_dir.parent / f"{save_dir.name}.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(model_dir), "task_type": "generation",
                                      "dataset": str(dataset), "max_new_tokens": max_new_tokens, "batch_size": 8,
                                      "save_dir": str(save_dir)}))
    subprocess.run([sys.executable, "-m", "kubetune.cli.main", "eval", str(config)], check=True,
                   stdout=subprocess.DEVNULL)
    results = json.loads((save_dir / "results.json").read_text())
    answers = [Answer(p["prompt"], p["label"], p["predict"]) for p in results["predictions"]]
    return results["exact_match"] / 100, answers
