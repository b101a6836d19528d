"""Build the small byte-level BPE tokenizer committed under tests/assets/tokenizer.

Deterministic: the corpus is generated here, so rerunning reproduces the same files. The tokenizer carries the
special tokens of the template families the tests exercise (llama3, llama2/mistral, chatml/qwen, qwen3 thinking,
gemma, phi, glm4/chatglm, deepseek, yi) so chat templates render to real single-token markers.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = [
    "<|endoftext|>", "<pad>", "<unk>", "<s>", "</s>",
    # llama3
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<|eom_id|>", "<|python_tag|>",
    # chatml / qwen / yi
    "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
    # qwen3 thinking
    "<think>", "</think>",
    # llama2 / mistral
    "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_CALLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
    # gemma
    "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>",
    # phi
    "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
    # glm4 / chatglm3
    "[gMASK]", "<sop>", "<|observation|>",
    # deepseek
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
]

WORDS = """
the a an of to and in is it you that he was for on are with as his they be at one have this from or
had by word but what some we can out other were all there when up use your how said each she which
do their time if will way about many then them write would like so these her long make thing see him
two has look more day could go come did number sound no most people my over know water than call
first who may down side been now find any new work part take get place made live where after back
little only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy old too
same tell does set three want air well also play small end put home read hand port large spell add
even land here must big high such follow act why ask men change went light kind off need house
picture try us again animal point mother world near build self earth father question answer reverse
upper lower sum plus minus times equals user assistant system tool function call result json
""".split()


def corpus(n: int = 4000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        nums = [str(rng.randint(0, 999)) for _ in range(rng.randint(0, 3))]
        lines.append(" ".join(words + nums).capitalize() + rng.choice([".", "?", "!", ":", ","]))
    lines += ['{"name": "get_weather", "arguments": {"city": "Paris"}}', "Question: what is 12 + 7? Answer: 19"]
    return lines


def build(out: Path, vocab_size: int = 2048) -> None:
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 4096,
        "bos_token": None,
        "eos_token": "<|endoftext|>",
        "pad_token": "<pad>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "tests/assets/tokenizer")
