"""The quickstart flow on a small budget: prepare, `kubetune run` the three resources, ask the endpoint.

Same files as `make demo` (only the FineTuneJob's step budget and rank are cut down), same driver helpers, the
real runtime in a `kubetune run` process and the official openai client against it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from kubetune.api.finetunejob import FineTuneJobStatus
from kubetune.api.inferenceservice import InferenceServiceStatus
from kubetune.api.modelexport import ModelExportStatus
from kubetune.artifacts import check_artifact
from kubetune.train.callbacks import read_trainer_log

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
sys.path.insert(0, str(QUICKSTART))

from endpoint import ask_all, free_port, serving  # noqa: E402
from prepare import prepare  # noqa: E402

STEPS = 12
ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def small_budget(dst: Path) -> list[Path]:
    """The quickstart resources with the FineTuneJob cut to a few steps."""
    dst.mkdir()
    files = []
    for name in ("finetunejob.yaml", "modelexport.yaml", "inferenceservice.yaml"):
        doc = yaml.safe_load((QUICKSTART / name).read_text())
        if doc["kind"] == "FineTuneJob":
            doc["spec"]["training"].update(maxSteps=STEPS, saveSteps=STEPS // 2, loggingSteps=2)
            doc["spec"]["lora"].update(rank=8, alpha=16)
        (dst / name).write_text(yaml.safe_dump(doc, sort_keys=False))
        files.append(dst / name)
    return files


def record(work: Path, kind: str, name: str) -> dict:
    return json.loads((work / "objects" / "default" / kind / f"{name}.json").read_text())


def local_path(pvc: Path, uri: str) -> Path:
    assert uri.startswith("pvc://")
    return pvc / uri.removeprefix("pvc://")


def test_quickstart_trains_exports_and_serves(tmp_path):
    from openai import OpenAI

    work = tmp_path / "work"
    pvc = work / "pvc"
    _, _, heldout_file = prepare(pvc, train_size=STEPS * 32, heldout_size=8)
    heldout = [json.loads(line) for line in heldout_file.read_text().splitlines()]
    files = small_budget(tmp_path / "resources")

    with serving(files, work_dir=work, service="quickstart", port=free_port(), env=ENV, timeout_s=900) as url:
        svc = record(work, "InferenceService", "quickstart")["status"]
        assert (svc["phase"], svc["url"], svc["servedModels"]) == ("Ready", url, ["quickstart"])
        InferenceServiceStatus.model_validate(svc)
        client = OpenAI(base_url=url, api_key="local", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["quickstart"]
        reply = client.chat.completions.create(model="quickstart", temperature=0, max_tokens=8,
                                               messages=[{"role": "user", "content": heldout[0]["instruction"]}])
        # a few steps teach the answer format's end first: the reply may be short, even empty, but it was generated
        # and ended by the end-of-turn token or the budget
        assert reply.model == "quickstart" and isinstance(reply.choices[0].message.content, str)
        assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.completion_tokens > 0
        assert len(ask_all(url, "quickstart", heldout)) == len(heldout)

    job = record(work, "FineTuneJob", "quickstart-sft")["status"]
    FineTuneJobStatus.model_validate(job)
    assert (job["phase"], job["progress"]["step"], job["output"]["artifactType"]) == ("Succeeded", STEPS,
                                                                                      "lora-adapter")
    reasons = {c["type"]: (c["status"], c["reason"]) for c in job["conditions"]}
    assert reasons["Succeeded"] == ("True", "Succeeded") and reasons["Running"] == ("False", "Succeeded")
    adapter = local_path(pvc, job["output"]["uri"])
    manifest = check_artifact(adapter, expect_type="lora-adapter", verify_files=True)
    assert manifest.base_model.uri == "pvc://models/quickstart-base"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(manifest.files)
    saved = json.loads((adapter / "adapter_config.json").read_text())["modules_to_save"]
    assert set(saved) == {"embed_tokens", "lm_head"}
    losses = [r["loss"] for r in read_trainer_log(adapter) if "loss" in r]
    assert losses[-1] < losses[0]
    assert (adapter / "training_loss.png").is_file()

    export = record(work, "ModelExport", "quickstart-merged")["status"]
    ModelExportStatus.model_validate(export)
    assert export["phase"] == "Succeeded" and export["resolvedSource"]["fineTuneJob"] == "quickstart-sft"
    merged = local_path(pvc, export["output"]["uri"])
    merged_manifest = check_artifact(merged, expect_type="full-model", verify_files=True)
    assert {"config.json", "model.safetensors"} <= set(merged_manifest.files)
    assert merged_manifest.created_by.kind == "ModelExport" and merged_manifest.stage == "sft"

    stopped = record(work, "InferenceService", "quickstart")["status"]
    assert (stopped["phase"], stopped["reason"]) == ("Pending", "NotReady")
