"""Rewards for conversations: a kubetune reward model (stage rm output), any sequence-classification reward model,
or an HTTP scorer. PPO scores its rollouts through :class:`RewardScorer`; :func:`score` is the public entry point.

A conversation is ``{"messages": [...], "system": str | None}`` whose messages end with the assistant answer
being judged. Model scorers render it with the template the reward model was trained with (``template`` in its
``kubetune-config.yaml``, else the caller's) and read the score head at the last token.

HTTP scorers (``reward_model_type: api``) receive ``POST <url>`` with ``{"messages": [...]}`` (a leading system
message when there is one) and answer ``{"reward": <float>}``; ``{"score": x}`` and LLaMA-Factory's
``{"scores": [x]}`` are accepted too.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any, Protocol

import torch
import yaml

from kubetune.data.preference import encode_turns
from kubetune.data.templates import resolve_template
from kubetune.train.stages import StageConfigError

Conversation = dict[str, Any]


class RewardScorer(Protocol):
    """Anything that scores a batch of conversations (higher is better)."""

    def score(self, conversations: list[Conversation]) -> list[float]: ...


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_reward_model(path: str | Path, base_model: str | None = None, dtype: torch.dtype = torch.float32) -> Any:
    """A frozen ``*ForSequenceClassification`` reward model (one label) from a kubetune rm output or checkpoint.

    An adapter directory (lora rm output) is applied to ``base_model``, else to the base its adapter_config names,
    and merged. Raises StageConfigError when ``path`` holds no reward head.
    """
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = str(path)
    if is_adapter(path):
        base = base_model or json.loads((Path(path) / "adapter_config.json").read_text())["base_model_name_or_path"]
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
    else:
        archs = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
        if not any(a.endswith("ForSequenceClassification") for a in archs):
            raise StageConfigError(f"reward_model: {path} is not a reward model (expected a kubetune rm output or a "
                                   f"*ForSequenceClassification checkpoint; its architectures are {archs})")
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    model.requires_grad_(False)
    return model.eval()


def trained_template(path: str | Path) -> str | None:
    """The template recorded in a kubetune output's kubetune-config.yaml, if any."""
    config = Path(path) / "kubetune-config.yaml"
    if not config.is_file():
        return None
    return (yaml.safe_load(config.read_text()) or {}).get("template")


class ModelScorer:
    """Scores conversations with a sequence-classification reward model (right padding, one batch per call)."""

    def __init__(self, model: Any, tokenizer: Any, template: Any, max_length: int = 2048) -> None:
        self.model, self.tokenizer, self.template, self.max_length = model, tokenizer, template, max_length
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.model.config.pad_token_id = pad
        self.pad = pad

    def encode(self, conversation: Conversation) -> list[int]:
        messages = conversation["messages"]
        row = {"prompt": messages[:-1], "system": conversation.get("system"), "tools": None}
        prompt, answer = encode_turns(row, messages[-1], self.template, self.tokenizer,
                                      bool(getattr(self.template, "efficient_eos", False)))
        return (prompt + answer)[-self.max_length:]

    @torch.no_grad()
    def score(self, conversations: list[Conversation]) -> list[float]:
        ids = [self.encode(c) for c in conversations]
        longest = max(len(i) for i in ids)
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([i + [self.pad] * (longest - len(i)) for i in ids], device=device)
        mask = torch.tensor([[1] * len(i) + [0] * (longest - len(i)) for i in ids], device=device)
        logits = self.model(input_ids=input_ids, attention_mask=mask).logits
        return [float(x) for x in logits[:, 0].float().cpu()]


class HttpScorer:
    """Scores conversations by POSTing each to ``url`` (see the module docstring for the protocol)."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url, self.timeout_s = url, timeout_s

    def score_one(self, conversation: Conversation) -> float:
        messages = list(conversation["messages"])
        if conversation.get("system"):
            messages = [{"role": "system", "content": conversation["system"]}, *messages]
        request = urllib.request.Request(self.url, data=json.dumps({"messages": messages}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            body = json.loads(response.read())
        for key in ("reward", "score"):
            if isinstance(body.get(key), int | float):
                return float(body[key])
        if isinstance(body.get("scores"), list) and body["scores"]:
            return float(body["scores"][0])
        raise ValueError(f"reward_model {self.url} answered {str(body)[:200]!r}; expected {{\"reward\": <number>}}")

    def score(self, conversations: list[Conversation]) -> list[float]:
        return [self.score_one(c) for c in conversations]


def model_scorer(path: str | Path, base_model: str | None = None, template: str | None = None,
                 max_length: int = 2048, dtype: torch.dtype = torch.float32) -> ModelScorer:
    """A ModelScorer for a reward model directory, with its own tokenizer and template where it recorded one."""
    from transformers import AutoTokenizer

    model = load_reward_model(path, base_model, dtype)
    tokenizer_dir = path if (Path(path) / "tokenizer_config.json").is_file() else (base_model or path)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    chosen = resolve_template(trained_template(path) or template, tokenizer)
    return ModelScorer(model, tokenizer, chosen, max_length)


def score(model_dir: str | Path, conversations: list[Conversation], *, base_model: str | None = None,
          template: str | None = None) -> list[float]:
    """Rewards of ``conversations`` under the reward model in ``model_dir`` (a kubetune rm output)."""
    return model_scorer(model_dir, base_model, template).score(conversations)
