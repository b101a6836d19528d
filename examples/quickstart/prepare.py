"""Put the quickstart's inputs where its resources look for them: the base model and the datasets.

The FineTuneJob reads ``pvc://models/quickstart-base`` and ``pvc://data/quickstart/train.jsonl``. Locally
``pvc://claim/path`` is ``<pvc-root>/claim/path``; on a cluster, run this once and copy the two folders onto the
``models`` and ``data`` volumes. The base model is a small Llama initialised at random from a config (nothing is
downloaded) with the committed tokenizer and a ChatML chat template, so it knows the format but not the task.

    python examples/quickstart/prepare.py --pvc-root .kubetune/pvc
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import write_datasets

BASE_MODEL = Path("models/quickstart-base")
DATA_DIR = Path("data/quickstart")
TRAIN_SIZE = 24000  # one epoch of batch 32: 750 optimizer steps
END_OF_TURN = "<|im_end|>"  # ChatML's end of an assistant turn: generation stops there


@dataclass(frozen=True)
class BaseModelSize:
    """The base model's shape: a few times the test models, small enough to train in minutes on two cores."""

    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 256


def build_base_model(pvc_root: Path, size: BaseModelSize = BaseModelSize(), seed: int = 0) -> Path:
    """Write the randomly initialised base model to ``<pvc_root>/models/quickstart-base`` (kept when present)."""
    from transformers import AutoTokenizer

    from kubetune.data.templates import get_template
    from kubetune.model.tiny import ASSETS_TOKENIZER, build_tiny_model

    out = pvc_root / BASE_MODEL
    if (out / "config.json").is_file():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = AutoTokenizer.from_pretrained(str(ASSETS_TOKENIZER))
        tokenizer.eos_token = END_OF_TURN  # the answer's last token; the served model stops on it
        tokenizer.save_pretrained(tmp)
        build_tiny_model(out, "llama", tokenizer_dir=tmp, seed=seed, chat_template=get_template("chatml").jinja,
                         hidden_size=size.hidden_size, layers=size.layers, heads=size.heads, kv_heads=size.kv_heads,
                         intermediate_size=size.intermediate_size, max_positions=size.max_positions)
    return out


def prepare(pvc_root: Path, train_size: int, heldout_size: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """Build the base model and write the datasets. Returns (model dir, train file, held-out file)."""
    model = build_base_model(pvc_root, seed=seed)
    train, heldout = write_datasets(pvc_root / DATA_DIR, train_size, heldout_size, seed=seed)
    return model, train, heldout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pvc-root", type=Path, default=Path(".kubetune/pvc"))
    parser.add_argument("--train-size", type=int, default=TRAIN_SIZE)
    parser.add_argument("--heldout-size", type=int, default=200)
    args = parser.parse_args()
    for path in prepare(args.pvc_root, args.train_size, args.heldout_size):
        print(path)


if __name__ == "__main__":
    main()
