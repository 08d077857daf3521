from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.guards.output import StreamGuard
from gateway.policy.model import StreamPolicy
from gateway.policy.verdict import Action, Finding, Stage, Verdict
from gateway.redaction import redact_spans

pytestmark = pytest.mark.anyio


def _chunks(words: list[str], index: int = 0) -> list[dict[str, Any]]:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    out = [
        {
            **base,
            "choices": [
                {
                    "index": index,
                    "delta": {"role": "assistant", "content": ""},
                    "finish_reason": None,
                }
            ],
        }
    ]
    out += [
        {**base, "choices": [{"index": index, "delta": {"content": w}, "finish_reason": None}]} for w in words
    ]
    out.append({**base, "choices": [{"index": index, "delta": {}, "finish_reason": "stop"}]})
    return out


async def _aiter(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


def _guard(bad: str, policy: StreamPolicy, seen: list[str]) -> StreamGuard:
    async def check(text: str) -> Verdict:
        seen.append(text)
        if bad in text:
            start = text.index(bad)
            finding = Finding("x", 1.0, "t", (start, start + len(bad)))
            return Verdict(Stage.OUTPUT, Action.REFUSE, ("x",), (finding,), "p", "No.")
        return Verdict(Stage.OUTPUT, Action.ALLOW)

    def refusal(template: dict[str, Any], index: int, verdict: Verdict, after: bool) -> dict[str, Any]:
        return {
            "choices": [
                {
                    "index": index,
                    "delta": {"content": verdict.message},
                    "finish_reason": "content_filter",
                }
            ]
        }

    return StreamGuard(check, policy, refusal)


async def _run(guard: StreamGuard, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c async for c in guard.run(_aiter(chunks))]


def _text(out: list[dict[str, Any]]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in out
        if c["choices"] and c["choices"][0]["finish_reason"] is None
    )


async def test_window_holds_back_until_checked() -> None:
    seen: list[str] = []
    words = [f" w{i}" for i in range(10)]
    guard = _guard("never", StreamPolicy(holdback_tokens=3, sentence_release=False), seen)
    out = await _run(guard, _chunks(words))
    assert _text(out) == "".join(words)
    assert out[-1]["choices"][0]["finish_reason"] == "stop"
    # every release was preceded by a check of everything released so far plus what was held
    assert all(len(seen[i]) <= len(seen[i + 1]) for i in range(len(seen) - 1))
    assert len(seen) == 8  # words 4..10 each overflow the 3-token window, then the final check
    assert seen[-1] == "".join(words)


async def test_violation_inside_the_window_never_reaches_the_client() -> None:
    words = ["Fine", " text.", " The", " secret", " is", " 42.", " More."]
    guard = _guard("secret is 42", StreamPolicy(holdback_tokens=8, sentence_release=True), [])
    out = await _run(guard, _chunks(words))
    assert _text(out) == "Fine text."
    assert out[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert guard.stats.verdict is not None and guard.stats.verdict.action is Action.REFUSE


async def test_a_phrase_longer_than_the_window_can_leak_its_start() -> None:
    # The documented limit: with no sentence end, only `holdback_tokens` are held.
    words = [" a", " b", " c", " d", " bad"]
    guard = _guard("c d bad", StreamPolicy(holdback_tokens=1, sentence_release=False), [])
    out = await _run(guard, _chunks(words))
    assert _text(out) == " a b c"  # " d bad" was stopped; " c" had already gone out
    assert out[-1]["choices"][0]["finish_reason"] == "content_filter"


async def test_choices_are_guarded_independently() -> None:
    guard = _guard("bad", StreamPolicy(holdback_tokens=4), [])
    merged = _chunks(["good", " text."], 0) + _chunks(["bad", " text."], 1)
    out = await _run(guard, merged)
    finishes = {
        c["choices"][0]["index"]: c["choices"][0]["finish_reason"]
        for c in out
        if c["choices"][0]["finish_reason"]
    }
    assert finishes == {0: "stop", 1: "content_filter"}


async def test_usage_chunk_goes_last() -> None:
    guard = _guard("never", StreamPolicy(), [])
    chunks = _chunks(["a."])
    usage = {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    out = await _run(guard, [*chunks[:-1], usage, chunks[-1]])
    assert out[-1] is usage


def _pii_guard(policy: StreamPolicy) -> StreamGuard:
    """Redacts what the gateway's PII patterns find (the classifier guard's spans, without a model)."""
    from classifiers.pii import find_pii

    async def check(text: str) -> Verdict:
        spans = find_pii(text)
        if not spans:
            return Verdict(Stage.OUTPUT, Action.ALLOW)
        findings = tuple(Finding("pii", s.score, f"pii:{s.kind}", (s.start, s.end)) for s in spans)
        return Verdict(Stage.OUTPUT, Action.REDACT, ("pii",), findings)

    def refusal(template: dict[str, Any], index: int, verdict: Verdict, after: bool) -> dict[str, Any]:
        raise AssertionError("nothing here is refused")

    return StreamGuard(check, policy, refusal)


def _whole(text: str) -> str:
    from classifiers.pii import find_pii

    return redact_spans(text, [(s.start, s.end, "pii") for s in find_pii(text)])


@pytest.mark.parametrize(
    "pieces",
    [
        # a count whose first digits, checked alone, look like a phone number
        ['{"city": "Paris", "population": 1', *["0"] * 33, ', "coastal": false}'],
        # a phone number that grows by a group after the window is first checked
        ["Call", " me", " on", " +44", " 20", " 7946", " 0958", " 12", " today", "."],
        ["Mail", " jane", "@example", ".org", " or", " call", " +1", " 415", " 555", " 0132", "."],
    ],
)
async def test_a_stream_redacts_what_the_whole_answer_would(pieces: list[str]) -> None:
    for policy in (
        StreamPolicy(holdback_tokens=3, sentence_release=False),
        StreamPolicy(holdback_tokens=3, sentence_release=True),
    ):
        out = await _run(_pii_guard(policy), _chunks(pieces))
        assert _text(out) == _whole("".join(pieces)), policy
