"""Train small LoRA adapters on tiny models with peft directly (a few real optimizer steps, so B != 0)."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from kubetune.artifacts import ArtifactManifest, BaseModelInfo, write_manifest


def train_lora(base: Path, out: Path, texts: list[str] | list[list[int]], *, steps: int = 4, rank: int = 8,
               lr: float = 1e-2, seed: int = 0, prompt_len: int = 0, lm_head: bool = False) -> Path:
    """LoRA-train ``base`` on ``texts`` (strings or token ids) for ``steps`` AdamW steps; save adapter + manifest.

    ``prompt_len`` tokens at the start of each example are masked out of the loss (the model learns the rest).
    ``lm_head`` adds a LoRA on the output projection too (sharpens a tiny model's flat logits quickly).
    Returns ``out``; the final training loss is in ``out/train_loss.txt``.
    """
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                                        *(["lm_head"] if lm_head else [])])
    model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    batch = [tokenizer(t, add_special_tokens=False)["input_ids"] if isinstance(t, str) else t for t in texts]
    model.train()
    for step in range(steps):
        ids = torch.tensor([batch[step % len(batch)]])
        labels = ids.clone()
        labels[:, :prompt_len] = -100
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    (out / "train_loss.txt").write_text(f"{loss.item():.6f}\n")
    write_manifest(out, ArtifactManifest(artifact_type="lora-adapter", base_model=BaseModelInfo(uri=str(base)),
                                         stage="sft", method="lora"))
    return out
