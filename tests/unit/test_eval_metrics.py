"""BLEU-4 and ROUGE-1/2/L as LLaMA-Factory defines them, on fixed strings whose scores are worked out here."""

from __future__ import annotations

import math

import pytest

from kubetune.eval.metrics import sample_scores, similarity
from kubetune.eval.predict import split_prompt, until_stop


def test_identical_text_scores_100():
    assert sample_scores("the cat sat", "the cat sat") == {"bleu-4": 100.0, "rouge-1": 100.0, "rouge-2": 100.0,
                                                           "rouge-l": 100.0}


def test_english_words_and_characters():
    # words: {the, cat, sat} vs {the, cat, ran}: 2 of 3 unigrams, 1 of 2 bigrams, LCS 2 (F1 = P = R)
    # characters (11 each, brevity penalty 1): 1-grams 9/11, 2-grams 7/10, 3-grams 6/9, 4-grams 5/8
    bleu = (9 / 11 * 7 / 10 * 6 / 9 * 5 / 8) ** 0.25
    scores = sample_scores("the cat sat", "the cat ran")
    assert scores["rouge-1"] == pytest.approx(200 / 3, abs=1e-3)
    assert scores["rouge-2"] == pytest.approx(50.0, abs=1e-3)
    assert scores["rouge-l"] == pytest.approx(200 / 3, abs=1e-3)
    assert scores["bleu-4"] == pytest.approx(100 * bleu, abs=1e-4)


def test_chinese_words_by_jieba_and_smoothed_bleu():
    # jieba: 我 / 爱 / 北京 vs 我 / 爱 / 上海: 2 of 3 words, 1 of 2 bigrams, LCS 2
    # characters: 1-grams 2/4, 2-grams 1/3, 3-grams 0/2 -> 1/(2*2), 4-grams 0/1 -> 1/(4*1) (smoothing method 3)
    bleu = (1 / 2 * 1 / 3 * 1 / 4 * 1 / 4) ** 0.25
    scores = sample_scores("我爱北京", "我爱上海")
    assert scores["rouge-1"] == pytest.approx(200 / 3, abs=1e-3)
    assert scores["rouge-2"] == pytest.approx(50.0, abs=1e-3)
    assert scores["rouge-l"] == pytest.approx(200 / 3, abs=1e-3)
    assert scores["bleu-4"] == pytest.approx(100 * bleu, abs=1e-4)


def test_empty_prediction_scores_zero_and_the_mean_is_over_samples():
    assert sample_scores("", "the cat") == {"bleu-4": 0.0, "rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    mean = similarity(["the cat sat", ""], ["the cat sat", "x"])
    assert mean == {"bleu-4": 50.0, "rouge-1": 50.0, "rouge-2": 50.0, "rouge-l": 50.0}
    assert not math.isnan(similarity([], [])["bleu-4"])


def test_label_is_the_last_answer_and_generation_stops_at_a_stop_token():
    history, label = split_prompt([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    assert (history, label) == ([{"role": "user", "content": "q"}], "a")
    with pytest.raises(ValueError, match="must end with an assistant answer"):
        split_prompt([{"role": "user", "content": "q"}])
    assert until_stop([5, 6, 2, 1, 1], [2]) == [5, 6]
