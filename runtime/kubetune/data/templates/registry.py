"""The template table: one row per chat family, each with its Jinja equivalent in ``jinja/<name>.jinja``.

Rows are data; the single rendering algorithm lives in ``template.py``. Aliases map other common names onto a row
(:mod:`kubetune.config.templates`, which also lists the row names so configs are checked without this module).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from kubetune.config.templates import ALIASES, template_names
from kubetune.data.templates.template import Template

JINJA_DIR = Path(__file__).parent / "jinja"

CHATML: dict[str, Any] = dict(
    system="<|im_start|>system\n{content}<|im_end|>\n",
    user="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{content}<|im_end|>\n",
    stop_words=("<|im_end|>",),
)
QWEN_TOOLS: dict[str, Any] = dict(
    observation="<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
    tool_format="qwen",
)
LLAMA3: dict[str, Any] = dict(
    prefix="<|begin_of_text|>",
    user="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    assistant="{content}<|eot_id|>",
    observation="<|start_header_id|>ipython<|end_header_id|>\n\n{content}<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n",
    stop_words=("<|eot_id|>", "<|eom_id|>"),
)
# Meta's Llama 3.1/3.2/3.3 templates always open with a system header holding the knowledge cut-off and a date;
# kubetune pins the date Meta's 3.1 template defaults to, so a training run and its served model agree.
LLAMA3_1_SYSTEM = ("<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
                   "Today Date: 26 Jul 2024\n\n{content}<|eot_id|>")
DEEPSEEK3: dict[str, Any] = dict(
    prefix="<｜begin▁of▁sentence｜>", system="{content}", user="<｜User｜>{content}<｜Assistant｜>",
    assistant="{content}<｜end▁of▁sentence｜>", stop_words=("<｜end▁of▁sentence｜>",),
)
MISTRAL_TEKKEN: dict[str, Any] = dict(prefix="<s>", user="[INST]{content}[/INST]", assistant="{content}</s>",
                                      stop_words=("</s>",))
GLM: dict[str, Any] = dict(
    prefix="[gMASK]<sop>",
    efficient_eos=True,
    stop_words=("<|user|>", "<|observation|>"),
)

TABLE: tuple[Template, ...] = (
    Template("default", system="System: {content}\n", user="Human: {content}\nAssistant:",
             assistant=" {content}{eos}\n"),
    Template("empty", system="{content}", user="{content}", assistant="{content}"),
    Template("llama3", **LLAMA3, system="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
             tool_format="llama3"),
    Template("llama3_1", **LLAMA3, system=LLAMA3_1_SYSTEM, system_always=True),
    Template("llama2", first_user="<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{content} [/INST]",
             user="<s>[INST] {content} [/INST]", assistant=" {content} </s>", stop_words=("</s>",)),
    Template("mistral", prefix="<s>", first_user="[INST] {system}\n\n{content}[/INST]",
             user="[INST] {content}[/INST]", assistant=" {content}</s>",
             observation="[TOOL_RESULTS] {content}[/TOOL_RESULTS]", stop_words=("</s>",), tool_format="mistral"),
    Template("ministral", **MISTRAL_TEKKEN, first_user="[INST]{system}\n\n{content}[/INST]", system_last=True),
    Template("mistral_small", **MISTRAL_TEKKEN, system="[SYSTEM_PROMPT]{content}[/SYSTEM_PROMPT]"),
    Template("qwen", **CHATML, **QWEN_TOOLS,
             default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
    Template("qwen3", **CHATML, **QWEN_TOOLS, thinking=True),
    Template("qwen3_nothink", **CHATML, **QWEN_TOOLS),
    Template("chatml", **CHATML),
    Template("qwen2_vl", **CHATML, default_system="You are a helpful assistant.", mm_plugin="qwen2_vl"),
    Template("llava", system="{content}", user="USER: {content} ASSISTANT:", assistant="{content}{eos}",
             default_system="A chat between a curious user and an artificial intelligence assistant. "
                            "The assistant gives helpful, detailed, and polite answers to the user's questions.",
             mm_plugin="llava"),
    Template("gemma", prefix="<bos>",
             first_user="<start_of_turn>user\n{system}\n\n{content}<end_of_turn>\n<start_of_turn>model\n",
             user="<start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n",
             assistant="{content}<end_of_turn>\n", stop_words=("<end_of_turn>",)),
    Template("phi", system="<|system|>\n{content}<|end|>\n", user="<|user|>\n{content}<|end|>\n<|assistant|>\n",
             assistant="{content}<|end|>\n", stop_words=("<|end|>",)),
    Template("glm4", **GLM, system="<|system|>\n{content}", user="<|user|>\n{content}<|assistant|>",
             assistant="\n{content}", observation="<|observation|>\n{content}<|assistant|>", tool_format="glm4"),
    Template("chatglm3", **GLM, system="<|system|>\n {content}", user="<|user|>\n {content}<|assistant|>",
             assistant="\n {content}"),
    Template("deepseek3", **DEEPSEEK3),
    Template("deepseekr1", **DEEPSEEK3, thinking=True),
    Template("deepseek", prefix="<｜begin▁of▁sentence｜>", system="{content}\n\n",
             user="User: {content}\n\nAssistant:", assistant=" {content}<｜end▁of▁sentence｜>",
             stop_words=("<｜end▁of▁sentence｜>",)),
)


@cache
def _templates() -> dict[str, Template]:
    return {t.name: replace(t, jinja=(JINJA_DIR / f"{t.name}.jinja").read_text(encoding="utf-8")) for t in TABLE}


def get_template(name: str) -> Template:
    """The registered template called ``name`` (or an alias). Raises KeyError naming the known templates."""
    table = _templates()
    key = ALIASES.get(name, name)
    if key not in table:
        raise KeyError(f"unknown template {name!r}; known templates: {', '.join(template_names())}")
    return table[key]
