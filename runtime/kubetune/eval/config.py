"""Typed configuration of `kubetune eval`, with LLaMA-Factory's evaluation key names.

LLaMA-Factory's evaluation YAML (``model_name_or_path``, ``adapter_name_or_path``, ``template``, ``task``,
``task_dir``, ``n_shot``, ``lang``, ``save_dir``, ``batch_size``, ``seed``) validates into :class:`EvalConfig`
unchanged. Torch-free.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kubetune.config.base import StrList

# Keys of an LLaMA-Factory evaluation YAML that change nothing here (finetuning_type is read off the adapter).
IGNORED_KEYS = frozenset({"finetuning_type", "stage", "download_mode", "use_fast_tokenizer", "flash_attn",
                          "low_cpu_mem_usage", "cache_dir", "model_revision"})


class EvalConfig(BaseModel):
    """What `kubetune eval` reads; paths are local."""

    model_config = ConfigDict(extra="forbid")

    model_name_or_path: str = Field(description="Model directory (a base model or a merged export).")
    adapter_name_or_path: StrList = Field(default_factory=list,
                                          description="LoRA adapters applied to the model before scoring.")
    template: str | None = Field(None, description="Chat template name; unset = the tokenizer's chat_template "
                                 "(`empty`: the prompt is the plain text).")
    trust_remote_code: bool = False
    infer_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    task: str = Field(description="<benchmark>_<split>, e.g. mmlu_test: task_dir/<benchmark>/ scored on <split>.")
    task_dir: str = Field("evaluation", description="Folder holding one folder per benchmark.")
    batch_size: int = Field(4, ge=1, description="Questions per forward pass.")
    seed: int = Field(42, description="Seed of the few-shot example choice.")
    lang: Literal["en", "zh"] = Field("en", description="Language of the prompt's instructions.")
    n_shot: int = Field(5, ge=0, description="Solved examples from the dev split put before each question.")
    save_dir: str | None = Field(None, description="Write results.json and results.log here (must not exist).")
    max_subjects: int | None = Field(None, ge=1, description="Score only the first N subjects (a quick check).")

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in IGNORED_KEYS}
        return data

    @model_validator(mode="after")
    def _task_has_split(self) -> EvalConfig:
        name, sep, split = self.task.rpartition("_")
        if not sep or not name or not split:
            raise ValueError(f"task {self.task!r}: expected <benchmark>_<split>, e.g. mmlu_test")
        return self

    @property
    def benchmark(self) -> str:
        return self.task.rpartition("_")[0]

    @property
    def split(self) -> str:
        return self.task.rpartition("_")[2]
