"""Token ids → text deltas, with stop strings honoured: pure helpers shared by every in-process engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase


def find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Index of the earliest stop string in ``text``, or None."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of ``text`` could be the start of a stop string (not safe to emit yet)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


@dataclass
class IncrementalDecoder:
    """Decode a growing list of token ids into text without re-emitting or splitting characters.

    Each step decodes only from ``prefix`` (a few tokens of context, so tokenizers that merge leading spaces
    decode the same way as the whole text would). Special tokens are dropped except ``keep`` (tool-call
    markers). A trailing U+FFFD means a multi-byte character is incomplete, so that text waits for the next token.
    """

    tokenizer: PreTrainedTokenizerBase
    special: frozenset[int]
    keep: frozenset[int] = frozenset()
    ids: list[int] = field(default_factory=list)
    prefix: int = 0
    read: int = 0

    def _decode(self, ids: list[int]) -> str:
        # one sequence decodes to one str (decode is typed str | list[str] for batches)
        return str(self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))

    def add(self, token_id: int) -> str:
        """Append a token; return the text it completes ("" while a character is incomplete)."""
        if token_id in self.special and token_id not in self.keep:
            return ""
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before):]


@dataclass
class StopStringFilter:
    """Hold back text that may begin a stop string; cut the output at the first full stop string.

    Everything that could start a stop string stays in ``pending``, so a match never spans emitted text.
    """

    stops: tuple[str, ...]
    pending: str = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Add new text; return (text safe to emit now, whether a stop string was reached)."""
        self.pending += text
        hit = find_stop(self.pending, self.stops)
        if hit is not None:
            out, self.pending = self.pending[:hit], ""
            return out, True
        keep = held_back(self.pending, self.stops)
        out, self.pending = self.pending[:len(self.pending) - keep], self.pending[len(self.pending) - keep:]
        return out, False

    def flush(self) -> str:
        """Text still held back when generation ends for another reason."""
        out, self.pending = self.pending, ""
        return out


@dataclass
class SequenceText:
    """One sequence's token → text bookkeeping: stop tokens, stop strings and the token budget.

    Every in-process engine feeds sampled tokens through this, so stopping behaves the same whatever generates.
    """

    decoder: IncrementalDecoder
    stops: StopStringFilter
    stop_ids: frozenset[int]
    max_tokens: int
    generated: int = 0

    def step(self, token: int, context_full: bool = False) -> tuple[str, str | None]:
        """Take one sampled token; return (text to emit, finish_reason or None).

        A stop token ends the sequence without adding text; a stop string ends it with the text cut before the
        stop; reaching ``max_tokens`` (or ``context_full``) ends it with reason "length".
        """
        self.generated += 1
        if token in self.stop_ids:
            return self.stops.flush(), "stop"
        text, hit = self.stops.feed(self.decoder.add(token))
        if hit:
            return text, "stop"
        if self.generated >= self.max_tokens or context_full:
            return text + self.stops.flush(), "length"
        return text, None
