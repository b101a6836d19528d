"""Endpoints for the serving conformance suite: adapters trained with `kubetune run`, then served by `kubetune run`
with either engine, each as a real process on a loopback port.

The vLLM engine is vLLM's CPU build in its own environment (``hack/setup-vllm.sh``, cached under
``~/.cache/kubetune/vllm-<version>``); its ``bin`` goes at the end of PATH, which is where ``kubetune`` looks for
``vllm`` when it is not beside its own Python. vLLM's CPU attention needs head_dim 64 or more, so the base model
is a tiny Llama with hidden size 128 and 2 heads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.builders import make_finetunejob, make_inferenceservice
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests" / "assets"
API_KEY = "sk-conformance"
SERVED = "tiny"
ADAPTERS = {"sea-poet": "The sea is wide and blue and deep, the waves roll in and out.",
            "land-poet": "Mountains stand tall over green fields and quiet stone villages."}
BASE_ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1"}


def setup_vllm() -> Path:
    """The bin directory of the CPU vLLM environment, installed on first use by the project's own script."""
    done = subprocess.run(["bash", str(ROOT / "hack" / "setup-vllm.sh")], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"hack/setup-vllm.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def vllm_env(bin_dir: Path) -> dict[str, str]:
    """Process environment that lets `kubetune` find the CPU vLLM and keeps its start-up offline and small."""
    return {"PATH": f"{os.environ['PATH']}:{bin_dir}", "VLLM_CPU_KVCACHE_SPACE": "1",
            # compiled graphs are cached across runs: the first start compiles, later ones are faster
            "VLLM_CACHE_ROOT": str(bin_dir.parent / "cache")}


def build_chat_base(out: Path) -> Path:
    """Tiny Llama (head_dim 64) with a ChatML template that stops at <|im_end|> like real chat models."""
    from transformers import AutoTokenizer, GenerationConfig

    from kubetune.model.tiny import build_tiny_model

    path = build_tiny_model(out, "llama", chat_template=(ASSETS / "chatml_tools.jinja").read_text(),
                            hidden_size=128, heads=2, kv_heads=1, intermediate_size=256)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = GenerationConfig.from_pretrained(path)
    config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    config.save_pretrained(path)
    return path


def kubetune_run(args: list[str], env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kubetune.cli.main", "run", *args, "--no-progress"],
                            cwd=ROOT, env={**os.environ, **BASE_ENV, **(env or {})}, text=True, **popen)


@dataclass(frozen=True)
class Trained:
    """A base model and two LoRA FineTuneJobs (`sea`, `land`) that ran with `kubetune run` in ``work``."""

    base: Path
    work: Path
    pvc: Path


def train_adapters(root: Path) -> Trained:
    """Train the two adapters with `kubetune run` (real `kubetune train` code, a few steps each)."""
    base = build_chat_base(root / "base")
    docs = []
    for job, text in zip(("sea", "land"), ADAPTERS.values(), strict=True):
        data = root / f"{job}.jsonl"
        data.write_text("".join(json.dumps({"instruction": f"Say something about the {job}. ({i})",
                                            "output": text}) + "\n" for i in range(16)))
        docs.append(make_finetunejob(
            job, model={"uri": f"file://{base}"}, datasets=[{"uri": f"file://{data}", "format": "alpaca"}],
            lora={"rank": 8, "alpha": 16, "target": ["all"]},
            training={"maxSteps": 8, "learningRate": 1.0e-2, "perDeviceBatchSize": 2, "cutoffLen": 64,
                      "gradientAccumulationSteps": 1, "saveSteps": 1000, "gradientCheckpointing": False,
                      "loggingSteps": 4},
            output={"uri": f"file://{root / 'out'}/"}))
    jobs = root / "jobs.yaml"
    jobs.write_text(yaml.safe_dump_all(docs))
    trained = Trained(base, root / "work", root / "pvc")
    proc = kubetune_run([str(jobs), "--work-dir", str(trained.work), "--pvc-root", str(trained.pvc)],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"kubetune run (training) exited {proc.returncode}:\n{output[-4000:]}")
    return trained


def inferenceservice(name: str, backend: str, base: Path) -> dict[str, Any]:
    """The served resource: the base model plus both adapters by FineTuneJob reference; only backend varies."""
    return make_inferenceservice(
        name, model={"uri": f"file://{base}"}, servedModelName=SERVED,
        adapters=[{"name": "sea-poet", "fineTuneJobRef": {"name": "sea"}},
                  {"name": "land-poet", "fineTuneJobRef": {"name": "land"}}],
        engine={"backend": backend, "maxModelLen": 512, "dtype": "bfloat16", "maxLoraRank": 8},
        resources={"gpusPerReplica": 0}, auth={"apiKeySecretRef": {"name": "key", "key": "api-key"}})


def read_record(work: Path, kind: str, name: str) -> dict[str, Any]:
    """The local record of an object, or {} while it does not exist (or is being rewritten)."""
    try:
        return json.loads((work / "objects" / "default" / kind / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class Endpoint:
    engine: str
    url: str  # OpenAI base URL, .../v1
    name: str
    work: Path
    process: subprocess.Popen
    log: Path
    startup_s: float

    def record(self) -> dict[str, Any]:
        return read_record(self.work, "InferenceService", self.name)


def _wait_ready(endpoint: Endpoint, timeout_s: float) -> None:
    """Until the record says Ready (`kubetune run` writes it after a real completion succeeded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = endpoint.record().get("status") or {}
        if status.get("phase") == "Ready" and status.get("url"):
            return
        if endpoint.process.poll() is not None or status.get("phase") == "Failed":
            break
        time.sleep(1.0)
    tail = "\n".join(endpoint.log.read_text(errors="replace").splitlines()[-40:])
    raise RuntimeError(f"{endpoint.engine} endpoint not Ready (status {endpoint.record().get('status')}); "
                       f"log {endpoint.log}:\n{tail}")


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C, as a person stops `kubetune run` (it stops the engine it started), then kill the group if needed."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@contextmanager
def serve(trained: Trained, engine: str, root: Path, env: dict[str, str] | None = None,
          timeout_s: float = 780.0) -> Iterator[Endpoint]:
    """`kubetune run` an InferenceService with ``engine`` until the block ends."""
    name = f"conformance-{engine}"
    spec = root / f"{name}.yaml"
    spec.write_text(yaml.safe_dump(inferenceservice(name, engine, trained.base)))
    log = root / f"{name}.log"
    with log.open("w") as out:
        process = kubetune_run([str(spec), "--work-dir", str(trained.work), "--pvc-root", str(trained.pvc),
                                "--port", str(free_port()), "--api-key", API_KEY],
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    start = time.monotonic()
    endpoint = Endpoint(engine, "", name, trained.work, process, log, 0.0)
    try:
        _wait_ready(endpoint, timeout_s)
        endpoint.startup_s = time.monotonic() - start
        endpoint.url = endpoint.record()["status"]["url"]
        print(f"{engine} endpoint ready in {endpoint.startup_s:.0f}s at {endpoint.url}")
        yield endpoint
    finally:
        stop(process)
