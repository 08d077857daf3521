"""Property tests of the upstream's SSE parser (`gateway.backends.upstream._events`): however a
well-formed stream is cut into reads, whatever comments, other fields and line endings it carries, the
events come out as sent; and whatever bytes an upstream sends, the parser yields chunks the stream guard
can read (objects with well-formed choices) or raises `UpstreamError` (a 502 or an error event), never
anything else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.backends.upstream import _choices_ok, _events
from gateway.errors import UpstreamError

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)  # JSON text (no lone surrogates)
NUMBER = st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBER | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


class _Content:
    def __init__(self, reads: list[bytes]) -> None:
        self._reads = reads

    async def iter_any(self) -> AsyncIterator[bytes]:
        for read in self._reads:
            yield read


class _Response:
    """What `_events` reads of an aiohttp response: the body in reads, and `release`."""

    def __init__(self, reads: list[bytes]) -> None:
        self.content = _Content(reads)
        self.released = False

    def release(self) -> None:
        self.released = True


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


async def _parse(reads: list[bytes]) -> tuple[list[Any], BaseException | None, bool]:
    response = _Response(reads)
    events: list[Any] = []
    try:
        async for event in _events(response):  # type: ignore[arg-type]
            events.append(event)
    except Exception as exc:
        return events, exc, response.released
    return events, None, response.released


CHUNK = st.fixed_dictionaries(
    {
        "id": st.just("chatcmpl-1"),
        "object": st.just("chat.completion.chunk"),
        "choices": st.lists(
            st.fixed_dictionaries(
                {
                    "index": st.integers(0, 3),
                    "delta": st.fixed_dictionaries(
                        {}, optional={"role": st.just("assistant"), "content": TEXT}
                    ),
                    "finish_reason": st.none() | st.just("stop"),
                }
            ),
            max_size=2,
        ),
    },
    optional={"usage": st.fixed_dictionaries({"prompt_tokens": st.integers(0, 99)})},
)
NOISE = st.sampled_from([b": keep-alive", b"event: message", b"id: 7", b"retry: 1000", b""])


@SETTINGS
@given(
    events=st.lists(CHUNK, max_size=8),
    noise=st.lists(NOISE, max_size=8),
    crlf=st.booleans(),
    spaced=st.booleans(),
    cuts=st.lists(st.integers(0, 10**6), max_size=12),
)
def test_a_well_formed_stream_parses_to_what_was_sent_however_it_is_cut(
    events: list[dict[str, Any]], noise: list[bytes], crlf: bool, spaced: bool, cuts: list[int]
) -> None:
    end = b"\r\n" if crlf else b"\n"
    lines: list[bytes] = []
    for i, event in enumerate(events):
        if i < len(noise):
            lines.append(noise[i])
        lines += [b"data:" + (b" " if spaced else b"") + orjson.dumps(event), b""]
    lines += [b"data: [DONE]", b"", b": after the end, read and dropped"]
    data = end.join(lines) + end
    parsed, error, released = asyncio.run(_parse(_cut(data, cuts)))
    assert error is None and parsed == events and released


@SETTINGS
@given(
    payloads=st.lists(
        JSON | st.fixed_dictionaries({"choices": JSON}) | st.fixed_dictionaries({"error": JSON})
    ),
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
)
def test_any_json_events_give_readable_chunks_or_an_upstream_error(
    payloads: list[Any], cuts: list[int]
) -> None:
    data = b"".join(b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads)
    parsed, error, released = asyncio.run(_parse(_cut(data, cuts)))
    assert error is None or isinstance(error, UpstreamError), repr(error)
    assert all(isinstance(e, dict) and _choices_ok(e.get("choices") or [], "delta") for e in parsed)
    assert released


@SETTINGS
@given(reads=st.lists(st.binary(max_size=64) | st.sampled_from([b"data: ", b"\n", b"[DONE]", b"{"])))
def test_any_bytes_give_readable_chunks_or_an_upstream_error(reads: list[bytes]) -> None:
    parsed, error, released = asyncio.run(_parse(reads))
    assert error is None or isinstance(error, UpstreamError), repr(error)
    assert all(isinstance(e, dict) for e in parsed) and released


def test_events_that_crashed_the_parser_or_the_guard_before() -> None:
    """Each raised AttributeError, TypeError or ValueError in the parser or the stream guard before."""
    crashed = [b'"an error string"', b'{"error": "boom"}', b"[1, 2]", b'{"choices": "abc"}',
               b'{"choices": [{"delta": {"content": 5}}]}', b'{"choices": [{"index": "0"}]}']  # fmt: skip
    for payload in crashed:
        parsed, error, _ = asyncio.run(_parse([b"data: " + payload + b"\n\n"]))
        assert parsed == [] and isinstance(error, UpstreamError), payload
