"""Fine-tuning method keys (full, freeze, LoRA, QLoRA) and preference-stage keys (DPO, KTO, PPO, RM)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kubetune.config.base import ConfigGroup, StrList


class MethodConfig(ConfigGroup):
    """What is trained. ``qlora`` is LoRA on a quantized base; LLaMA-Factory spells it lora + quantization_bit.

    After validation ``finetuning_type`` is ``qlora`` whenever ``quantization_bit`` is set, and ``lora_alpha``
    is filled in (default 2 x ``lora_rank``).
    """

    finetuning_type: Literal["full", "freeze", "lora", "qlora"] = Field("lora", description="What is trained.")
    # LoRA
    lora_rank: int = Field(8, ge=1, le=4096, description="Adapter rank r.")
    lora_alpha: int | None = Field(None, ge=1, description="Scaling alpha; default 2 x lora_rank.")
    lora_dropout: float = Field(0.0, ge=0.0, le=1.0, description="Dropout on the adapter input.")
    lora_target: StrList = Field(default_factory=lambda: ["all"], description="Modules to adapt, or all (linear).")
    additional_target: StrList | None = Field(None, description="Extra modules trained fully and saved.")
    loraplus_lr_ratio: float | None = Field(None, gt=0.0, description="LoRA+ learning-rate ratio of B over A.")
    loraplus_lr_embedding: float = Field(1e-6, gt=0.0, description="LoRA+ learning rate of embedding adapters.")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha / sqrt(r).")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA.")
    pissa_init: bool = Field(False, description="Initialise adapters from principal singular vectors.")
    pissa_iter: int = Field(16, ge=-1, description="Fast SVD iterations for PiSSA (-1 = exact SVD).")
    pissa_convert: bool = Field(False, description="Save PiSSA adapters converted to plain LoRA.")
    create_new_adapter: bool = Field(False, description="Train a fresh adapter on top of loaded ones.")
    # Freeze
    freeze_trainable_layers: int = Field(2, description="Train the last n layers (n > 0) or the first -n (n < 0).")
    freeze_trainable_modules: StrList = Field(default_factory=lambda: ["all"], description="Modules in those layers.")
    freeze_extra_modules: StrList | None = Field(None, description="Modules outside the layers to train too.")
    # Vision-language models: which parts train (LoRA adapts the language model; full/freeze train it)
    freeze_vision_tower: bool = Field(True, description="Keep the vision encoder frozen.")
    freeze_multi_modal_projector: bool = Field(True, description="Keep the vision-to-text projector frozen.")
    freeze_language_model: bool = Field(False, description="Keep the language model frozen (train vision parts).")
    # Quantization of the frozen base (bitsandbytes)
    quantization_method: Literal["bnb"] = Field("bnb", description="On-the-fly quantization backend (bnb).")
    quantization_bit: Literal[4, 8] | None = Field(None, description="4 or 8 bits; turns LoRA into QLoRA.")
    quantization_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    double_quantization: bool = Field(True, description="Quantize the quantization constants too.")

    @model_validator(mode="after")
    def _consistent(self) -> MethodConfig:
        kind = self.finetuning_type
        if self.quantization_bit is not None and kind in ("full", "freeze"):
            raise ValueError(f"quantization_bit needs finetuning_type lora or qlora, not {kind}")
        if kind == "lora" and self.quantization_bit is not None:
            self.finetuning_type = "qlora"
        if kind == "qlora" and self.quantization_bit is None:
            self.quantization_bit = 4
        lora_only = [k for k in ("use_rslora", "use_dora", "pissa_init") if getattr(self, k)]
        if self.loraplus_lr_ratio is not None:
            lora_only.append("loraplus_lr_ratio")
        if lora_only and self.finetuning_type not in ("lora", "qlora"):
            raise ValueError(f"{', '.join(lora_only)} need finetuning_type lora or qlora")
        if self.pissa_init and self.quantization_bit is not None:
            raise ValueError("pissa_init cannot be used with a quantized base")
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_rank
        return self


class PreferenceConfig(ConfigGroup):
    """Keys of the rm, dpo, kto and ppo stages; carried and validated here, used by the stage modules.

    Compatibility notes (LLaMA-Factory names, kubetune behaviour): ``pref_loss: kto_pair`` is refused (TRL 1.16
    dropped it; use stage kto); ``dpo_label_smoothing`` selects TRL's robust DPO loss, so it must stay below 0.5;
    ``ppo_target`` turns on the adaptive KL controller, unset keeps ``ppo_kl_coef`` fixed.
    """

    pref_beta: float = Field(0.1, gt=0.0, description="Beta of DPO/ORPO/SimPO/KTO.")
    pref_ftx: float = Field(0.0, ge=0.0, description="Weight of an extra SFT loss on the chosen answers.")
    pref_bco_weight: float = Field(0.0, ge=0.0, description="BCO loss mixed into DPO.")
    pref_loss: Literal["sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"] = Field(
        "sigmoid", description="DPO-family loss: sigmoid, hinge, ipo, orpo or simpo."
    )
    dpo_label_smoothing: float = Field(0.0, ge=0.0, lt=0.5, description="Robust DPO label smoothing (sigmoid).")
    simpo_gamma: float = Field(0.5, ge=0.0, description="SimPO target reward margin.")
    ld_alpha: float | None = Field(None, ge=0.0, le=1.0, description="LD-DPO weight of verbose tokens.")
    kto_chosen_weight: float = Field(1.0, gt=0.0, description="KTO weight of desirable examples.")
    kto_rejected_weight: float = Field(1.0, gt=0.0, description="KTO weight of undesirable examples.")
    ref_model: str | None = Field(None, description="Reference model; default: the frozen base.")
    ref_model_adapters: StrList | None = Field(None, description="Adapters of the reference model.")
    ref_model_quantization_bit: Literal[4, 8] | None = Field(None, description="Quantize the reference model.")
    reward_model: str | None = Field(None, description="PPO reward model path, or a URL with reward_model_type api.")
    reward_model_adapters: StrList | None = Field(None, description="Adapters of the reward model.")
    reward_model_quantization_bit: Literal[4, 8] | None = Field(None, description="Quantize the reward model.")
    reward_model_type: Literal["lora", "full", "api"] = Field(
        "lora", description="lora: a kubetune rm adapter on the base model; full: a reward model; api: an HTTP scorer."
    )
    ppo_buffer_size: int = Field(1, ge=1, description="Mini-batches per PPO experience buffer.")
    ppo_epochs: int = Field(4, ge=1, description="PPO epochs per rollout batch.")
    ppo_score_norm: bool = Field(False, description="Normalise reward scores with running statistics.")
    ppo_target: float | None = Field(None, gt=0.0, description="Target KL of the adaptive KL controller.")
    ppo_kl_coef: float = Field(0.05, ge=0.0, description="KL penalty to the reference policy (initial, kubetune).")
    ppo_whiten_rewards: bool = Field(False, description="Whiten rewards per batch.")

    @model_validator(mode="after")
    def _consistent(self) -> PreferenceConfig:
        if self.pref_loss == "kto_pair":
            raise ValueError("pref_loss kto_pair is not supported (TRL removed it); use stage kto with kto_tag data, "
                             "or one of sigmoid, hinge, ipo, orpo, simpo")
        if self.ref_model and self.pref_loss in ("orpo", "simpo"):
            raise ValueError(f"ref_model cannot be used with pref_loss {self.pref_loss}: it needs no reference model")
        if self.dpo_label_smoothing and self.pref_loss not in ("sigmoid", "simpo"):
            raise ValueError("dpo_label_smoothing only applies to pref_loss sigmoid or simpo")
        if self.ld_alpha is not None and self.pref_loss not in ("sigmoid", "hinge", "ipo"):
            raise ValueError("ld_alpha only applies to pref_loss sigmoid, hinge or ipo")
        if self.reward_model_type == "api" and self.reward_model and not self.reward_model.startswith("http"):
            raise ValueError("reward_model_type api needs reward_model to be an http(s) URL")
        if self.reward_model_type != "api" and (self.reward_model or "").startswith(("http://", "https://")):
            raise ValueError("reward_model is a URL: set reward_model_type api for an HTTP scorer")
        return self
