"""The soak's load: a closed loop that measures capacity, and an open loop that holds a rate.

Every request is the next everyday prompt (`bench/everyday.py`), never repeated, and asks the stub
upstream (`stub_say`) for an answer of its own, so both guards read new text each time; every
`stream_every`-th request is streamed. A request is an error unless it is answered 200 with an
`x-request-id` (and, streamed, ends in `[DONE]` without an error event): 429s, other statuses,
timeouts and broken connections all count. Open-loop latency runs from the moment the request was due,
not from when the client got round to sending it, so a stalled gateway shows up in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httptools
from everyday import conversation
from httpload import Connection, chat_request_bytes, pct, summary_ms
from processes import rss_bytes, task_cpu_s

MODEL = "stub-model"
OK = "200"


@dataclass(frozen=True)
class Outcome:
    status: str  # "200", another status code, "timeout", "connection", "stream_error", "no_request_id"
    request_id: str | None = None
    action: str | None = None
    detail: str = ""


class Pool:
    """Keep-alive connections, the most recently used first; ones idle for `IDLE_S` are dropped before
    the server's keep-alive clock (uvicorn: 5 s) can close them under a request."""

    IDLE_S = 4.0

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Connection] = []
        self.opened = 0

    async def get(self) -> Connection:
        now = time.perf_counter()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and now - conn.last_used < self.IDLE_S:
                return conn
            conn.close()
        self.opened += 1
        return await Connection.open(self.port)

    def put(self, conn: Connection) -> None:
        if not conn.closed:
            self.idle.append(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class Requests:
    """The i-th request's bytes: the i-th everyday conversation, streamed every `stream_every`-th."""

    def __init__(self, port: int, stream_every: int) -> None:
        self.port = port
        self.stream_every = stream_every
        self.next_index = 0

    def take(self) -> tuple[bytes, bool]:
        i, self.next_index = self.next_index, self.next_index + 1
        prompt, answer = conversation(i)
        stream = self.stream_every > 0 and i % self.stream_every == 0
        body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 128,
                "stream": stream, "stub_say": answer}  # fmt: skip
        return chat_request_bytes(self.port, body), stream


async def send(pool: Pool, payload: bytes, stream: bool, timeout_s: float) -> Outcome:
    try:
        conn = await pool.get()
    except OSError as exc:
        return Outcome("connection", detail=f"connect: {exc!r}")
    try:
        _, _, status, body = await asyncio.wait_for(conn.request(payload, stream), timeout_s)
    except TimeoutError:
        conn.close()
        return Outcome("timeout", detail=f"no answer in {timeout_s:g} s")
    except (ConnectionError, OSError, httptools.HttpParserError) as exc:
        conn.close()
        return Outcome("connection", detail=repr(exc))
    pool.put(conn)
    if status != 200:
        return Outcome(str(status), detail=body[:300].decode(errors="replace"))
    if stream and (not body.endswith(b"data: [DONE]\n\n") or b'data: {"error"' in body):
        return Outcome("stream_error", detail=body[-300:].decode(errors="replace"))
    if not stream and b'"choices"' not in body:
        return Outcome("bad_body", detail=body[:300].decode(errors="replace"))
    request_id = conn.headers.get(b"x-request-id")
    if request_id is None:
        return Outcome("no_request_id")
    action = conn.headers.get(b"x-railguard-action", b"?").decode()
    return Outcome(OK, request_id.decode(), action)


@dataclass
class Tally:
    """What came back: statuses, actions, the answered request ids, a few error examples, and the
    latencies of each minute since `start` (by the minute the request was due)."""

    start: float
    statuses: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    answered: set[str] = field(default_factory=set)
    examples: list[str] = field(default_factory=list)
    latencies: dict[int, list[float]] = field(default_factory=dict)
    errors_by_minute: Counter[int] = field(default_factory=Counter)

    def add(self, due: float, latency: float, outcome: Outcome) -> None:
        minute = int((due - self.start) // 60)
        self.statuses[outcome.status] += 1
        if outcome.status == OK:
            assert outcome.request_id is not None
            self.answered.add(outcome.request_id)
            self.actions[outcome.action or "?"] += 1
            self.latencies.setdefault(minute, []).append(latency)
        else:
            self.errors_by_minute[minute] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{outcome.status}: {outcome.detail}")

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != OK)

    def minutes(self, count: int) -> list[dict[str, Any]]:
        out = []
        for m in range(count):
            lat = self.latencies.get(m, [])
            out.append({
                "minute": m + 1,
                "answered": len(lat),
                "errors": self.errors_by_minute[m],
                "p50_ms": pct(lat, 50) * 1000 if lat else None,
                "p99_ms": pct(lat, 99) * 1000 if lat else None,
                "max_ms": max(lat) * 1000 if lat else None,
            })  # fmt: skip
        return out


async def closed_loop(
    pool: Pool, requests: Requests, concurrency: int, warmup_s: float, duration_s: float, timeout_s: float
) -> dict[str, Any]:
    """`concurrency` clients sending back to back: the requests/s answered in the measured window."""
    loop = asyncio.get_running_loop()
    begin = loop.time() + warmup_s
    end = begin + duration_s
    tally = Tally(begin)
    latencies: list[float] = []

    async def client() -> None:
        while (sent := loop.time()) < end:
            payload, stream = requests.take()
            outcome = await send(pool, payload, stream, timeout_s)
            done = loop.time()
            tally.add(sent, done - sent, outcome)
            if outcome.status == OK and sent >= begin and done <= end:
                latencies.append(done - sent)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return {
        "concurrency": concurrency,
        "warmup_s": warmup_s,
        "seconds": duration_s,
        "rps": len(latencies) / duration_s,
        "latency_ms": summary_ms(latencies) if latencies else None,
        "statuses": dict(tally.statuses),
        "errors": tally.errors,
        "error_examples": tally.examples,
        "answered_ids": tally.answered,
    }


@dataclass
class Sampler:
    """Every `every_s`: the gateway's RSS and CPU, and the client's counts so far."""

    pid: int
    start: float
    every_s: float
    progress: Callable[[], dict[str, int]]
    samples: list[dict[str, float]] = field(default_factory=list)
    minutes_reported: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        cpu_before, wall_before = task_cpu_s(self.pid), loop.time()
        while True:
            now = loop.time()
            try:
                cpu, rss = task_cpu_s(self.pid), rss_bytes(self.pid) / 2**20
            except OSError:  # the gateway is gone: its requests fail, and the report says so
                cpu, rss = cpu_before, 0.0
            self.samples.append({
                "t_s": round(now - self.start, 3),
                "rss_mb": rss,
                "gateway_cores": (cpu - cpu_before) / max(now - wall_before, 1e-9),
                **self.progress(),
            })  # fmt: skip
            cpu_before, wall_before = cpu, now
            self._report_minute()
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)

    def _report_minute(self) -> None:
        """A line on stderr as each minute ends: a long run shows how it goes."""
        minute = int(self.samples[-1]["t_s"] // 60)
        if minute > self.minutes_reported:
            self.minutes_reported = minute
            last = self.samples[-1]
            print(f"  minute {minute}: sent {last['sent']:,}, answered {last['answered']:,}, errors "
                  f"{last['errors']:,}, in flight {last['in_flight']}, gateway RSS {last['rss_mb']:.1f} MiB, "
                  f"{last['gateway_cores']:.2f} cores", file=sys.stderr)  # fmt: skip


async def open_loop(
    pool: Pool,
    requests: Requests,
    rate: float,
    duration_s: float,
    timeout_s: float,
    *,
    poisson: bool,
    seed: int,
    gateway_pid: int,
    sample_s: float,
) -> tuple[Tally, Sampler, dict[str, Any]]:
    """Requests due at `rate` per second (Poisson arrivals, or evenly spaced) for `duration_s`, each sent
    when due whatever is still in flight; the gateway sampled every `sample_s`."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    start = loop.time() + 0.5
    end = start + duration_s
    tally = Tally(start)
    in_flight: set[asyncio.Task[None]] = set()
    sent = 0
    late: list[float] = []

    def progress() -> dict[str, int]:
        return {
            "sent": sent,
            "answered": tally.statuses[OK],
            "errors": tally.errors,
            "in_flight": len(in_flight),
        }

    sampler = Sampler(gateway_pid, start, sample_s, progress)
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))

    async def one(due: float) -> None:
        payload, stream = requests.take()
        outcome = await send(pool, payload, stream, timeout_s)
        tally.add(due, loop.time() - due, outcome)

    due = start
    while due < end:
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            late.append(-wait)
        task = asyncio.create_task(one(due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        sent += 1
        due += rng.expovariate(rate) if poisson else 1.0 / rate
    if in_flight:
        await asyncio.wait(set(in_flight))
    stop.set()
    await sampling
    schedule = {
        "sent": sent,
        "achieved_rate": sent / duration_s,
        "sent_late": len(late),
        "late_p99_ms": pct(late, 99) * 1000 if late else 0.0,
        "late_median_ms": statistics.median(late) * 1000 if late else 0.0,
        "connections_opened": pool.opened,
    }
    return tally, sampler, schedule
