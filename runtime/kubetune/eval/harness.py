"""`task_type: harness`: lm-evaluation-harness tasks from local task YAML files, on a model directory (lm-eval's
``hf`` model) or on an OpenAI-compatible endpoint (``local-completions``, e.g. `kubetune serve` or an
InferenceService). Needs the ``eval`` extra (``pip install kubetune[eval]``).

Nothing is downloaded: the datasets are offline (``HF_DATASETS_OFFLINE``/``HF_HUB_OFFLINE``), only the tasks of
``include_path`` are indexed (not lm-eval's built-in ones), and the run happens inside ``include_path`` so a task's
``data_files`` are relative to its YAML folder. Endpoints score ``generate_until`` tasks everywhere; loglikelihood
and multiple-choice tasks need prompt logprobs (``echo`` + ``logprobs`` on /v1/completions), which vLLM returns and
kubetune's ``hf`` engine does not (it echoes the prompt text only).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from kubetune.eval.config import EvalConfig

OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def model_spec(config: EvalConfig) -> tuple[str, dict[str, Any]]:
    """lm-eval's model name and model_args for ``config`` (paths absolute: the run changes directory)."""
    path = str(Path(config.model_name_or_path).resolve())
    if config.base_url:
        return "local-completions", {"base_url": config.base_url, "model": config.served_model_name,
                                     "tokenizer": path, "tokenizer_backend": "huggingface",
                                     "tokenized_requests": False, "num_concurrent": 1, "max_retries": 1}
    args: dict[str, Any] = {"pretrained": path, "dtype": config.infer_dtype,
                            "trust_remote_code": config.trust_remote_code}
    if config.adapter_name_or_path:
        if len(config.adapter_name_or_path) > 1:
            raise ValueError("harness: one adapter at most (lm-eval's peft argument); merge the others first")
        args["peft"] = str(Path(config.adapter_name_or_path[0]).resolve())
    return "hf", args


def summary(results: dict[str, Any], tasks: list[str]) -> dict[str, Any]:
    """results.json: each task's metrics as lm-eval reports them (fractions) and the main score in percent
    (the first task's first metric), the scale of the other task types."""
    scores = {t: {k: v for k, v in results["results"][t].items() if k != "alias"} for t in tasks}
    # metric keys are "<metric>,<filter>"; others (sample counts, names) and the standard errors are not scores
    first = next((v for k, v in scores[tasks[0]].items() if "," in k and "_stderr" not in k
                  and isinstance(v, int | float)), 0.0)
    return {"tasks": tasks, "score": round(100.0 * float(first), 2), "results": scores,
            "n-samples": results.get("n-samples", {}), "configs": list(results.get("configs", {}))}


def evaluate(config: EvalConfig, samples: bool = False) -> dict[str, Any]:
    """Run the configured lm-eval tasks; returns lm-eval's results dict (with every document's responses under
    ``samples`` when asked)."""
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    include = Path(config.include_path or config.task_dir).resolve()
    model, model_args = model_spec(config)
    with contextlib.chdir(include):
        results = simple_evaluate(model=model, model_args=model_args, tasks=list(config.tasks),
                                  num_fewshot=config.num_fewshot, batch_size=config.batch_size, limit=config.limit,
                                  device="cpu" if config.device == "auto" and not config.base_url else None
                                  if config.device == "auto" else config.device,
                                  task_manager=TaskManager(include_path=str(include), include_defaults=False),
                                  random_seed=config.seed, log_samples=samples)
    if results is None:
        raise RuntimeError("lm-eval returned no results")
    return results


def run_harness(config: EvalConfig) -> int:
    try:
        from lm_eval.utils import make_table
    except ImportError:
        print("kubetune eval: task_type harness needs lm-evaluation-harness: pip install 'kubetune[eval]'",
              file=sys.stderr)
        return 2
    include = Path(config.include_path or config.task_dir)
    if not include.is_dir():
        print(f"kubetune eval: include_path {include}: not a folder of lm-eval task YAML files", file=sys.stderr)
        return 2
    try:
        results = evaluate(config)
    except (KeyError, ValueError) as exc:  # lm-eval names unknown tasks and bad task files this way
        print(f"kubetune eval: {exc}", file=sys.stderr)
        return 2
    print(make_table(results))
    if config.save_dir:
        out = Path(config.save_dir)
        out.mkdir(parents=True, exist_ok=False)
        (out / "results.json").write_text(json.dumps(summary(results, list(config.tasks)), indent=2,
                                                     default=str) + "\n", encoding="utf-8")
        print(f"results in {out}")
    return 0
