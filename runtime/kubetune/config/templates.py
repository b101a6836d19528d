"""Chat template names a config may use: the families of ``kubetune.data.templates.registry`` and their aliases.

The config layer checks a ``template`` when the config is read (not after the model has loaded) without
importing the data layer; the registry takes its aliases from here and a test keeps the two lists equal.
"""

from __future__ import annotations

FAMILIES: tuple[str, ...] = (
    "default", "empty", "llama3", "llama2", "mistral", "qwen", "qwen3", "qwen3_nothink", "chatml", "gemma", "phi",
    "glm4", "chatglm3", "deepseek3", "deepseek", "qwen2_vl", "llava",
)
ALIASES = {"qwen2": "qwen", "qwen2_5": "qwen", "phi3": "phi", "phi4_mini": "phi", "llama3_1": "llama3",
           "deepseekv3": "deepseek3", "yi": "chatml",
           "qwen2_5_vl": "qwen2_vl"}


def template_names() -> list[str]:
    """Every name a config may give as ``template`` (aliases included), sorted."""
    return sorted([*FAMILIES, *ALIASES])
