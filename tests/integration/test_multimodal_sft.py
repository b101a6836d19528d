"""Vision-language SFT end to end through `kubetune train` on CPU: tiny Qwen2-VL and LLaVA models built from their
configs, pictures drawn with PIL, judged on held-out pictures.

The task: each picture is a field of one colour (red, green, blue or yellow: chance is 1 in 4) with a few darker
or lighter blotches; the question is what colour the picture is. Held-out pictures use other shades, blotches and
sizes. The trained adapter is asked through transformers' own processor (which expands the image placeholder
itself), so the test also shows that training tokenized the images as the model's processor does.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml

from kubetune.artifacts import check_artifact
from kubetune.cli.main import main as kubetune_main
from kubetune.data.templates import get_template
from kubetune.model.tiny import build_tiny_vlm

pytestmark = pytest.mark.slow

COLOURS = {"red": (200, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 200), "yellow": (220, 210, 40)}
QUESTION = "What colour is this picture?"
IMAGE_TEXT = {"qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>", "llava": "<image>"}


def picture(colour: str, rng: random.Random, size: int):
    from PIL import Image, ImageDraw

    base = [max(0, min(255, c + rng.randint(-25, 25))) for c in COLOURS[colour]]
    image = Image.new("RGB", (size, size), tuple(base))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y, r = rng.randint(0, size), rng.randint(0, size), rng.randint(3, size // 5)
        shade = rng.choice((-40, 40))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(max(0, min(255, c + shade)) for c in base))
    return image


def draw_set(root: Path, prefix: str, n: int, seed: int, sizes: tuple[int, ...]) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        colour = list(COLOURS)[i % len(COLOURS)]
        name = f"{prefix}{i}.png"
        picture(colour, rng, rng.choice(sizes)).save(root / "pics" / name)
        out.append((f"pics/{name}", colour))
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vlmdata")
    (root / "pics").mkdir()
    train = draw_set(root, "train", 48, seed=1, sizes=(56, 64))
    rows = [{"messages": [{"role": "user", "content": f"<image>{QUESTION}"},
                          {"role": "assistant", "content": colour}], "images": [path]} for path, colour in train]
    (root / "colours.json").write_text(json.dumps(rows))
    (root / "heldout.json").write_text(json.dumps(draw_set(root, "held", 24, seed=2, sizes=(60, 72))))
    (root / "dataset_info.json").write_text(json.dumps({
        "colours": {"file_name": "colours.json", "formatting": "sharegpt",
                    "columns": {"messages": "messages", "images": "images"},
                    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                             "assistant_tag": "assistant"}},
    }))
    return root


def answers(model_dir: Path, adapter: Path | None, arch: str, data_dir: Path) -> list[bool]:
    """Greedy answers to the held-out pictures, right or wrong, through transformers' own processor."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    template = get_template(arch)
    prompt = template.render_prompt([{"role": "user", "content": IMAGE_TEXT[arch] + QUESTION}],
                                    eos_token=processor.tokenizer.eos_token)
    right = []
    for path, colour in json.loads((data_dir / "heldout.json").read_text()):
        image = Image.open(data_dir / path).convert("RGB")
        inputs = processor(text=[prompt], images=[image], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        text = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        right.append(text.strip().startswith(colour))
    return right


@pytest.mark.parametrize("arch", ["qwen2_vl", "llava"])
def test_lora_learns_colours_of_held_out_pictures(arch, data_dir, tmp_path):
    model = build_tiny_vlm(tmp_path / "model", arch, seed=3)
    before = answers(model, None, arch, data_dir)
    cfg = {"model_name_or_path": str(model), "stage": "sft", "finetuning_type": "lora", "lora_rank": 8,
           "dataset": "colours", "dataset_dir": str(data_dir), "template": arch, "cutoff_len": 256,
           "output_dir": str(tmp_path / "out"), "per_device_train_batch_size": 8, "learning_rate": 1e-2,
           "max_steps": 40, "logging_steps": 5, "save_steps": 1000, "report_to": "none", "seed": 7,
           "gradient_checkpointing": False, "tokenized_cache_dir": str(tmp_path / "cache")}
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert kubetune_main(["train", str(config), "--no-progress"]) == 0
    manifest = check_artifact(tmp_path / "out", verify_files=True)
    assert manifest.artifact_type == "lora-adapter"
    assert (tmp_path / "out" / "processor_config.json").is_file()  # the processor travels with the adapter
    after = answers(model, tmp_path / "out", arch, data_dir)
    print(f"{arch}: held-out colours right before {sum(before)}/{len(before)}, after {sum(after)}/{len(after)}")
    # Chance is 1 in 4: 12 or more of 24 right by guessing has probability 0.003.
    assert sum(after) >= len(after) // 2 and sum(after) > sum(before)
