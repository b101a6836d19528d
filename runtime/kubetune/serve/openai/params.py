"""Request fields -> engine SamplingParams, with defaults from the serve config and checks against the context."""

from __future__ import annotations

from kubetune.config.serve_args import ServeConfig
from kubetune.serve.engine import SamplingParams
from kubetune.serve.errors import bad_request
from kubetune.serve.openai.protocol import SamplingFields


def _temperature(req: SamplingFields, config: ServeConfig) -> float:
    if req.temperature is not None:
        return req.temperature
    do_sample = req.do_sample if req.do_sample is not None else config.do_sample
    if do_sample is False:
        return 0.0
    return config.temperature if config.temperature is not None else 1.0


def _max_tokens(requested: int | None, config: ServeConfig, prompt_len: int, max_model_len: int,
                prompt_param: str) -> int:
    room = max_model_len - prompt_len
    if room <= 0:
        raise bad_request(f"the prompt is {prompt_len} tokens and this model's context is {max_model_len}; "
                          f"shorten the {prompt_param}", param=prompt_param, code="context_length_exceeded")
    if requested is not None:
        if requested > room:
            raise bad_request(f"max_tokens {requested} + prompt {prompt_len} tokens exceeds the context of "
                              f"{max_model_len}; ask for at most {room}", param="max_tokens")
        return requested
    return min(config.max_new_tokens or room, room)


def sampling_params(req: SamplingFields, config: ServeConfig, *, prompt_len: int, max_model_len: int,
                    max_tokens: int | None, logprobs: int | None, prompt_param: str = "messages") -> SamplingParams:
    """Validated SamplingParams; raises OpenAIError 400 naming the field at fault."""
    if req.logit_bias:
        raise bad_request("logit_bias is not supported by this server", param="logit_bias")
    stops = req.stop_list()
    if len(stops) > 16:
        raise bad_request("at most 16 stop sequences", param="stop")
    top_k = req.top_k if req.top_k is not None else (config.top_k or 0)
    return SamplingParams(
        max_tokens=_max_tokens(max_tokens, config, prompt_len, max_model_len, prompt_param),
        temperature=_temperature(req, config),
        top_p=req.top_p if req.top_p is not None else (config.top_p or 1.0),
        top_k=max(top_k, 0),
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        seed=req.seed,
        stop=stops,
        logprobs=logprobs,
        n=req.n,
    )
