"""Deterministic assets for bench/training_side_by_side.py: a byte-level BPE tokenizer with Llama-3 special tokens,
a tiny and a medium random Llama, alpaca SFT rows of varied length and a preference set.

Everything is built locally (no download) and re-running gives the same files. ``build_assets(root)`` writes:

    root/tokenizer/               vocab 1024, bos <|begin_of_text|>, eos <|eot_id|>, pad <|finetune_right_pad_id|>
    root/tiny/  root/medium/      Llama (hidden 128 / 512, 4 layers), fp32, seed 1234
    root/data/dataset_info.json   bench_sft (2,000 alpaca rows) and bench_dpo (400 ranking rows)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
           "<|eom_id|>", "<|finetune_right_pad_id|>", "<|python_tag|>"]
LLAMA3_CHAT = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
MODELS = {
    "tiny": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
             "num_key_value_heads": 4},
    "medium": {"hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 4, "num_attention_heads": 8,
               "num_key_value_heads": 8},
}
WORDS = ("apple river stone cloud green quick light north paper seven table music orange silver garden window "
         "yellow winter summer bridge forest planet rocket candle dragon little simple number letter answer").split()


def sft_rows(n: int, seed: int = 7) -> list[dict[str, str]]:
    """Alpaca rows: short arithmetic and word tasks plus word-list copies of 4..60 words (lengths vary ~10x)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            a, b = rng.randrange(100), rng.randrange(100)
            rows.append({"instruction": f"Add {a} and {b}.", "input": "", "output": str(a + b)})
        elif kind == 1:
            w = rng.choice(WORDS)
            rows.append({"instruction": f"Reverse the word {w}.", "input": "", "output": w[::-1]})
        elif kind == 2:
            w = rng.choice(WORDS)
            rows.append({"instruction": f"Upper-case the word {w}.", "input": "", "output": w.upper()})
        else:
            words = [rng.choice(WORDS) for _ in range(int(rng.uniform(4, 60)))]
            rows.append({"instruction": "Copy the words in reverse order.", "input": " ".join(words),
                         "output": " ".join(reversed(words))})
    return rows


def dpo_rows(n: int, seed: int = 11) -> list[dict[str, str]]:
    """Ranking rows: chosen is the correct answer, rejected the answer reversed plus "x"."""
    rows = []
    for row in sft_rows(n, seed):
        rows.append({"instruction": row["instruction"], "input": row["input"], "chosen": row["output"],
                     "rejected": row["output"][::-1] + "x"})
    return rows


def build_tokenizer(out: Path, texts: list[str]) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                                       special_tokens=[("<|begin_of_text|>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   pad_token="<|finetune_right_pad_id|>", padding_side="right", model_max_length=512)
    fast.chat_template = LLAMA3_CHAT
    fast.save_pretrained(out)


def build_model(out: Path, tokenizer_dir: Path, sizes: dict[str, int]) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=1024, max_position_embeddings=512, rope_theta=10000.0,
                         tie_word_embeddings=False, bos_token_id=0, eos_token_id=4, pad_token_id=6, **sizes)
    torch.manual_seed(1234)
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_assets(root: Path) -> Path:
    """Write the assets under ``root`` unless a previous run finished them; returns ``root``."""
    marker = root / ".complete"
    if marker.is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    sft, dpo = sft_rows(2000), dpo_rows(400)
    data = root / "data"
    data.mkdir(exist_ok=True)
    (data / "bench_sft.json").write_text(json.dumps(sft))
    (data / "bench_dpo.json").write_text(json.dumps(dpo))
    (data / "dataset_info.json").write_text(json.dumps({
        "bench_sft": {"file_name": "bench_sft.json"},
        "bench_dpo": {"file_name": "bench_dpo.json", "ranking": True,
                      "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen",
                                  "rejected": "rejected"}}}, indent=1))
    texts = [f"{r['instruction']} {r['input']} {r['output']}" for r in sft] + [str(i) for i in range(-100, 200)]
    texts += ["user assistant system", " ".join(WORDS).upper()]
    build_tokenizer(root / "tokenizer", texts)
    for name, sizes in MODELS.items():
        build_model(root / name, root / "tokenizer", sizes)
    marker.touch()
    return root
