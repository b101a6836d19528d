"""Chat template names a config may use: the families of ``kubetune.data.templates.registry`` and their aliases.

The config layer checks a ``template`` when the config is read (not after the model has loaded) without
importing the data layer; the registry takes its aliases from here and a test keeps the two lists equal.
"""

from __future__ import annotations

FAMILIES: tuple[str, ...] = (
    "default", "empty", "llama3", "llama3_1", "llama2", "mistral", "ministral", "mistral_small", "qwen", "qwen3",
    "qwen3_nothink", "chatml", "gemma", "phi", "glm4", "chatglm3", "deepseek3", "deepseekr1", "deepseek", "qwen2_vl",
    "llava",
)
ALIASES = {"qwen2": "qwen", "qwen2_5": "qwen", "phi3": "phi", "phi4_mini": "phi", "llama3_2": "llama3_1",
           "llama3_3": "llama3_1", "deepseekv3": "deepseek3", "yi": "chatml", "gemma2": "gemma", "gemma3": "gemma",
           "mistral_nemo": "ministral", "mistral_small3": "mistral_small", "qwen2_5_vl": "qwen2_vl"}


def template_names() -> list[str]:
    """Every name a config may give as ``template`` (aliases included), sorted."""
    return sorted([*FAMILIES, *ALIASES])
