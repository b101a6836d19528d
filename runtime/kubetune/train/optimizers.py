"""GaLore, APOLLO and BAdam for memory-efficient full fine-tuning, with LLaMA-Factory's keys.

GaLore and APOLLO go through transformers' optimizer table: :func:`low_rank_arguments` (pure) turns the keys into
``optim``, ``optim_target_modules`` and ``optim_args``, so every Trainer-based stage gets them. BAdam wraps the
configured optimizer in ``badam``'s block optimizer (:func:`badam_optimizer`), built by the kubetune trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from kubetune.config.optimizer_args import OptimizerConfig

# optim_target_modules for target "all": every linear layer except the output heads (a full-match regex over
# module names; transformers keeps only nn.Linear modules among the matches).
ALL_LINEAR_BUT_HEADS = r"(?!(?:.*\.)?(?:lm_head|score|classifier|v_head)$).+"


def _targets(target: list[str]) -> str | list[str]:
    return ALL_LINEAR_BUT_HEADS if "all" in target else list(target)


def _galore_variant(optim: str) -> str:
    """GaLore's optimizer for the configured ``optim`` (LLaMA-Factory: 8-bit AdamW and Adafactor have their own)."""
    if "8bit" in optim:
        return "galore_adamw_8bit"
    if optim.startswith("adafactor"):
        return "galore_adafactor"
    return "galore_adamw"


def low_rank_arguments(opt: OptimizerConfig, optim: str) -> dict[str, Any]:
    """TrainingArguments values for use_galore / use_apollo (none otherwise).

    Args:
        opt: the optimizer keys.
        optim: the configured transformers optimizer name (selects GaLore's AdamW, 8-bit AdamW or Adafactor).
    """
    if opt.use_galore:
        args = (f"rank={opt.galore_rank},update_proj_gap={opt.galore_update_interval},scale={opt.galore_scale},"
                f"proj_type={opt.galore_proj_type}")
        name = _galore_variant(optim) + ("_layerwise" if opt.galore_layerwise else "")
        return {"optim": name, "optim_target_modules": _targets(opt.galore_target), "optim_args": args}
    if opt.use_apollo:
        args = (f"rank={opt.apollo_rank},proj={opt.apollo_proj},scale_type={opt.apollo_scale_type},"
                f"update_proj_gap={opt.apollo_update_interval},scale={opt.apollo_scale},"
                f"proj_type={opt.apollo_proj_type}")
        name = "apollo_adamw" + ("_layerwise" if opt.apollo_layerwise else "")
        return {"optim": name, "optim_target_modules": _targets(opt.apollo_target), "optim_args": args}
    return {}


def scale_front(optimizer: torch.optim.Optimizer) -> int:
    """apollo_scale_front: APOLLO scales the gradient before its norm-growth limiter (an optimizer attribute
    transformers' table does not set). Covers the per-parameter optimizers of the layer-wise variant too.
    Returns how many APOLLO optimizers were changed."""
    inner = getattr(optimizer, "optimizer_dict", None)
    optimizers = list(inner.values()) if isinstance(inner, dict) else [optimizer]
    changed = [o for o in optimizers if hasattr(o, "scale_front")]
    for o in changed:
        o.scale_front = True
    return len(changed)


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """LLaMA-Factory's groups: no weight decay on biases and normalisation weights."""
    from torch import nn
    from transformers.trainer_pt_utils import get_parameter_names

    decay = set(get_parameter_names(model, [nn.LayerNorm], ["bias", "norm"]))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [{"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
            {"params": [p for n, p in named if n in decay], "weight_decay": weight_decay}]


def badam_optimizer(model: nn.Module, opt: OptimizerConfig, optimizer_cls: type[Any], optimizer_kwargs: dict[str, Any],
                    weight_decay: float) -> Any:
    """BAdam's block optimizer around the configured optimizer, as LLaMA-Factory builds it.

    ``badam_mode: layer`` updates one decoder layer (block) at a time, switching every ``badam_switch_interval``
    steps in ``badam_switch_mode`` order from ``badam_start_block``; ``ratio`` updates a ``badam_update_ratio``
    share of every matrix (``badam_mask_mode``).
    """
    groups = _decay_groups(model, weight_decay)
    named = list(model.named_parameters())
    if opt.badam_mode == "layer":
        from badam import BlockOptimizer

        return BlockOptimizer(base_optimizer=optimizer_cls(groups, **optimizer_kwargs), named_parameters_list=named,
                              block_prefix_list=None, switch_block_every=opt.badam_switch_interval,
                              start_block=opt.badam_start_block, switch_mode=opt.badam_switch_mode,
                              verbose=opt.badam_verbose)
    from badam import BlockOptimizerRatio

    # The ratio mode runs its own sparse Adam: it takes the learning rate and Adam's betas and epsilon only.
    adam = {k: v for k, v in optimizer_kwargs.items() if k in ("lr", "betas", "eps")}
    return BlockOptimizerRatio(param_groups=groups, named_parameters_list=named,
                               switch_every=opt.badam_switch_interval, update_ratio=opt.badam_update_ratio,
                               mask_mode=opt.badam_mask_mode, verbose=opt.badam_verbose, include_embedding=False,
                               **adam)
