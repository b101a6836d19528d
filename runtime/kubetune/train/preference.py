"""What the preference stages (rm, dpo, kto, ppo) share: encoding their rows with kubetune's template, the
reference model, and checks that need the dataset registry.

TRL's trainers would otherwise format prompts with the tokenizer's own chat template; kubetune encodes every row
itself (``kubetune.data.preference``) so a preference run formats exactly like sft, export and serving. The stage
modules hand TRL rows that are already token ids and switch TRL's own tokenization off.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from kubetune.data.templates import resolve_template
from kubetune.train.stages import StageConfigError

if TYPE_CHECKING:
    from kubetune.config import RuntimeConfig
    from kubetune.train.workflow import PreparedRun


class SavesTrainedAdapterOnly:
    """Mixin for TRL's DPO and KTO trainers. With a LoRA policy they keep a frozen copy of the starting adapter,
    named ``ref``, as the reference; checkpoints keep it, the final artifact holds the trained adapter only."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        model = self.accelerator.unwrap_model(self.model)  # type: ignore[attr-defined]
        if not _internal_call and "ref" in getattr(model, "peft_config", {}):
            model.delete_adapter("ref")
        super().save_model(output_dir, _internal_call)  # type: ignore[misc]


def encode_dataset(dataset: Any, encoder: Callable[..., dict[str, Any]], cfg: RuntimeConfig, tokenizer: Any,
                   **kwargs: Any) -> Any:
    """Map the conversational rows of ``dataset`` through ``encoder(row, template, tokenizer, ...)``.

    Only the encoder's columns remain. Returns None for a None dataset.
    """
    if dataset is None:
        return None
    template = resolve_template(cfg.data.template, tokenizer)
    fn = partial(encoder, template=template, tokenizer=tokenizer, **kwargs)
    return dataset.map(fn, remove_columns=dataset.column_names, desc="encoding")


def pair_kwargs(cfg: RuntimeConfig, tokenizer: Any) -> dict[str, Any]:
    """Keyword arguments of encode_pair/encode_unpaired for this config."""
    template = resolve_template(cfg.data.template, tokenizer)
    return {"cutoff_len": cfg.data.cutoff_len, "efficient_eos": bool(getattr(template, "efficient_eos", False))}


def load_reference(cfg: RuntimeConfig, run: PreparedRun) -> Any | None:
    """The frozen reference policy of DPO and KTO.

    ``ref_model`` (+ ``ref_model_adapters``, merged) when set. Otherwise LoRA needs none: the trainer computes
    reference log-probabilities with the adapter switched off (TRL keeps a frozen copy of the starting adapter,
    which for a new adapter is exactly the base). Full and freeze training get a frozen copy of the base.
    """
    from peft import PeftModel

    from kubetune.config import MethodConfig
    from kubetune.model.loader import load_model
    from kubetune.train.arguments import precision_of

    pref = cfg.preference
    if pref.ref_model is None and cfg.method.finetuning_type in ("lora", "qlora"):
        return None
    source = cfg.model if pref.ref_model is None else cfg.model.model_copy(
        update={"model_name_or_path": pref.ref_model, "adapter_name_or_path": pref.ref_model_adapters})
    model = load_model(source, MethodConfig(), precision=precision_of(cfg.training), gradient_checkpointing=False,
                       local_rank=max(run.args.local_rank, 0), max_length=cfg.data.cutoff_len,
                       vocab_size=len(run.tokenizer) if pref.ref_model is None else None)
    for adapter in (source.adapter_name_or_path or []) if pref.ref_model else []:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.requires_grad_(False)
    return model.eval()


def check_kto_tags(cfg: RuntimeConfig) -> None:
    """Every kto dataset needs a boolean kto_tag column; say which dataset lacks it before anything loads."""
    from kubetune.data.sources import resolve_sources

    for source in resolve_sources([*(cfg.data.dataset or []), *(cfg.data.eval_dataset or [])], cfg.data):
        if source.attr.columns is None or not source.attr.columns.kto_tag:
            raise StageConfigError(
                f"dataset {source.name}: stage kto needs a kto_tag column (a boolean, true = desirable); set "
                f'"columns": {{"kto_tag": "<column>"}} on its dataset_info.json entry (ktoTag in a FineTuneJob)')
