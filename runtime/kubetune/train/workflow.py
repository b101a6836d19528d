"""The training flow every stage shares, and the causal-LM stages (pt, sft) built from it.

arguments (and distributed setup) → output dir (clean, pick the checkpoint to resume) → tokenizer → datasets
(tokenized once, on the main process first) → model → method → Trainer → train → save adapter/model, records,
manifest last. :func:`prepare_run`, :func:`load_trainable` and :func:`train_and_save` are the pieces; the
preference stages put their TRL trainer between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments, set_seed

from kubetune.model.adapters import apply_method, count_parameters
from kubetune.model.loader import decoder_layer_classes, load_model, load_tokenizer
from kubetune.model.vision import load_processor
from kubetune.model.vocab import embedding_module_names, wants_resize
from kubetune.train.arguments import precision_of, training_arguments
from kubetune.train.checkpoints import global_step_of
from kubetune.train.context import TrainContext, TrainResult, last_logged_loss
from kubetune.train.outputs import artifact_type, clean_output_dir, resume_checkpoint, save_final
from kubetune.train.trainer import KubetuneTrainer, install_callbacks, kubetune_callbacks

if TYPE_CHECKING:
    from kubetune.config import RuntimeConfig


def estimated_steps(args: Any, batches_per_epoch: int) -> int:
    """Optimizer steps the run will take: ``max_steps`` when set, else epochs x updates per epoch."""
    if args.max_steps > 0:
        return int(args.max_steps)
    updates = max(math.ceil(batches_per_epoch / args.gradient_accumulation_steps), 1)
    return math.ceil(args.num_train_epochs * updates)


def strategy_in_use(trainer: Any) -> str:
    """What accelerate actually set up (not merely what the config asked for)."""
    if trainer.is_fsdp_enabled:
        return "fsdp"
    if trainer.is_deepspeed_enabled:
        return "deepspeed"
    return "ddp" if trainer.args.world_size > 1 else "single process"


def attention_text(model: Any) -> str:
    """The attention the model trains with, saying so when it is the padding-free one."""
    from kubetune.model.varlen import VARLEN_SDPA

    attn = getattr(model.config, "_attn_implementation", None)
    return "sdpa per example, padding-free (one row of real tokens per micro-batch)" if attn == VARLEN_SDPA \
        else str(attn)


def plan_text(cfg: RuntimeConfig, trainer: Any, steps: int, examples: int, resume: Path | None) -> str:
    """The short plan printed before training starts."""
    model, args = trainer.model, trainer.args
    trainable, total = count_parameters(model)
    device = args.device.type
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    strategy = strategy_in_use(trainer)
    lines = [
        f"model     {cfg.model.model_name_or_path}",
        f"stage     {cfg.stage}   method {cfg.method.finetuning_type}   precision {precision_of(cfg.training)}",
        f"params    {trainable:,} trainable of {total:,} ({100 * trainable / max(total, 1):.2f}%)",
        f"data      {examples:,} training sequences, global batch {global_batch}",
        f"steps     {steps:,} optimizer steps" + (f", resuming from {resume.name}" if resume else ""),
        f"devices   {args.world_size} x {device} ({strategy})",
        f"attention {attention_text(model)}",
        f"output    {args.output_dir}",
    ]
    return "\n".join(lines)


@dataclass
class PreparedRun:
    """What every stage sets up before it builds its model and trainer."""

    args: Any  # TrainingArguments or a TRL config
    output_dir: Path
    resume: Path | None
    tokenizer: Any
    bundle: Any  # kubetune.data.bundle.DatasetBundle
    fsdp_layers: list[str]
    processor: Any = None  # a vision-language model's processor (saved with the artifact), else None


def prepare_run(cfg: RuntimeConfig, config_cls: type[Any] | None = None, **extra: Any) -> PreparedRun:
    """Arguments (and distributed setup), a clean output dir, the checkpoint to resume, tokenizer and datasets.

    ``config_cls``/``extra``: a TRL config class and its stage-specific fields (see ``training_arguments``).
    """
    from kubetune.data import build_datasets

    output_dir = Path(cfg.training.output_dir)
    layers = decoder_layer_classes(cfg.model) if cfg.distributed.strategy == "fsdp" else []
    args = training_arguments(cfg, output_dir, layers, config_cls, **extra)
    if args.should_save:
        output_dir.mkdir(parents=True, exist_ok=True)
        clean_output_dir(cfg, output_dir)
    with args.main_process_first(local=False, desc="output directory"):  # rank 0 has cleaned it
        resume = resume_checkpoint(cfg, output_dir)
    set_seed(args.seed)  # adapters are initialised before the Trainer seeds anything

    tokenizer = load_tokenizer(cfg.model)
    processor = load_processor(cfg.model, tokenizer) if cfg.stage == "sft" else None
    # tokenizes on the main process, the others read its cache
    bundle = build_datasets(cfg, tokenizer, cfg.stage, processor=processor)
    return PreparedRun(args, output_dir, resume, tokenizer, bundle, layers, processor)


def load_trainable(cfg: RuntimeConfig, run: PreparedRun, task: str = "causal_lm", **model_kwargs: Any) -> Any:
    """The base model with the configured method applied (``task`` seq_cls loads a reward model head)."""
    model = load_model(cfg.model, cfg.method, precision=precision_of(cfg.training),
                       gradient_checkpointing=cfg.training.gradient_checkpointing and not run.fsdp_layers,
                       local_rank=max(run.args.local_rank, 0), max_length=cfg.data.cutoff_len,
                       vocab_size=len(run.tokenizer), **model_kwargs)
    method = cfg.method
    if wants_resize(cfg.model) and method.finetuning_type in ("lora", "qlora") and method.additional_target is None:
        # New token rows must learn: the resized embeddings train in full and are saved with the adapter.
        method = method.model_copy(update={"additional_target": embedding_module_names(model)})
    return apply_method(model, method, cfg.model, task=task)


class _AlreadyTrained(Exception):
    """Raised by :class:`StopBeforeAnyStep` to leave ``Trainer.train`` once the checkpoint is loaded."""


class StopBeforeAnyStep(TrainerCallback):
    """For a run resumed from a checkpoint that already holds every planned step (a kill during the final save).

    transformers checks ``max_steps`` only after a step, so resuming at ``global_step == max_steps`` in the middle
    of an epoch trains one step more (21 of 20). This callback leaves ``train()`` when the first step would begin:
    by then the checkpoint's weights and state are loaded (and wrapped for DeepSpeed or FSDP), so the final save
    writes exactly what the checkpoint holds.
    """

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: Any) -> None:
        raise _AlreadyTrained


def train_and_save(trainer: Any, cfg: RuntimeConfig, ctx: TrainContext, run: PreparedRun,
                   examples: int) -> TrainResult:
    """Install kubetune's callbacks, print the plan, train (resuming when asked), evaluate, save the artifact."""
    args = run.args
    main = trainer.is_world_process_zero()
    install_callbacks(trainer, kubetune_callbacks(run.output_dir, ctx.sinks if main else [],
                                                  cfg.run.progress_interval_s, ctx.console and not args.disable_tqdm))
    steps = estimated_steps(args, len(trainer.get_train_dataloader()))
    trained_before = run.resume is not None and global_step_of(run.resume) >= steps
    if main:
        ctx.say(plan_text(cfg, trainer, steps, examples, run.resume))
        if trained_before and run.resume is not None:
            ctx.say(f"all {steps} steps are in {run.resume.name}; writing the final artifact from it")
    if trained_before:
        trainer.add_callback(StopBeforeAnyStep())
    baseline = baseline_scores(cfg, ctx, trainer.model, run.tokenizer) if main else None
    try:
        output = trainer.train(resume_from_checkpoint=str(run.resume) if run.resume else None)
        metrics = {} if trained_before else dict(output.metrics)  # nothing was trained in this process
    except _AlreadyTrained:
        metrics = {}
    if trainer.eval_dataset is not None and args.eval_strategy != "no":
        metrics |= trainer.evaluate()
    if cfg.wants_predictions and main:  # before save_final: the files belong to the artifact, the manifest is last
        metrics |= predict_eval_examples(cfg, trainer.model, run.tokenizer, run.output_dir)
    if cfg.evaluation.eval_benchmarks and main:  # before save_final, like the predictions
        metrics |= evaluate_trained(cfg, ctx, trainer.model, run, baseline)
    save_final(trainer, cfg, run.output_dir, metrics)
    return TrainResult(output_dir=run.output_dir, artifact_type=artifact_type(cfg.method.finetuning_type),
                       global_step=trainer.state.global_step, train_loss=metrics.get("train_loss"),
                       last_loss=last_logged_loss(trainer.state.log_history), resumed_from=run.resume,
                       metrics=metrics)


def predict_eval_examples(cfg: RuntimeConfig, model: Any, tokenizer: Any, output_dir: Path) -> dict[str, float]:
    """``do_predict`` + ``predict_with_generate``: generated_predictions.jsonl and BLEU/ROUGE in ``output_dir``."""
    from kubetune.data.bundle import eval_examples
    from kubetune.eval.predict import predict_and_score

    was_training = model.training
    model.eval()
    try:
        return predict_and_score(model, tokenizer, eval_examples(cfg), template=cfg.data.template,
                                 gen=cfg.generation, out_dir=output_dir,
                                 batch_size=cfg.training.per_device_eval_batch_size)
    finally:
        model.train(was_training)


def score_declared(cfg: RuntimeConfig, ctx: TrainContext, model: Any, tokenizer: Any) -> list[Any]:
    """The declared benchmarks (``eval_benchmarks``) scored on ``model`` as it is now."""
    from kubetune.eval.training import score_benchmarks

    return score_benchmarks(model, tokenizer, cfg.evaluation.eval_benchmarks, cfg.model.model_name_or_path,
                            cfg.data.template, ctx.say)


def baseline_scores(cfg: RuntimeConfig, ctx: TrainContext, model: Any, tokenizer: Any) -> list[Any] | None:
    """With ``eval_baseline``: the declared benchmarks scored on the model before training (else None)."""
    if not (cfg.evaluation.eval_baseline and cfg.evaluation.eval_benchmarks):
        return None
    return score_declared(cfg, ctx, model, tokenizer)


def evaluate_trained(cfg: RuntimeConfig, ctx: TrainContext, model: Any, run: PreparedRun,
                     baseline: list[Any] | None) -> dict[str, float]:
    """Score the trained model, write ``eval/`` and report ``status.evaluation``; returns the manifest metrics."""
    from kubetune.eval import training as ev

    results = score_declared(cfg, ctx, model, run.tokenizer)
    scores = ev.scores_of(results)
    base = ev.scores_of(baseline) if baseline else None
    status = ev.evaluation_status(scores, base)
    ev.write_eval_files(run.output_dir, results, status)
    ctx.say(ev.summary_line(status))
    ev.report(ctx.sinks, status, ctx.say)
    return ev.manifest_metrics(scores, base)


def padding_free_applies(cfg: RuntimeConfig, run: PreparedRun, model: Any) -> bool:
    """Whether pt/sft train padding-free on sdpa: the micro-batch flattened into one row of real tokens and
    attention run per example (kubetune.model.varlen), which gives the padded run's loss and gradients.

    Only where that is exact and the model's forward hands position ids to its attention: ``padding_free`` on, a
    model loaded with sdpa whose type is a plain causal LM (kubetune.train.causal_loss.plain_head_parts: no vision
    inputs, no logit transforms), one process, and no packing (``packing`` attends across examples; neat packing
    keeps one row per bin, which is already almost free of padding).
    """
    from kubetune.train.causal_loss import plain_head_parts

    if not cfg.data.padding_free or run.args.world_size != 1 or run.processor is not None:
        return False
    if cfg.data.packing:  # concatenated chunks attend across examples; neat-packed bins are ~1% padding already
        return False  # (flattening them measured 0.96-0.99x of one row per bin on sdpa)
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    return plain_head_parts(model) is not None


def use_padding_free(cfg: RuntimeConfig, run: PreparedRun, model: Any) -> bool:
    """Switch ``model`` to per-example sdpa (kubetune.model.varlen) when :func:`padding_free_applies`; says
    whether it did. :func:`collator_for` then gives the flattened row."""
    if not padding_free_applies(cfg, run, model):
        return False
    from kubetune.model.varlen import use_varlen_sdpa

    use_varlen_sdpa(model)
    return True


def collator_for(cfg: RuntimeConfig, run: PreparedRun, model: Any) -> Any:
    """The data layer's collator, except that a model on per-example sdpa (:func:`use_padding_free`) takes one
    flattened row, and neat packing takes the layout of the loaded model's attention (one flattened row for varlen
    flash-attention, one padded row per bin for sdpa/eager)."""
    from kubetune.model.varlen import VARLEN_SDPA

    if getattr(model.config, "_attn_implementation", None) == VARLEN_SDPA:
        from kubetune.data.collators import FlatteningCollator

        return FlatteningCollator()
    if not cfg.data.neat_packing:
        return run.bundle.collator
    from kubetune.data.collators import neat_packing_collator

    tokenizer = run.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return neat_packing_collator(getattr(model.config, "_attn_implementation", None), pad)


def train_causal_lm(cfg: RuntimeConfig, ctx: TrainContext) -> TrainResult:
    """Train ``cfg.stage`` (pt or sft) on a causal LM and write the artifact. Returns what was produced."""
    run = prepare_run(cfg)
    model = load_trainable(cfg, run)
    use_padding_free(cfg, run, model)
    trainer = KubetuneTrainer(
        model=model, args=run.args, train_dataset=run.bundle.train, eval_dataset=run.bundle.eval,
        data_collator=collator_for(cfg, run, model), processing_class=run.processor or run.tokenizer,
        loraplus=cfg.method if cfg.method.loraplus_lr_ratio else None, optimizer_keys=cfg.optimizer,
    )
    return train_and_save(trainer, cfg, ctx, run, len(run.bundle.train))
