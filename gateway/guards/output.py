"""The output guard, on a whole answer (`guard_completion`) or on a stream (`StreamGuard`).

A whole answer is checked choice by choice: a choice the policy blocks is replaced by its refusal
(`finish_reason: "content_filter"`), one it redacts is redacted.

On a stream, text reaches the client only after the guard has seen it.

Per choice, chunks are held back. At each release point (a sentence end, when `sentence_release` is on, or
when more than `holdback_tokens` content chunks wait) the guard checks everything the client has seen plus
everything held; only if it passes are chunks released: up to the last sentence end, or the oldest ones
beyond the window. A violation ends that choice with a refusal chunk (`finish_reason: "content_filter"`)
and nothing held is released, so a violating sentence never reaches the client. Chunks without content
(the role chunk, tool-call deltas) travel with their neighbours, and go out at once when nothing is held.
A span to redact that reaches the end of the text checked holds everything back until a later check,
when what follows has settled it: the stream then redacts what the whole answer would have.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from gateway.policy.model import StreamPolicy
from gateway.policy.verdict import Action, Verdict
from gateway.protocol import ChatCompletion, ChatCompletionChunk, ChunkChoice
from gateway.redaction import redact_spans, redact_text, verdict_spans

_SENTENCE_END = re.compile(r"""[.!?。！？…]["')\]]*(?=\s|$)|\n""")

CheckText = Callable[[str], Awaitable[Verdict]]
# (the held chunk the refusal replaces, if any; the choice's index; the verdict; whether text went out)
RefusalChunk = Callable[[ChatCompletionChunk | None, int, Verdict, bool], ChatCompletionChunk]


async def guard_completion(completion: ChatCompletion, check: CheckText) -> tuple[Verdict | None, str]:
    """Check each choice's text, and rewrite the choices the policy blocks or redacts; the strictest
    verdict and the answer's text as the client gets it (choices joined by newlines)."""
    strictest: Verdict | None = None
    texts: list[str] = []
    for choice in completion["choices"]:
        message = choice.get("message")
        content = message.get("content") if message else None
        if not message or not isinstance(content, str) or not content:
            continue
        verdict = await check(content)
        if verdict.action.blocks:
            choice["message"] = {**message, "content": verdict.message, "tool_calls": None}
            choice["finish_reason"] = "content_filter"
        elif verdict.action is Action.REDACT:
            choice["message"] = {**message, "content": redact_text(content, verdict)}
        if strictest is None or verdict.action.severity > strictest.action.severity:
            strictest = verdict
        texts.append(choice["message"]["content"] or "")
    return strictest, "\n".join(texts)


@dataclass
class _Held:
    chunk: ChatCompletionChunk
    text: str
    arrived: float


@dataclass
class _Choice:
    released: str = ""
    held: list[_Held] = field(default_factory=list)
    stopped: bool = False

    @property
    def held_text(self) -> str:
        return "".join(h.text for h in self.held)

    @property
    def held_tokens(self) -> int:
        return sum(1 for h in self.held if h.text)


@dataclass
class StreamStats:
    checks: int = 0
    check_ms: float = 0.0
    holdback_ms_total: float = 0.0
    released_chunks: int = 0
    first_content_at: float | None = None
    verdict: Verdict | None = None

    @property
    def holdback_ms(self) -> float | None:
        if not self.released_chunks:
            return None
        return self.holdback_ms_total / self.released_chunks


class StreamGuard:
    def __init__(self, check: CheckText, policy: StreamPolicy, refusal: RefusalChunk) -> None:
        self._check = check
        self._policy = policy
        self._refusal = refusal
        self._choices: dict[int, _Choice] = {}
        self.stats = StreamStats()

    def text(self, index: int = 0) -> str:
        choice = self._choices.get(index)
        return choice.released if choice else ""

    async def run(self, events: AsyncIterator[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
        trailing: list[ChatCompletionChunk] = []  # usage chunks go out after every choice has ended
        async for event in events:
            choices = event.get("choices") or []
            if not choices:
                trailing.append(event)
                continue
            for choice in choices:
                single = event if len(choices) == 1 else {**event, "choices": [choice]}
                async for out in self._feed(single, choice):
                    yield out
        for index, state in self._choices.items():
            if state.held and not state.stopped:  # the stream ended without a finish_reason
                async for out in self._settle(index, state, final=True):
                    yield out
        for event in trailing:
            yield event

    async def _feed(
        self, chunk: ChatCompletionChunk, choice: ChunkChoice
    ) -> AsyncIterator[ChatCompletionChunk]:
        index = int(choice.get("index", 0))
        state = self._choices.setdefault(index, _Choice())
        if state.stopped:
            return
        text = (choice.get("delta") or {}).get("content") or ""
        if not text and not state.held and choice.get("finish_reason") is None:
            yield chunk  # nothing held ahead of it: a role or tool-call chunk goes out at once
            return
        state.held.append(_Held(chunk, text, time.perf_counter()))
        final = choice.get("finish_reason") is not None
        if final or self._due(state):
            async for out in self._settle(index, state, final=final):
                yield out

    def _due(self, state: _Choice) -> bool:
        if state.held_tokens > self._policy.holdback_tokens:
            return True
        return self._policy.sentence_release and bool(_SENTENCE_END.search(state.held_text))

    async def _settle(self, index: int, state: _Choice, *, final: bool) -> AsyncIterator[ChatCompletionChunk]:
        held_text = state.held_text
        started = time.perf_counter()
        verdict = await self._check(state.released + held_text)
        self.stats.checks += 1
        self.stats.check_ms += (time.perf_counter() - started) * 1000
        if verdict.action.blocks:
            template = state.held[0].chunk if state.held else None
            state.stopped = True
            state.held.clear()
            self.stats.verdict = verdict
            yield self._refusal(template, index, verdict, bool(state.released))
            return
        if verdict.action is Action.REDACT:
            if not final and _open_span(state.released + held_text, verdict):
                return  # the next tokens may still change it (a longer number): decide when it ends
            self._redact_held(state, verdict)
            self.stats.verdict = verdict
        count = len(state.held) if final else self._releasable(state)
        for held in state.held[:count]:
            state.released += held.text
            now = time.perf_counter()
            if held.text:
                self.stats.holdback_ms_total += (now - held.arrived) * 1000
                self.stats.released_chunks += 1
                if self.stats.first_content_at is None:
                    self.stats.first_content_at = now
            yield held.chunk
        del state.held[:count]

    def _releasable(self, state: _Choice) -> int:
        """How many held chunks may go: up to the last sentence end, or beyond the window."""
        ends, offset = [], 0
        for held in state.held:
            offset += len(held.text)
            ends.append(offset)
        count = 0
        if self._policy.sentence_release:
            boundary = max((m.end() for m in _SENTENCE_END.finditer(state.held_text)), default=0)
            count = sum(1 for end in ends if end <= boundary)
        excess = state.held_tokens - self._policy.holdback_tokens
        taken = 0
        while excess > 0 and taken < len(state.held):
            excess -= 1 if state.held[taken].text else 0
            taken += 1
        return max(count, taken)

    def _redact_held(self, state: _Choice, verdict: Verdict) -> None:
        """Rewrite the held text with redactions; spans in released text can no longer change."""
        start = len(state.released)
        spans = [(a - start, b - start, category) for a, b, category in verdict_spans(verdict) if a >= start]
        if not spans:
            return
        text = redact_spans(state.held_text, spans)
        content_chunks = [h for h in state.held if h.text]
        first = content_chunks[0]
        choice = first.chunk["choices"][0]
        choice = {**choice, "delta": {**choice.get("delta", {}), "content": text}}
        rewritten = _Held({**first.chunk, "choices": [choice]}, text, first.arrived)
        state.held = [rewritten if h is first else h for h in state.held if h is first or not h.text]


def _open_span(text: str, verdict: Verdict) -> bool:
    """Whether a span to redact reaches the end of the text checked (trailing spaces aside): what
    follows may extend it or undo it ("+1 555 0100" in "+1 555 0100 22"; digits that a phone number's
    pattern matches, in a longer number that no PII pattern does)."""
    end = len(text.rstrip())
    return any(b >= end for _, b, _ in verdict_spans(verdict))
