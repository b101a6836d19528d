"""Preference-stage configs that cannot work are refused before training, naming the key (and dataset)."""

from __future__ import annotations

import pytest

from kubetune.config import ConfigError, config_from_flat
from kubetune.train.preference import check_kto_tags
from kubetune.train.stages import STAGES, StageConfigError

BASE = {"model_name_or_path": "/models/tiny", "output_dir": "/out", "dataset": "prefs", "stage": "dpo",
        "dataset_info": {"prefs": {"file_name": "/data/prefs.json", "ranking": True}}}


def errors(**keys) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        config_from_flat({**BASE, **keys})
    return {e.path: e.message for e in info.value.errors}


def test_ppo_without_a_reward_model():
    assert "reward_model is required for stage ppo" in errors(stage="ppo")["reward_model"]


@pytest.mark.parametrize("loss", ["xyz", "dpop"])
def test_unknown_pref_loss(loss):
    message = errors(pref_loss=loss)["pref_loss"]
    assert "'sigmoid', 'hinge', 'ipo', 'kto_pair', 'orpo' or 'simpo'" in message and repr(loss) in message


def test_kto_pair_points_to_stage_kto():
    assert "use stage kto" in errors(pref_loss="kto_pair")["pref_loss"]


@pytest.mark.parametrize("loss", ["orpo", "simpo"])
def test_reference_free_losses_refuse_a_ref_model(loss):
    message = errors(pref_loss=loss, ref_model="/models/ref")["ref_model"]
    assert message == f"ref_model cannot be used with pref_loss {loss}: it needs no reference model"


def test_kto_data_without_a_kto_tag_column(tmp_path):
    for name in ("prefs.json", "t.json"):
        (tmp_path / name).write_text("[]")
    cfg = config_from_flat({**BASE, "stage": "kto", "dataset": "tagged,prefs", "per_device_train_batch_size": 4,
                            "dataset_dir": str(tmp_path),
                            "dataset_info": {"prefs": {"file_name": "prefs.json"},
                                             "tagged": {"file_name": "t.json", "columns": {"kto_tag": "ok"}}}})
    with pytest.raises(StageConfigError, match=r"dataset prefs: stage kto needs a kto_tag column"):
        check_kto_tags(cfg)


@pytest.mark.parametrize(("keys", "key", "fragment"), [
    ({"dpo_label_smoothing": 0.5}, "dpo_label_smoothing", "less than 0.5"),
    ({"pref_loss": "hinge", "dpo_label_smoothing": 0.1}, "dpo_label_smoothing", "only applies to pref_loss sigmoid"),
    ({"stage": "ppo", "reward_model": "http://scorer/score"}, "reward_model", "set reward_model_type api"),
    ({"stage": "ppo", "reward_model": "/rm", "reward_model_type": "api"}, "reward_model_type", "http(s) URL"),
    ({"stage": "kto", "per_device_train_batch_size": 1}, "per_device_train_batch_size", "at least 2"),
    ({"stage": "ppo", "reward_model": "/rm", "max_new_tokens": 0}, "max_new_tokens", "must be positive"),
    ({"pref_bco_weight": 0.5}, "pref_bco_weight", "not supported"),
])
def test_other_preference_rules(keys, key, fragment):
    assert fragment in errors(**keys)[key]


def test_every_stage_has_a_module():
    from kubetune.config import STAGES as CONFIG_STAGES

    assert set(STAGES) == set(CONFIG_STAGES)
