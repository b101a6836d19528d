"""Preference rows -> token ids with kubetune's templates: literal inputs, expected ids."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from kubetune.data.preference import (
    encode_pair,
    encode_prompt,
    encode_unpaired,
    pair_columns,
    reward_pair,
    truncate,
    with_kl_completions,
)
from kubetune.data.templates import get_template
from kubetune.data.tokenize import IGNORE_INDEX


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def answer(text: str) -> dict:
    return {"role": "assistant", "content": text}


ROW = {"prompt": [user("Hi"), answer("Hello."), user("Pick one")], "system": "Be brief.", "tools": None,
       "chosen": [answer("42")], "rejected": [answer("no")]}
HEAD = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        "Hello.<|im_end|>\n<|im_start|>user\nPick one<|im_end|>\n<|im_start|>assistant\n")


def test_pair_prompt_holds_history_and_answers_end_with_the_turn_marker(tok):
    enc = encode_pair(ROW, get_template("chatml"), tok, cutoff_len=1024)
    assert enc["prompt_ids"] == ids(tok, HEAD)
    assert enc["chosen_ids"] == ids(tok, "42<|im_end|>\n")
    assert enc["rejected_ids"] == ids(tok, "no<|im_end|>\n")
    assert enc["prompt_ids"] + enc["chosen_ids"] == ids(tok, HEAD + "42<|im_end|>\n")


def test_efficient_eos_closes_answers_with_eos(tok):
    enc = encode_pair(ROW, get_template("chatml"), tok, cutoff_len=1024, efficient_eos=True)
    assert enc["chosen_ids"][-1] == enc["rejected_ids"][-1] == tok.eos_token_id


def test_truncation_keeps_the_longest_answer_within_budget():
    prompt, (a, b) = truncate(list(range(100)), [list(range(30)), list(range(10))], cutoff_len=40)
    # Prompt and answers both long: cut in proportion (9 answer tokens of 40), every answer to the same length.
    assert (len(prompt), a, b) == (31, list(range(9)), list(range(9)))
    assert prompt == list(range(31))  # the start of the prompt is kept
    prompt, (a,) = truncate(list(range(100)), [list(range(5))], cutoff_len=40)
    assert (len(prompt), len(a)) == (35, 5)  # a short answer is kept whole


def test_unpaired_row_and_kl_rotation(tok):
    row = {"prompt": [user("Rate it")], "completion": [answer("fine")], "label": True, "system": None,
           "tools": None}
    enc = encode_unpaired(row, get_template("chatml"), tok, cutoff_len=1024)
    assert enc["label"] is True and enc["completion_ids"] == ids(tok, "fine<|im_end|>\n")
    batch = with_kl_completions({"prompt_ids": [[1], [2], [3]], "completion_ids": [[10], [20], [30]]})
    assert batch["KL_completion_ids"] == [[30], [10], [20]]


def test_ppo_prompt_is_the_generation_prompt_tail(tok):
    row = {"prompt": [user("Pick one")], "completion": [answer("x")], "system": None, "tools": None}
    enc = encode_prompt(row, get_template("chatml"), tok, max_prompt_len=5)
    full = ids(tok, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nPick one"
                    "<|im_end|>\n<|im_start|>assistant\n")
    assert enc["prompt_ids"] == full[-5:]
    assert enc["messages"] == '[{"role": "user", "content": "Pick one"}]'


def test_pair_columns_and_reward_pair():
    cols = pair_columns({"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5]})
    assert cols["chosen_input_ids"] == [1, 2, 3] and cols["chosen_labels"] == [IGNORE_INDEX, IGNORE_INDEX, 3]
    assert cols["rejected_attention_mask"] == [1, 1, 1, 1] and cols["prompt_input_ids"] == [1, 2]


def test_reward_pair_scores_whole_conversations(tok):
    rows = reward_pair(ROW, template=get_template("chatml"), tokenizer=tok, cutoff_len=1024)
    assert rows["chosen_ids"] == ids(tok, HEAD + "42<|im_end|>\n")
    assert rows["rejected_ids"] == ids(tok, HEAD + "no<|im_end|>\n")
