"""Stage ``grpo``: group relative policy optimisation (Shao et al., 2024, DeepSeekMath) with TRL 1.16's GRPOTrainer.

For each prompt the policy samples ``num_generations`` completions; each is scored by the ``reward_funcs``
(weighted by ``reward_weights``); a completion's advantage is its reward minus the group's mean (divided by the
group's, the batch's or no standard deviation: ``scale_rewards``); the loss is PPO's clipped surrogate
(``epsilon``) on those advantages, averaged over tokens as ``loss_type`` says, plus ``beta`` times the KL
divergence to the reference policy (``beta: 0`` loads none). Each generated batch is optimised
``num_iterations`` times. No value model and no reward model are needed.

Prompts are formatted with kubetune's template (as in sft, export and serving), cut to their last ``cutoff_len``
tokens; completions end at the template's stop words and are at most ``max_new_tokens`` long, sampled with
``temperature``/``top_p``/``top_k``. The rewards see each dataset row's reference answer (its response) as
``answer``. Logged per step: reward (mean), reward_std, rewards/<function>/mean, kl (beta > 0),
completions/mean_length, clip_ratio/*, loss. With evaluation data the same metrics are logged under eval_.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trl import GRPOConfig, GRPOTrainer

from kubetune.data.preference import encode_grpo_prompt
from kubetune.data.templates import resolve_template
from kubetune.train.checkpoints import AtomicCheckpointMixin
from kubetune.train.context import TrainContext, TrainResult
from kubetune.train.grpo_rewards import build_rewards
from kubetune.train.preference import encode_dataset
from kubetune.train.workflow import load_trainable, prepare_run, train_and_save

if TYPE_CHECKING:
    from kubetune.config import RuntimeConfig


class KubetuneGRPOTrainer(AtomicCheckpointMixin, GRPOTrainer):
    """GRPOTrainer whose prompts are the token ids kubetune's template produced (TRL would tokenize the text
    again and add the tokenizer's BOS a second time), with atomic checkpoints.

    Args:
        prompt_ids: the ids of every prompt text in the training and evaluation data.
    """

    def __init__(self, *args: Any, prompt_ids: dict[str, list[int]], **kwargs: Any) -> None:
        self.kubetune_prompt_ids = prompt_ids
        super().__init__(*args, **kwargs)

    def _tokenize_prompts(self, prompts: list[Any]) -> tuple[list[list[int]], None, dict[str, Any]]:
        return [list(self.kubetune_prompt_ids[p]) for p in prompts], None, {}


def grpo_arguments(cfg: RuntimeConfig) -> dict[str, Any]:
    """GRPOConfig's own fields from the grpo and generation keys."""
    grpo, gen = cfg.grpo, cfg.generation
    return {"num_generations": grpo.num_generations, "beta": grpo.beta, "epsilon": grpo.epsilon,
            "num_iterations": grpo.num_iterations, "loss_type": grpo.loss_type,
            "scale_rewards": grpo.scale_rewards, "reward_weights": grpo.reward_weights,
            "max_completion_length": gen.max_new_tokens, "temperature": gen.temperature, "top_p": gen.top_p,
            "top_k": gen.top_k, "repetition_penalty": gen.repetition_penalty, "disable_dropout": True,
            "log_completions": False}


def run(cfg: RuntimeConfig, ctx: TrainContext) -> TrainResult:
    """Optimise the policy on the prompts of ``cfg.data`` against ``reward_funcs``."""
    rewards = build_rewards(cfg.grpo)  # a bad import path fails before anything loads
    run_ = prepare_run(cfg, GRPOConfig, **grpo_arguments(cfg))
    tokenizer = run_.tokenizer
    encoded = [encode_dataset(ds, encode_grpo_prompt, cfg, tokenizer, max_prompt_len=cfg.data.cutoff_len)
               for ds in (run_.bundle.train, run_.bundle.eval)]
    prompt_ids = {row["prompt"]: row["prompt_ids"] for ds in encoded if ds is not None for row in ds}
    train, evals = (ds.remove_columns("prompt_ids") if ds is not None else None for ds in encoded)
    assert train is not None  # prepare_run refuses a run without training rows
    model = load_trainable(cfg, run_)
    model.generation_config.eos_token_id = resolve_template(cfg.data.template, tokenizer).stop_token_ids(tokenizer)
    trainer = KubetuneGRPOTrainer(model=model, reward_funcs=rewards, args=run_.args, train_dataset=train,
                                  eval_dataset=evals, processing_class=tokenizer, prompt_ids=prompt_ids)
    return train_and_save(trainer, cfg, ctx, run_, len(train))
