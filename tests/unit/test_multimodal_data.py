"""Images in SFT rows: placeholders, paths, pixel bounds, image tokens, and which parts of a VLM train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.config import MethodConfig, config_from_flat
from kubetune.config.data_args import DatasetAttr
from kubetune.data.bundle import build_datasets
from kubetune.data.collators import MultimodalCollator
from kubetune.data.formats import DataFormatError, convert_row
from kubetune.data.media import PLUGINS, MediaError, check_image_refs, expand_placeholders, fit_size
from kubetune.model.adapters import vision_lora_targets, vision_modules_to_save
from kubetune.model.tiny import build_tiny_vlm
from kubetune.model.vision import frozen_parts, part_of

SHAREGPT = DatasetAttr(file_name="x.json", formatting="sharegpt", columns={"messages": "messages", "images": "images"},
                       tags={"role_tag": "role", "content_tag": "content", "user_tag": "user",
                             "assistant_tag": "assistant"})


def row(question: str, images: list[str]) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "red"}],
            "images": images}


def test_rows_keep_their_images_and_placeholders_must_match():
    example = convert_row(row("<image>What colour?", ["a.png"]), SHAREGPT, "sft")
    assert example.images == ["a.png"] and example.messages[0]["content"] == "<image>What colour?"
    with pytest.raises(DataFormatError, match=r"the messages hold 2 <image> placeholder\(s\) for 1 image") as err:
        convert_row(row("<image><image>Same?", ["a.png"]), SHAREGPT, "sft")
    assert err.value.field == "images"
    assert str(err.value.at("d.json", 3)).startswith("d.json:row 3: images: the messages hold 2")
    with pytest.raises(DataFormatError, match=r"hold 1 <image> placeholder\(s\) for 0 image"):
        convert_row(row("<image>What colour?", []), SHAREGPT, "sft")
    alpaca = DatasetAttr(file_name="x.json", columns={"images": "pics"})
    example = convert_row({"instruction": "<image>Colour?", "output": "red", "pics": ["b.png"]}, alpaca, "sft")
    assert example.images == ["b.png"]
    # Without an images column a literal <image> is just text (text-only datasets are unchanged).
    assert convert_row({"instruction": "<image>", "output": "x"}, DatasetAttr(file_name="x"), "sft").images == []


def test_remote_and_escaping_image_paths_are_refused():
    for ref in ("https://example.com/a.png", "data:image/png;base64,AAAA", "s3://bucket/a.png"):
        with pytest.raises(MediaError, match="not a local file"):
            check_image_refs([ref], "images")
    with pytest.raises(MediaError, match="leads outside media_dir"):
        check_image_refs(["../secret.png"], "images")
    with pytest.raises(DataFormatError, match="images are used by stage sft only"):
        convert_row({"messages": [{"role": "user", "content": "<image>q"}], "images": ["a.png"],
                     "chosen": "a", "rejected": "b"},
                    SHAREGPT.model_copy(update={"ranking": True}), "dpo")


def test_pixel_bounds_scale_like_llamafactory():
    assert fit_size(100, 50, max_pixels=10_000, min_pixels=100) == (100, 50)
    assert fit_size(400, 200, max_pixels=20_000, min_pixels=100) == (200, 100)
    assert fit_size(10, 5, max_pixels=20_000, min_pixels=200) == (20, 10)


def test_placeholders_expand_into_each_familys_tokens():
    messages = [{"role": "user", "content": "<image>left<image>right"}, {"role": "assistant", "content": "ok"}]
    out = expand_placeholders(messages, [2, 1], PLUGINS["qwen2_vl"])
    assert out[0]["content"] == ("<|vision_start|><|image_pad|><|image_pad|><|vision_end|>left"
                                 "<|vision_start|><|image_pad|><|vision_end|>right")
    assert expand_placeholders(messages, [3, 1], PLUGINS["llava"])[0]["content"] == "<image>" * 3 + "left<image>right"
    assert messages[0]["content"] == "<image>left<image>right"  # the input is not changed


QWEN_NAMES = ["model.visual.blocks.0.attn.qkv", "model.visual.merger.mlp.0",
              "model.language_model.layers.0.mlp.up_proj", "model.language_model.layers.0.self_attn.q_proj", "lm_head"]
LLAVA_NAMES = ["model.vision_tower.encoder.layers.0.self_attn.q_proj", "model.multi_modal_projector.linear_1",
               "model.language_model.layers.0.self_attn.q_proj", "lm_head"]


def test_lora_adapts_the_parts_that_are_not_frozen():
    default = frozen_parts(MethodConfig())
    assert default == {"vision_tower", "projector"}
    assert vision_lora_targets(QWEN_NAMES, ["all"], default) == QWEN_NAMES[2:4]
    # q_proj names the language model's projection, not the CLIP tower's.
    assert vision_lora_targets(LLAVA_NAMES, ["q_proj"], default) == ["model.language_model.layers.0.self_attn.q_proj"]
    tower = frozen_parts(MethodConfig(freeze_vision_tower=False, freeze_language_model=True))
    assert vision_lora_targets(QWEN_NAMES, ["all"], tower) == ["model.visual.blocks.0.attn.qkv"]
    assert vision_modules_to_save(MethodConfig(freeze_multi_modal_projector=False)) == ["multi_modal_projector",
                                                                                       "merger"]
    assert part_of("base_model.model.model.visual.merger.mlp.0.weight") == "projector"
    with pytest.raises(ValueError, match="matched no module"):
        vision_lora_targets(QWEN_NAMES, ["all"], {"vision_tower", "projector", "language_model"})


@pytest.fixture(scope="module")
def qwen2_vl(tmp_path_factory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("qwen2vl"), "qwen2_vl")


def write_data(root: Path, sizes: list[int]) -> None:
    from PIL import Image

    for i, size in enumerate(sizes):
        Image.new("RGB", (size, size), (200, 30, 30)).save(root / f"p{i}.png")
    rows = [row("<image>What colour?", [f"p{i}.png"]) for i in range(len(sizes))]
    rows.append({"messages": [{"role": "user", "content": "No picture here."},
                              {"role": "assistant", "content": "ok"}], "images": []})
    (root / "d.json").write_text(json.dumps(rows))
    (root / "dataset_info.json").write_text(json.dumps({"d": SHAREGPT.model_copy(
        update={"file_name": "d.json"}).model_dump(exclude_none=True)}))


def test_tokenized_images_match_the_models_processor(qwen2_vl, tmp_path):
    import torch
    from PIL import Image
    from transformers import AutoProcessor

    write_data(tmp_path, [56, 112])
    processor = AutoProcessor.from_pretrained(qwen2_vl)
    cfg = config_from_flat({"model_name_or_path": str(qwen2_vl), "stage": "sft", "dataset": "d",
                            "dataset_dir": str(tmp_path), "template": "qwen2_vl", "cutoff_len": 128,
                            "tokenized_cache_dir": str(tmp_path / "cache"), "output_dir": str(tmp_path / "o")})
    bundle = build_datasets(cfg, processor.tokenizer, processor=processor)
    assert isinstance(bundle.collator, MultimodalCollator)
    pad = processor.image_token_id
    for i, size in enumerate([56, 112]):
        ids = bundle.train[i]["input_ids"]
        prompt = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                  "<|vision_start|><|image_pad|><|vision_end|>What colour?<|im_end|>\n<|im_start|>assistant\n"
                  "red<|im_end|>\n")
        image = Image.open(tmp_path / f"p{i}.png")
        expected = processor(text=[prompt], images=[image], return_tensors="pt")
        assert ids == expected["input_ids"][0].tolist()
        assert ids.count(pad) == {56: 4, 112: 16}[size]
    batch = bundle.collator([bundle.train[i] for i in range(3)])
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4], [1, 8, 8]]
    assert batch["pixel_values"].shape[0] == 16 + 64 and batch["input_ids"].shape[0] == 3
    assert torch.equal(batch["mm_token_type_ids"] == 1, batch["input_ids"] == pad)


def test_truncated_images_and_text_only_models_are_refused(qwen2_vl, tmp_path, tokenizer_dir):
    from transformers import AutoProcessor, AutoTokenizer

    write_data(tmp_path, [112])
    processor = AutoProcessor.from_pretrained(qwen2_vl)
    flat = {"model_name_or_path": str(qwen2_vl), "stage": "sft", "dataset": "d", "dataset_dir": str(tmp_path),
            "template": "qwen2_vl", "cutoff_len": 24, "tokenized_cache_dir": str(tmp_path / "cache"),
            "output_dir": str(tmp_path / "o")}
    with pytest.raises(DataFormatError, match=r"cutoff_len 24 cuts 16 of 16 image tokens .*p0.png.*raise cutoff_len"):
        build_datasets(config_from_flat(flat), processor.tokenizer, processor=processor)
    flat |= {"cutoff_len": 128, "template": "qwen"}
    with pytest.raises(DataFormatError, match="is not a vision-language model"):
        build_datasets(config_from_flat(flat), AutoTokenizer.from_pretrained(str(tokenizer_dir)))
    with pytest.raises(DataFormatError, match="template 'qwen' takes no images; use one of qwen2_vl, llava"):
        build_datasets(config_from_flat(flat), processor.tokenizer, processor=processor)
