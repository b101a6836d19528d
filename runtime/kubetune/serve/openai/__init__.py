"""OpenAI semantics: request validation, prompts, sampling parameters, tool calls, responses and stream chunks."""
