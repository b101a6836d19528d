"""The runtime config: one typed object per concern, loaded once at the edge and passed down.

Layout: ``stage`` sits at the top level (it selects the stage module); every other key belongs to exactly one
group. The flat LLaMA-Factory-style YAML is split into these groups by ``kubetune.config.keys.KEY_GROUP``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kubetune.config.base import ConfigGroup
from kubetune.config.data_args import DataConfig
from kubetune.config.eval_args import EvaluationConfig
from kubetune.config.grpo_args import GrpoConfig
from kubetune.config.method_args import MethodConfig, PreferenceConfig
from kubetune.config.model_args import GenerationConfig, ModelConfig
from kubetune.config.optimizer_args import OptimizerConfig
from kubetune.config.training_args import DistributedConfig, TrainingConfig

Stage = Literal["pt", "sft", "rm", "ppo", "dpo", "kto", "grpo"]
STAGES: tuple[str, ...] = ("pt", "sft", "rm", "ppo", "dpo", "kto", "grpo")


class RunConfig(ConfigGroup):
    """kubetune-only keys: resume policy, who asked for the run (written into the artifact manifest), progress."""

    resume: Literal["auto", "never"] = Field(
        "auto", description="auto restarts from the last complete checkpoint in output_dir; never starts over."
    )
    created_by_kind: str | None = Field(None, description="Kind of the object that asked for this run.")
    created_by_name: str | None = Field(None, description="Its name.")
    created_by_namespace: str | None = Field(None, description="Its namespace.")
    created_by_uid: str | None = Field(None, description="Its uid.")
    base_model_uri: str | None = Field(None, description="URI of the base model as the user gave it.")
    base_model_revision: str | None = Field(None, description="Revision of the base model.")
    progress_file: str | None = Field(None, description="Rank 0 rewrites this JSON file with progress (step, loss).")
    progress_interval_s: float = Field(10.0, gt=0.0, description="Minimum seconds between progress reports.")


class RuntimeConfig(BaseModel):
    """Everything one training run needs. Construct it with :func:`kubetune.config.load_config` or
    :func:`kubetune.config.mapping.train.runtime_config_from_finetunejob`; never pass raw dicts further down."""

    model_config = ConfigDict(extra="forbid")

    stage: Stage = Field("sft", description="pt, sft, rm, ppo, dpo, kto or grpo.")
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)
    grpo: GrpoConfig = Field(default_factory=GrpoConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    training: TrainingConfig
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)

    @model_validator(mode="after")
    def _stage_rules(self) -> RuntimeConfig:
        data, stage = self.data, self.stage
        if data.packing is None:
            data.packing = stage == "pt" or data.neat_packing
        sft_only = [k for k in ("train_on_prompt", "mask_history") if getattr(data, k)]
        if sft_only and stage != "sft":
            raise ValueError(f"{', '.join(sft_only)} only apply to stage sft")
        if (data.packing or data.neat_packing) and stage not in ("pt", "sft"):
            raise ValueError(f"packing only applies to stages pt and sft, not {stage}")
        if stage == "ppo" and not self.preference.reward_model:
            raise ValueError("reward_model is required for stage ppo: a kubetune rm output, a reward model, or an "
                             "http(s) scorer with reward_model_type api")
        if stage == "ppo" and self.generation.max_new_tokens <= 0:
            raise ValueError("max_new_tokens must be positive for stage ppo (the length of sampled responses)")
        if stage == "kto" and self.training.per_device_train_batch_size < 2:
            raise ValueError("per_device_train_batch_size must be at least 2 for stage kto: the KL term is estimated "
                             "from mismatched prompt/answer pairs within a batch")
        self._grpo_rules()
        if self.evaluation.eval_benchmarks and stage in ("rm", "ppo"):
            raise ValueError(f"eval_benchmarks (spec.evaluation) score causal LMs trained by pt, sft, dpo, kto or "
                             f"grpo, not stage {stage}")
        if self.training.predict_with_generate and stage != "sft":
            raise ValueError(f"predict_with_generate only applies to stage sft, not {stage}")
        if self.wants_predictions and not (data.val_size or data.eval_dataset):
            raise ValueError("do_predict with predict_with_generate needs evaluation examples: set val_size or "
                             "eval_dataset")
        if not data.dataset and not data.tokenized_path:
            raise ValueError("dataset is required (or tokenized_path pointing at a tokenized dataset)")
        self._optimizer_rules()
        return self

    def _grpo_rules(self) -> None:
        if self.stage != "grpo":
            return
        grpo, gen = self.grpo, self.generation
        if not grpo.reward_funcs:
            raise ValueError("reward_funcs is required for stage grpo: exact_match, format, an http(s) scorer URL "
                             "or a Python import path (comma-separated for several)")
        if gen.max_new_tokens <= 0:
            raise ValueError("max_new_tokens must be positive for stage grpo (the length of sampled completions)")
        if not gen.do_sample or gen.temperature <= 0:
            raise ValueError("stage grpo samples its completions: do_sample must be true and temperature above 0")
        batch = self.training.per_device_train_batch_size * self.training.gradient_accumulation_steps
        if batch % grpo.num_generations:
            raise ValueError(f"per_device_train_batch_size x gradient_accumulation_steps ({batch}) must be a "
                             f"multiple of num_generations ({grpo.num_generations}): each prompt's "
                             "completions are scored as one group")

    def _optimizer_rules(self) -> None:
        """GaLore, APOLLO and BAdam train full matrices, on one process or with DDP (LLaMA-Factory's rules)."""
        opt, method, training = self.optimizer, self.method, self.training
        name = opt.name
        if name is None:
            return
        if self.stage == "ppo" or (name == "badam" and self.stage not in ("pt", "sft")):
            raise ValueError(f"use_{name} does not apply to stage {self.stage}"
                             + (" (its own AdamW loop)" if self.stage == "ppo" else "; use stage pt or sft"))
        if method.finetuning_type in ("lora", "qlora"):
            raise ValueError(f"use_{name} cannot be combined with finetuning_type {method.finetuning_type}; "
                             "use full or freeze")
        if name in ("galore", "apollo") and self.distributed.strategy == "deepspeed":
            raise ValueError(f"use_{name} does not work with DeepSpeed; use ddp or fsdp")
        layerwise = (name == "galore" and opt.galore_layerwise) or (name == "apollo" and opt.apollo_layerwise)
        if layerwise and training.gradient_accumulation_steps != 1:
            raise ValueError(f"{name}_layerwise steps during backward: gradient_accumulation_steps must be 1")
        if layerwise and self.distributed.strategy != "ddp":
            raise ValueError(f"{name}_layerwise runs on one process or with ddp, not {self.distributed.strategy}")
        if name == "badam" and self.distributed.strategy != "ddp":
            raise ValueError(f"use_badam runs on one process or with ddp, not {self.distributed.strategy}")

    @property
    def wants_predictions(self) -> bool:
        """do_predict + predict_with_generate: generate for the evaluation examples after training and score them."""
        return self.training.predict_with_generate and bool((self.training.model_extra or {}).get("do_predict"))
