"""Dataset registry entries and data-processing keys (LLaMA-Factory DataArguments and dataset_info.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kubetune.config.base import ConfigGroup, FloatList, StrList
from kubetune.config.templates import template_names

Formatting = Literal["alpaca", "sharegpt", "openai", "text"]


class DatasetColumns(ConfigGroup):
    """Which columns hold what (dataset_info.json ``columns``); unset keys use the format's default."""

    prompt: str | None = Field(None, description="alpaca: instruction column (default instruction).")
    query: str | None = Field(None, description="alpaca: input column (default input).")
    response: str | None = Field(None, description="alpaca: output column (default output).")
    history: str | None = Field(None, description="alpaca: earlier turns as [[user, assistant], ...].")
    messages: str | None = Field(None, description="sharegpt/openai: message list (default conversations/messages).")
    system: str | None = Field(None, description="System prompt column.")
    tools: str | None = Field(None, description="Tool descriptions column (JSON string or list).")
    chosen: str | None = Field(None, description="Preference data: the preferred answer.")
    rejected: str | None = Field(None, description="Preference data: the dispreferred answer.")
    kto_tag: str | None = Field(None, description="KTO data: boolean column, true = desirable.")
    text: str | None = Field(None, description="text format: the text column (default text).")
    images: str | None = Field(None, description="Image paths column (relative to media_dir), one <image> each.")


class DatasetTags(ConfigGroup):
    """sharegpt role and content keys (dataset_info.json ``tags``); unset keys use the format's default."""

    role_tag: str | None = None
    content_tag: str | None = None
    user_tag: str | None = None
    assistant_tag: str | None = None
    observation_tag: str | None = None
    function_tag: str | None = None
    system_tag: str | None = None


class DatasetAttr(ConfigGroup):
    """One dataset_info.json entry. Exactly one source: file_name (file or folder), hf_hub_url or ms_hub_url.

    ``formatting: text`` (one text column, for pre-training) and ``revision`` are kubetune additions.
    """

    file_name: str | None = Field(None, description="File or folder; relative names are under dataset_dir.")
    hf_hub_url: str | None = Field(None, description="Hugging Face dataset id (loaded online).")
    ms_hub_url: str | None = Field(None, description="ModelScope dataset id (loaded online).")
    formatting: Formatting = Field("alpaca", description="Row layout: alpaca, sharegpt, openai or text.")
    ranking: bool = Field(False, description="Rows are preference pairs (chosen/rejected).")
    subset: str | None = Field(None, description="Hub dataset configuration name.")
    split: str = Field("train", description="Split to read.")
    folder: str | None = Field(None, description="data_dir inside a hub repository.")
    num_samples: int | None = Field(None, ge=1, description="Take this many rows (with repetition if more).")
    revision: str | None = Field(None, description="Revision of a hub dataset.")
    columns: DatasetColumns | None = None
    tags: DatasetTags | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DatasetAttr:
        sources = [s for s in (self.file_name, self.hf_hub_url, self.ms_hub_url) if s]
        if len(sources) != 1:
            raise ValueError("set exactly one of file_name, hf_hub_url or ms_hub_url")
        return self


class DataConfig(ConfigGroup):
    """Which datasets, how they are mixed, split, formatted, tokenized and packed."""

    template: str | None = Field(None, description="Chat template name; unset uses the tokenizer's chat_template.")
    dataset: StrList | None = Field(None, description="Training dataset names (comma list).")
    eval_dataset: StrList | None = Field(None, description="Evaluation dataset names (comma list).")
    dataset_dir: str = Field("data", description="Folder holding dataset_info.json and relative dataset files.")
    dataset_info: dict[str, DatasetAttr] | None = Field(
        None, description="Registry entries given inline (kubetune); they win over dataset_dir/dataset_info.json."
    )
    media_dir: str | None = Field(None, description="Where relative image paths start (default dataset_dir).")
    image_max_pixels: int = Field(768 * 768, ge=1, description="Larger images are scaled down to this many pixels.")
    image_min_pixels: int = Field(32 * 32, ge=1, description="Smaller images are scaled up to this many pixels.")
    cutoff_len: int = Field(2048, ge=4, description="Maximum tokens per example.")
    train_on_prompt: bool = Field(False, description="Also compute the loss on prompt tokens.")
    mask_history: bool = Field(False, description="Train on the last assistant turn only.")
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = Field(
        "concat", description="concat, or interleave until the first (under) / last (over) dataset is exhausted."
    )
    interleave_probs: FloatList | None = Field(None, description="Sampling probability per dataset (comma list).")
    overwrite_cache: bool = Field(False, description="Re-tokenize even when a cached result exists.")
    preprocessing_batch_size: int = Field(1000, ge=1, description="Rows per tokenization batch.")
    preprocessing_num_workers: int | None = Field(None, ge=1, description="Processes used for tokenization.")
    max_samples: int | None = Field(None, ge=1, description="Use at most this many rows per dataset.")
    ignore_pad_token_for_loss: bool = Field(True, description="Padding never contributes to the loss.")
    val_size: float = Field(0.0, ge=0.0, description="Held-out evaluation rows: a fraction (< 1) or a count.")
    eval_on_each_dataset: bool = Field(False, description="Report evaluation per evaluation dataset.")
    packing: bool | None = Field(None, description="Concatenate and chunk examples; default on for stage pt.")
    neat_packing: bool = Field(False, description="Padding-free packing: packed examples never attend to each other.")
    padding_free: bool = Field(
        True, description="pt/sft on sdpa: one row of real tokens per micro-batch, attention per example (kubetune)."
    )
    tool_format: str | None = Field(None, description="Tool-call format override (default: the template's).")
    default_system: str | None = Field(None, description="Override the template's default system prompt.")
    enable_thinking: bool | None = Field(True, description="Reasoning templates: learn an empty thought block.")
    preserve_thinking: bool = Field(False, description="Keep the reasoning of earlier turns.")
    tokenized_path: str | None = Field(None, description="Load the tokenized dataset from here, or save it here.")
    data_shared_file_system: bool = Field(False, description="Datasets sit on a file system all nodes share.")
    tokenized_cache_dir: str | None = Field(
        None, description="Cache of tokenized datasets (kubetune); default ~/.cache/kubetune/tokenized."
    )
    bad_rows: Literal["fail", "skip"] = Field(
        "fail", description="fail on the first malformed row (file, row, field), or skip and count them (kubetune)."
    )

    @field_validator("template")
    @classmethod
    def _registered_template(cls, value: str | None) -> str | None:
        """Catch a misspelled template when the config is read, not after the model has loaded."""
        if value is not None and value not in template_names():
            raise ValueError(f"unknown template {value!r}; known: {', '.join(template_names())} "
                             "(or leave it unset to use the tokenizer's chat_template)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.train_on_prompt and self.mask_history:
            raise ValueError("train_on_prompt and mask_history cannot both be set")
        if self.eval_dataset and self.val_size:
            raise ValueError("set either val_size or eval_dataset, not both")
        if self.interleave_probs and self.dataset and len(self.interleave_probs) != len(self.dataset):
            raise ValueError(f"interleave_probs has {len(self.interleave_probs)} values for "
                             f"{len(self.dataset)} datasets")
        if self.interleave_probs and abs(sum(self.interleave_probs) - 1.0) > 1e-6:
            raise ValueError("interleave_probs must sum to 1")
        if self.image_min_pixels > self.image_max_pixels:
            raise ValueError(f"image_min_pixels {self.image_min_pixels} exceeds image_max_pixels "
                             f"{self.image_max_pixels}")
        if self.neat_packing and self.packing is False:
            raise ValueError("neat_packing needs packing (leave packing unset or true)")
        return self
