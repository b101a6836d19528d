"""Typed configuration of `kubetune eval`, with LLaMA-Factory's evaluation key names.

LLaMA-Factory's evaluation YAML (``model_name_or_path``, ``adapter_name_or_path``, ``template``, ``task``,
``task_dir``, ``n_shot``, ``lang``, ``save_dir``, ``batch_size``, ``seed``) validates into :class:`EvalConfig`
unchanged. Torch-free.
"""

from __future__ import annotations

from pathlib import Path
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
    task_type: Literal["choice", "generation", "harness"] = Field(
        "choice", description="choice: multiple-choice benchmark (task, task_dir); generation: greedy answers to "
        "a jsonl of alpaca rows (dataset) scored by exact match and word F1; harness: lm-evaluation-harness tasks "
        "(tasks, include_path) on the model directory or an OpenAI-compatible endpoint (base_url).")
    task: str | None = Field(None, description="choice: <benchmark>_<split>, e.g. mmlu_test: task_dir/<benchmark>/ "
                             "scored on <split>. generation: the name in results (default: the dataset's file stem).")
    task_dir: str = Field("evaluation", description="Folder holding one folder per benchmark.")
    batch_size: int = Field(4, ge=1, description="Questions per forward pass.")
    seed: int = Field(42, description="Seed of the few-shot example choice.")
    lang: Literal["en", "zh"] = Field("en", description="Language of the prompt's instructions.")
    n_shot: int = Field(5, ge=0, description="Solved examples from the dev split put before each question.")
    save_dir: str | None = Field(None, description="Write results.json and results.log here (must not exist).")
    max_subjects: int | None = Field(None, ge=1, description="Score only the first N subjects (a quick check).")
    # generation
    dataset: str | None = Field(None, description="generation: jsonl of {instruction, input, output} rows.")
    max_new_tokens: int = Field(64, ge=1, description="generation: most tokens generated per answer.")
    # harness
    tasks: StrList = Field(default_factory=list, description="harness: lm-evaluation-harness task names.")
    include_path: str | None = Field(None, description="harness: folder of task YAML files (local datasets).")
    num_fewshot: int | None = Field(None, ge=0, description="harness: few-shot examples (default: the task's).")
    limit: int | None = Field(None, ge=1, description="harness: score only the first N documents of each task.")
    base_url: str | None = Field(None, description="harness: an OpenAI-compatible endpoint's /v1/completions URL "
                                 "scored instead of loading the model; model_name_or_path is then its tokenizer.")
    served_model_name: str | None = Field(None, description="harness: the model name the endpoint serves.")

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in IGNORED_KEYS}
        return data

    @model_validator(mode="after")
    def _task_fits_type(self) -> EvalConfig:
        if self.task_type == "generation":
            if not self.dataset:
                raise ValueError("task_type generation needs dataset: a jsonl of {instruction, input, output} rows")
            if self.task is None:
                self.task = Path(self.dataset).stem
            return self
        if self.task_type == "harness":
            if not self.tasks:
                raise ValueError("task_type harness needs tasks: lm-evaluation-harness task names")
            if self.base_url and not self.served_model_name:
                raise ValueError("base_url needs served_model_name: the model name the endpoint serves")
            self.task = self.task or ",".join(self.tasks)
            return self
        if self.task is None:
            raise ValueError("task: required, <benchmark>_<split>, e.g. mmlu_test")
        name, sep, split = self.task.rpartition("_")
        if not sep or not name or not split:
            raise ValueError(f"task {self.task!r}: expected <benchmark>_<split>, e.g. mmlu_test")
        return self

    @property
    def benchmark(self) -> str:
        return (self.task or "").rpartition("_")[0]

    @property
    def split(self) -> str:
        return (self.task or "").rpartition("_")[2]
