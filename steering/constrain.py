"""Constrained decoding on outlines-core: JSON schema, regex and choice, always complete in budget.

A constraint compiles (once, then from an LRU cache) to two automata over the same regex:

* an outlines-core `Index` over the model's vocabulary, whose mask says which tokens may come next;
* the same regex over single bytes, from which we compute, for each state, the fewest bytes that
  still complete a match (`distance`). Every token is at least one byte and every byte has a token
  (text or byte-fallback), so a state at distance `d` can always be completed in `d` tokens.

The processor of a row tracks both. While the tokens left after this one are at least the largest
distance of any state, every allowed token is safe. In the last stretch it keeps only tokens after
which the rest still fits: the few most likely allowed tokens that pass the check, plus the single
bytes that move towards completion. So an answer that runs out of `max_tokens` still parses and
validates (with `finish_reason: "length"`); a request whose `max_tokens` is below the shortest valid
answer is refused up front (`ConstraintError`). A stop token is allowed only once the match is
complete.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from steering.vocabulary import TokenVocabulary

if TYPE_CHECKING:
    import torch

__all__ = [
    "CompiledConstraint",
    "ConstraintCompiler",
    "ConstraintError",
    "ConstraintProcessor",
    "ConstraintSpec",
]

JSON_WHITESPACE = "[ ]?"  # at most one space between JSON tokens: no runs of newlines to the cap
MAX_PATTERN_CHARS = 20_000
# Building the index costs ~10 ms per automaton state over a 262k vocabulary (a string with
# maxLength 60 has ~600 states: ~8 s on a busy 2-core machine); refuse what would take minutes.
MAX_STATES = 2_000
_CANDIDATES = 8  # most likely tokens checked in the last stretch
_FEW = 4096  # a state allowing at most this many tokens keeps their indices, not a mask
_MASK_CACHE = 32  # states per compiled constraint: 32 x 262k vocabulary = 8 MiB at most
_META = set("\\.+*?()|[]{}^$#&-~")


class ConstraintError(ValueError):
    """The constraint is invalid, too large, or cannot fit in the tokens allowed."""


@dataclass(frozen=True)
class ConstraintSpec:
    kind: Literal["json_schema", "regex", "choice"]
    source: str  # canonical: the key of the compile cache

    @classmethod
    def json_schema(cls, schema: dict[str, Any]) -> ConstraintSpec:
        return cls("json_schema", json.dumps(schema, separators=(",", ":")))  # key order matters

    @classmethod
    def regex(cls, pattern: str) -> ConstraintSpec:
        return cls("regex", pattern)

    @classmethod
    def choice(cls, options: Sequence[str]) -> ConstraintSpec:
        if not options or not all(isinstance(o, str) and o for o in options):
            raise ConstraintError("choice needs at least one non-empty string")
        return cls("choice", json.dumps(list(options)))

    def pattern(self) -> str:
        if self.kind == "regex":
            return self.source
        if self.kind == "choice":
            return "|".join(_escape(o) for o in json.loads(self.source))
        from outlines_core.json_schema import build_regex_from_schema

        try:
            return str(build_regex_from_schema(self.source, JSON_WHITESPACE))
        except Exception as exc:  # outlines-core raises ValueError or its own errors
            raise ConstraintError(f"unsupported JSON schema: {exc}") from exc


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _META else c for c in text)


@dataclass(frozen=True)
class CompiledConstraint:
    spec: ConstraintSpec
    index: Any  # outlines_core.Index over the model's vocabulary
    byte_transitions: dict[int, dict[int, int]]  # byte automaton: state -> {byte: next state}
    distance: dict[int, int]  # byte state -> fewest bytes to a complete match
    byte_start: int
    compile_s: float
    masks: dict[int, torch.Tensor] = field(default_factory=dict, compare=False)  # state -> mask

    @property
    def shortest(self) -> int:
        return self.distance[self.byte_start]

    @property
    def longest_distance(self) -> int:
        return max(self.distance.values())


class ConstraintProcessor:
    """The per-row logits processor of one compiled constraint (fresh state per row)."""

    def __init__(
        self, compiled: CompiledConstraint, vocab: TokenVocabulary, max_tokens: int, *, greedy: bool = False
    ) -> None:
        import torch
        from outlines_core import Guide

        self._c = compiled
        self._vocab = vocab
        self._max_tokens = max_tokens
        self.greedy = greedy  # the row takes the best token: the last stretch checks only that one
        self._guide = Guide(compiled.index)
        self._byte_state = compiled.byte_start
        self._seen = 0
        self._words = torch.zeros((vocab.logits_size + 31) // 32, dtype=torch.int32)
        self._shifts = torch.arange(32, dtype=torch.int32)
        self.complete = compiled.shortest == 0
        self.broken = False  # a token the constraint forbids was chosen anyway: only stopping is left

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        while self._seen < len(generated):
            self._advance(generated[self._seen])
            self._seen += 1
        if self.broken:
            stops = list(self._vocab.stop_ids)
            kept = logits[stops].clone()
            logits.fill_(float("-inf"))
            logits[stops] = kept
            return logits
        logits = self._apply_mask(logits)
        left_after = self._max_tokens - len(generated) - 1
        if left_after < self._c.longest_distance:
            logits = self._keep_completable(logits, left_after)
        return logits

    def _apply_mask(self, logits: torch.Tensor) -> torch.Tensor:
        """Forbid what this state forbids. The mask is cached per state (a schema has a few hundred);
        a state that allows few tokens (JSON punctuation, keys) is applied by index, which is faster."""
        import torch

        state = int(self._guide.get_state())
        cached = self._c.masks.get(state)
        if cached is None:
            self._words.zero_()
            self._guide.write_mask_into(self._words.data_ptr(), self._words.numel(), 4)
            bits = ((self._words.unsqueeze(-1) >> self._shifts) & 1).view(-1)[: logits.shape[-1]]
            allowed = bits.bool()
            if self.complete:
                allowed[list(self._vocab.stop_ids)] = True
            count = int(allowed.sum())
            cached = allowed.nonzero().view(-1) if count <= _FEW else ~allowed
            if len(self._c.masks) < _MASK_CACHE:
                self._c.masks[state] = cached
        if cached.dtype == torch.bool:
            return logits.masked_fill_(cached, float("-inf"))
        kept = torch.full_like(logits, float("-inf"))
        kept[cached] = logits[cached]
        return kept

    def _advance(self, token: int) -> None:
        if token in self._vocab.stop_ids or self.broken:
            return
        data = self._vocab.token_bytes[token] if token < len(self._vocab.token_bytes) else None
        after = _walk(self._c.byte_transitions, self._byte_state, data) if data else -1
        if after < 0:  # another processor left nothing allowed and the sampler fell back
            self.broken = True
            return
        self._guide.advance(token, return_tokens=False)
        self._byte_state = after
        self.complete = self._c.distance.get(self._byte_state, -1) == 0

    def _keep_completable(self, logits: torch.Tensor, left_after: int) -> torch.Tensor:
        """Only tokens after which `left_after` tokens still complete the match."""
        import torch

        state, distance, transitions = self._byte_state, self._c.distance, self._c.byte_transitions

        def fits(token: int) -> bool:
            if token in self._vocab.stop_ids:
                return True
            data = self._vocab.token_bytes[token]
            after = _walk(transitions, state, data) if data else -1
            return distance.get(after, left_after + 1) <= left_after

        best = int(torch.argmax(logits))
        if self.greedy and torch.isfinite(logits[best]) and fits(best):
            return logits  # greedy picks `best`: nothing else needs checking
        keep = {t for t in torch.topk(logits, _CANDIDATES).indices.tolist() if fits(t)}
        keep = {t for t in keep if torch.isfinite(logits[t])}
        for byte, after in transitions.get(state, {}).items():
            token = self._vocab.single_byte.get(byte)
            if token is not None and distance.get(after, left_after + 1) <= left_after:
                keep.add(token)
        kept = torch.full_like(logits, float("-inf"))
        index = torch.tensor(sorted(keep), dtype=torch.long)
        kept[index] = torch.where(torch.isfinite(logits[index]), logits[index], logits.new_tensor(-1e4))
        return kept


def _walk(transitions: dict[int, dict[int, int]], state: int, data: bytes) -> int:
    for byte in data:
        state = transitions.get(state, {}).get(byte, -1)
        if state < 0:
            return -1
    return state


@dataclass
class CompilerStats:
    hits: int = 0
    misses: int = 0
    compile_s: deque[float] = field(default_factory=lambda: deque(maxlen=256))


class ConstraintCompiler:
    """Compiles constraints for one tokenizer and keeps the last `cache_size` of them. Thread-safe."""

    def __init__(self, vocab: TokenVocabulary, *, cache_size: int = 64) -> None:
        self.vocab = vocab
        self._cache_size = cache_size
        self._cache: OrderedDict[ConstraintSpec, CompiledConstraint] = OrderedDict()
        self._lock = threading.Lock()
        self._outlines_vocab: Any = None
        self._bytes_vocab: Any = None
        self.stats = CompilerStats()

    def compile(self, spec: ConstraintSpec) -> CompiledConstraint:
        """From the cache, or compiled outside the lock: a cold compile (0.5 s to seconds) does not
        hold up requests whose constraint is cached."""
        with self._lock:
            cached = self._cache.get(spec)
            if cached is not None:
                self._cache.move_to_end(spec)
                self.stats.hits += 1
                return cached
            vocabularies = self._vocabularies()
        compiled = self._compile(spec, *vocabularies)
        with self._lock:
            self.stats.misses += 1
            self.stats.compile_s.append(compiled.compile_s)
            self._cache[spec] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def processor(
        self, spec: ConstraintSpec, max_tokens: int, *, greedy: bool = False
    ) -> ConstraintProcessor:
        compiled = self.compile(spec)
        if compiled.shortest > max_tokens:
            raise ConstraintError(
                f"the shortest answer that satisfies this constraint takes up to {compiled.shortest} "
                f"tokens; max_tokens is {max_tokens}"
            )
        return ConstraintProcessor(compiled, self.vocab, max_tokens, greedy=greedy)

    def warm(self) -> None:
        """Build the vocabularies now (about a second and a half for 262k tokens), not on first use."""
        with self._lock:
            self._vocabularies()

    def _vocabularies(self) -> tuple[Any, Any]:
        if self._outlines_vocab is None:
            from outlines_core import Vocabulary

            eos = min(self.vocab.stop_ids) if self.vocab.stop_ids else len(self.vocab.token_bytes)
            self._outlines_vocab = self.vocab.outlines(eos)
            self._bytes_vocab = Vocabulary(256, {bytes([b]): [b] for b in range(256)})
        return self._outlines_vocab, self._bytes_vocab

    def _compile(self, spec: ConstraintSpec, tokens: Any, single_bytes: Any) -> CompiledConstraint:
        from outlines_core import Index

        started = time.perf_counter()
        pattern = spec.pattern()
        if len(pattern) > MAX_PATTERN_CHARS:
            raise ConstraintError(f"the constraint's regex is longer than {MAX_PATTERN_CHARS} characters")
        try:
            byte_index = Index(pattern, single_bytes)  # cheap: 256 tokens
        except Exception as exc:
            raise ConstraintError(f"cannot compile the constraint: {exc}") from exc
        states = len(byte_index.get_transitions())
        if states > MAX_STATES:
            raise ConstraintError(
                f"the constraint is too complex ({states} automaton states, {MAX_STATES} at most): "
                "lower maxLength / maxItems bounds, or leave strings unbounded (max_tokens bounds them)"
            )
        try:
            index = Index(pattern, tokens)
        except Exception as exc:
            raise ConstraintError(f"cannot compile the constraint: {exc}") from exc
        transitions = {
            state: {t: s for t, s in moves.items() if t < 256}
            for state, moves in byte_index.get_transitions().items()
        }
        distance = _distances(transitions, set(byte_index.get_final_states()))
        start = byte_index.get_initial_state()
        if start not in distance:
            raise ConstraintError("no text satisfies this constraint")
        return CompiledConstraint(spec, index, transitions, distance, start, time.perf_counter() - started)


def _distances(transitions: dict[int, dict[int, int]], finals: set[int]) -> dict[int, int]:
    """Fewest bytes from each state to a final state (breadth-first over reversed edges)."""
    reverse: dict[int, set[int]] = {}
    for state, moves in transitions.items():
        for after in moves.values():
            reverse.setdefault(after, set()).add(state)
    distance = dict.fromkeys(finals, 0)
    queue = deque(finals)
    while queue:
        state = queue.popleft()
        for before in reverse.get(state, ()):
            if before not in distance:
                distance[before] = distance[state] + 1
                queue.append(before)
    return distance
