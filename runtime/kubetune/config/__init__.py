"""Typed runtime config: the one object a training run is configured by (torch-free; the operator imports it).

``load_config(path, overrides)`` reads a flat LLaMA-Factory-style YAML; ``dump_config(cfg)`` writes it back;
``kubetune.config.mapping.train`` converts between a FineTuneJob and a RuntimeConfig.
"""

from __future__ import annotations

from kubetune.config.data_args import DataConfig, DatasetAttr, DatasetColumns, DatasetTags
from kubetune.config.files import ConfigError, parse_overrides
from kubetune.config.loader import config_from_flat, dump_config, load_config
from kubetune.config.method_args import MethodConfig, PreferenceConfig
from kubetune.config.model_args import GenerationConfig, ModelConfig
from kubetune.config.runtime import STAGES, RunConfig, RuntimeConfig
from kubetune.config.training_args import DistributedConfig, TrainingConfig

__all__ = [
    "STAGES", "ConfigError", "DataConfig", "DatasetAttr", "DatasetColumns", "DatasetTags", "DistributedConfig",
    "GenerationConfig", "MethodConfig", "ModelConfig", "PreferenceConfig", "RunConfig", "RuntimeConfig",
    "TrainingConfig", "config_from_flat", "dump_config", "load_config", "parse_overrides",
]
