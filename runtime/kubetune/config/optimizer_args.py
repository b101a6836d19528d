"""Memory-efficient full fine-tuning optimizers with LLaMA-Factory's keys: GaLore, APOLLO and BAdam.

GaLore (Zhao et al., 2024) and APOLLO (Zhu et al., 2025) keep the Adam state of the target matrices in a low-rank
projection (``galore-torch``, ``apollo-torch``, reached through transformers' optimizer table); BAdam (Luo et al.,
2024) updates one block of layers at a time with Adam (``badam``). At most one of them; none with LoRA.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kubetune.config.base import ConfigGroup, StrList


class OptimizerConfig(ConfigGroup):
    """GaLore, APOLLO and BAdam settings (LLaMA-Factory's names and defaults)."""

    use_galore: bool = Field(False, description="GaLore: gradient low-rank projection of the target matrices.")
    galore_target: StrList = Field(default_factory=lambda: ["all"],
                                   description="Modules GaLore projects (comma list), or all (linear, no heads).")
    galore_rank: int = Field(16, ge=1, description="GaLore projection rank.")
    galore_update_interval: int = Field(200, ge=1, description="Steps between GaLore projection updates.")
    galore_scale: float = Field(2.0, gt=0.0, description="GaLore scaling of the projected update.")
    galore_proj_type: Literal["std", "reverse_std", "right", "left", "full"] = Field(
        "std", description="Which side GaLore projects.")
    galore_layerwise: bool = Field(False, description="One optimizer per parameter, stepped during backward.")

    use_apollo: bool = Field(False, description="APOLLO: approximated gradient scaling in a random projection.")
    apollo_target: StrList = Field(default_factory=lambda: ["all"],
                                   description="Modules APOLLO applies to (comma list), or all (linear, no heads).")
    apollo_rank: int = Field(16, ge=1, description="APOLLO projection rank.")
    apollo_update_interval: int = Field(200, ge=1, description="Steps between APOLLO projection updates.")
    apollo_scale: float = Field(32.0, gt=0.0, description="APOLLO update scale.")
    apollo_proj: Literal["svd", "random"] = Field("random", description="APOLLO projection: svd or random.")
    apollo_proj_type: Literal["std", "right", "left"] = Field("std", description="Which side APOLLO projects.")
    apollo_scale_type: Literal["channel", "tensor"] = Field("channel", description="Per-channel or per-tensor scaling.")
    apollo_layerwise: bool = Field(False, description="One optimizer per parameter, stepped during backward.")
    apollo_scale_front: bool = Field(False, description="Scale the gradient before the norm-growth limiter.")

    use_badam: bool = Field(False, description="BAdam: block coordinate descent with Adam on one block at a time.")
    badam_mode: Literal["layer", "ratio"] = Field("layer", description="layer: whole decoder layers per block; "
                                                  "ratio: a random share of every matrix.")
    badam_start_block: int | None = Field(None, ge=0, description="First block to update (layer mode).")
    badam_switch_mode: Literal["ascending", "descending", "random", "fixed"] | None = Field(
        "ascending", description="Order of blocks (layer mode).")
    badam_switch_interval: int = Field(50, ge=-1, description="Steps per block (-1: never switch).")
    badam_update_ratio: float = Field(0.05, gt=0.0, le=1.0, description="Share of each matrix updated (ratio mode).")
    badam_mask_mode: Literal["adjacent", "scatter"] = Field("adjacent", description="Which entries (ratio mode).")
    badam_verbose: int = Field(0, ge=0, le=2, description="0 quiet, 1 block switches, 2 also trainable params.")

    @model_validator(mode="after")
    def _one_optimizer(self) -> OptimizerConfig:
        chosen = [k for k in ("use_galore", "use_apollo", "use_badam") if getattr(self, k)]
        if len(chosen) > 1:
            raise ValueError(f"{' and '.join(chosen)}: choose one memory-efficient optimizer")
        if self.badam_switch_interval == 0:
            raise ValueError("badam_switch_interval must be positive, or -1 to never switch")
        return self

    @property
    def name(self) -> str | None:
        """galore, apollo, badam, or None when transformers' own optimizer (``optim``) is used."""
        return "galore" if self.use_galore else "apollo" if self.use_apollo else "badam" if self.use_badam else None
