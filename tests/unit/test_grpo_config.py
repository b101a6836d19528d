"""Stage grpo: its keys, the built-in rewards and how reward_funcs entries are resolved."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from kubetune.config import ConfigError, config_from_flat
from kubetune.config.grpo_args import DEFAULT_FORMAT
from kubetune.train.grpo_rewards import build_rewards, exact_match, final_answer, format_reward
from kubetune.train.stages import StageConfigError

BASE = {"stage": "grpo", "model_name_or_path": "m", "dataset": "d", "output_dir": "o", "reward_funcs": "exact_match",
        "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "num_generations": 4}


def config(**keys):
    return config_from_flat({**BASE, **keys})


def test_grpo_keys_are_read():
    cfg = config(reward_funcs="exact_match, format", reward_weights="1.0, 0.5", beta=0.04, loss_type="grpo",
                 scale_rewards=False, num_iterations=2, max_new_tokens=32)
    assert cfg.grpo.reward_funcs == ["exact_match", "format"] and cfg.grpo.reward_weights == [1.0, 0.5]
    assert (cfg.grpo.beta, cfg.grpo.loss_type, cfg.grpo.scale_rewards, cfg.grpo.num_iterations) == (
        0.04, "grpo", "none", 2)
    assert cfg.grpo.reward_format_pattern == DEFAULT_FORMAT


@pytest.mark.parametrize(("keys", "message"), [
    ({"reward_funcs": ""}, "reward_funcs is required for stage grpo"),
    ({"reward_funcs": "exact_match,no such thing"}, r"reward_funcs\[1\]: 'no such thing' is not a reward"),
    ({"reward_weights": "1,2"}, "reward_weights has 2 values for 1 reward_funcs"),
    ({"reward_format_pattern": "(unclosed"}, "reward_format_pattern is not a regular expression"),
    ({"num_generations": 3}, r"\(8\) must be a multiple of num_generations \(3\)"),
    ({"num_generations": 1}, "num_generations"),
    ({"do_sample": False}, "stage grpo samples its completions"),
    ({"max_new_tokens": 0}, "max_new_tokens must be positive for stage grpo"),
    ({"loss_type": "ppo"}, "loss_type"),
])
def test_bad_grpo_configs_name_the_key(keys, message):
    with pytest.raises(ConfigError, match=message):
        config(**keys)


def test_grpo_keys_are_ignored_by_other_stages_but_checked():
    assert config(stage="sft", reward_funcs="").stage == "sft"
    with pytest.raises(ConfigError, match="not a reward"):
        config(stage="sft", reward_funcs="bad entry")


def test_final_answer_and_exact_match():
    assert final_answer("<think>\n2+2 is 4\n</think>\n<answer> 4 </answer>") == "4"
    assert final_answer("  4\n") == "4"
    assert final_answer("<think>x</think>four") == "four"
    completions = ["<think>a</think><answer>42</answer>", "42 ", "41", "anything"]
    assert exact_match([""] * 4, completions, answer=["42", "42", "42", None]) == [1.0, 1.0, 0.0, None]


def test_format_reward():
    reward = format_reward(DEFAULT_FORMAT)
    assert reward(["p"] * 3, ["<think>\nsteps\n</think>\n<answer>7</answer>", "<answer>7</answer>",
                              "<think>x</think><answer>7</answer> trailing"]) == [1.0, 0.0, 0.0]
    assert format_reward(r"\d+")(["p", "p"], [" 12\n", "12a"]) == [1.0, 0.0]


def digits(prompts, completions, **kwargs):
    """An importable reward: the number of digits."""
    return [float(sum(ch.isdigit() for ch in c)) for c in completions]


class _Scorer(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        payload = json.dumps({"reward": len(body["messages"][-1]["content"])}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_build_rewards_resolves_every_kind():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scorer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/score"
    try:
        cfg = config(reward_funcs=f"exact_match,format,tests.unit.test_grpo_config:digits,{url}")
        em, fmt, imported, http = build_rewards(cfg.grpo)
        kwargs = {"answer": ["12"], "messages": [json.dumps([{"role": "user", "content": "q"}])], "system": ["s"]}
        assert em(["p"], ["12"], **kwargs) == [1.0] and fmt(["p"], ["12"], **kwargs) == [0.0]
        assert imported(["p"], ["a1b22"], **kwargs) == [3.0]
        assert http(["p"], ["abcd"], **kwargs) == [4.0]
        assert _Scorer.seen[-1]["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                                                {"role": "assistant", "content": "abcd"}]
    finally:
        server.shutdown()
    for entry, message in (("no_such_module_xyz:f", r"reward_funcs\[0\]: cannot import module 'no_such_module_xyz'"),
                           ("tests.unit.test_grpo_config:missing", "has no function 'missing'")):
        with pytest.raises(StageConfigError, match=message):
            build_rewards(config(reward_funcs=entry).grpo)
