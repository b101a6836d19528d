"""Data is checked before the model loads: `kubetune train` and `kubetune run` report a located data error at once
(exit 2 for train), instead of a traceback after the training stack and the model have loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune.cli.main import main as kubetune_main
from kubetune.config import config_from_flat
from kubetune.data.check import check_data
from kubetune.data.formats import DataFormatError
from tests.builders import make_finetunejob

ROOT = Path(__file__).resolve().parents[2]
GOOD = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(3)]


def write_data(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "good.json").write_text(json.dumps(GOOD))
    typo = [GOOD[0], {"instruction": "q", "outptu": "a"}]
    (root / "typo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in typo))
    (root / "broken.jsonl").write_text(json.dumps(GOOD[0]) + "\n{\"instruction\": \"q\",\n")
    (root / "all_bad.jsonl").write_text('{"question": 1}\n{"question": 2}\n')
    (root / "dataset_info.json").write_text(json.dumps({
        "good": {"file_name": "good.json"}, "typo": {"file_name": "typo.jsonl"},
        "broken": {"file_name": "broken.jsonl"}, "gone": {"file_name": "gone.json"},
        "all_bad": {"file_name": "all_bad.jsonl"},
    }))
    return root


def config(tmp_path: Path, **keys) -> Path:
    """A runtime config whose model does not exist: a data error must be reported before the model is looked at."""
    flat = {"model_name_or_path": str(tmp_path / "no-model-here"), "stage": "sft", "finetuning_type": "lora",
            "dataset_dir": str(write_data(tmp_path / "data")), "template": "qwen",
            "output_dir": str(tmp_path / "out"), "max_steps": 2, "report_to": "none", **keys}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(flat, sort_keys=False))
    return path


CASES = {
    "unknown": ({"dataset": "good,nosuch"}, "cfg.yaml:9: dataset: dataset 'nosuch' is not registered in "),
    "missing file": ({"dataset": "gone"}, "cfg.yaml:9: dataset: dataset 'gone': file "),
    "missing column": ({"dataset": "typo"}, "data/typo.jsonl:row 2: output: missing column 'output'"),
    "bad json": ({"dataset": "broken"}, "data/broken.jsonl:row 2: invalid JSON line"),
    "bad eval data": ({"dataset": "good", "eval_dataset": "typo"}, "data/typo.jsonl:row 2: output: missing column"),
    "nothing left": ({"dataset": "all_bad", "bad_rows": "skip"},
                     "data/all_bad.jsonl: dataset 'all_bad' has nothing to train on: all 2 rows are malformed "
                     "(first: "),
}


@pytest.mark.parametrize("case", CASES)
def test_train_reports_data_errors_located_and_exits_2(case, tmp_path, capsys):
    keys, message = CASES[case]
    assert kubetune_main(["train", str(config(tmp_path, **keys)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/{message}" in err
    assert "Traceback" not in err and "no-model-here" not in err


def test_train_checks_data_before_importing_the_training_stack(tmp_path):
    """In a fresh process: the data error comes back while torch and transformers are still not imported."""
    probe = ("import sys\nfrom kubetune.cli.main import main\nrc = main(sys.argv[1:])\n"
             "print('loaded:', sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))\n"
             "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", probe, "train", str(config(tmp_path, dataset="typo"))],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "typo.jsonl:row 2: output: missing column 'output'" in proc.stderr
    assert "loaded: []" in proc.stdout


def test_check_data_counts_usable_rows_and_leaves_hub_datasets_to_training(tmp_path):
    data = write_data(tmp_path / "data")
    cfg = config_from_flat({"model_name_or_path": "m", "stage": "sft", "dataset": "good,typo,hub",
                            "dataset_dir": str(data), "output_dir": "o", "bad_rows": "skip",
                            "dataset_info": {"hub": {"hf_hub_url": "org/set"}}})
    result = check_data(cfg)
    assert (result.rows, result.skipped, result.remote) == ({"good": 3, "typo": 1}, {"good": 0, "typo": 1}, ["hub"])
    with pytest.raises(DataFormatError, match=r"good\.json:row 1: stage dpo needs preference pairs"):
        check_data(cfg.model_copy(update={"stage": "dpo"}))


def test_run_fails_a_finetunejob_on_bad_data_before_loading_its_model(tmp_path, capsys):
    data = write_data(tmp_path / "data")
    job = make_finetunejob("sft", model={"uri": f"file://{tmp_path / 'no-model-here'}"},
                           datasets=[{"uri": f"file://{data / 'typo.jsonl'}", "format": "alpaca"}],
                           output={"uri": f"file://{tmp_path / 'out'}/"})
    file = tmp_path / "job.yaml"
    file.write_text(yaml.safe_dump(job))
    assert kubetune_main(["run", str(file), "--work-dir", str(tmp_path / "w"), "--no-progress"]) == 1
    out = capsys.readouterr()
    last = out.out.strip().splitlines()[-1]
    assert "Pending -> Failed" in last and f"data: {data / 'typo.jsonl'}:row 2: output: missing column" in last
    assert "Traceback" not in out.err and "no-model-here" not in out.out
