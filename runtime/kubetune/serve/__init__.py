"""`kubetune serve`: an OpenAI-compatible API in three layers.

``router`` (HTTP only: routes, auth, error shapes, metrics) → ``openai`` (OpenAI semantics: prompts, sampling
parameters, stop strings, tool calls, responses and stream chunks) → ``engine`` (the engine protocol: token ids
in, text deltas out; the ``hf`` engine in-process, the ``vllm`` engine as vLLM's own server).
"""
