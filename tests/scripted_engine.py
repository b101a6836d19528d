"""An engine-protocol implementation whose "model" is a script: prompt ids -> the token ids to emit.

Used only where a tiny random model cannot be made to produce a behaviour cheaply (tool calls): everything above
the engine protocol (router, OpenAI semantics, tool-call parsing, streaming) and the token -> text path (real
tokenizer, IncrementalDecoder, stop tokens and strings) is the production code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from transformers import PreTrainedTokenizerBase

from kubetune.serve.engine import Delta, GenerationRequest
from kubetune.serve.engine.textstream import IncrementalDecoder, SequenceText, StopStringFilter


class ScriptedEngine:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, respond: Callable[[list[int]], list[int]],
                 stop_ids: frozenset[int], max_model_len: int = 4096):
        self.tokenizer = tokenizer
        self.respond = respond
        self.stop_ids = stop_ids
        self.adapters: tuple[str, ...] = ()
        self.max_model_len = max_model_len
        self.vocab_size = len(tokenizer)
        added = tokenizer.added_tokens_decoder
        self.special = frozenset(tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        script = self.respond(request.prompt_ids)
        for index in range(request.params.n):
            seq = SequenceText(IncrementalDecoder(self.tokenizer, self.special, request.keep_token_ids),
                               StopStringFilter(request.params.stop), self.stop_ids, request.params.max_tokens)
            for token in script:
                text, finish = seq.step(token)
                if text or finish:
                    yield Delta(index, text, finish, seq.generated)
                if finish:
                    break

    def close(self) -> None:
        pass
