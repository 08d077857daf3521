"""The cost of telemetry per request, measured in-process: `python bench/telemetry.py [--n 20000]`.

Times `Telemetry.observe(record)` (metrics on vs off) for the kinds of request the gateway finishes
(allowed with both guards and a stream, refused, escalated, failed upstream, a model refusal), the
JSON access-log line, and `render()` of the resulting registry (one scrape). The end-to-end figure,
a gateway with metrics on vs off, is in bench/overhead.py; `measure()` is importable for it.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from gateway.policy.verdict import Action, Stage, Verdict
from gateway.records import DecisionRecord, Latencies
from gateway.telemetry import JsonFormatter, RequestLog, Telemetry

BUDGET_US = 500.0  # the ceiling: telemetry must cost less than 0.5 ms per request


def _records() -> dict[str, DecisionRecord]:
    def rec(action: Action, **kw: object) -> DecisionRecord:
        base: dict[str, object] = dict(
            request_id="r", created=0.0, tenant="acme", model="gemma", backend="upstream",
            policy_version="p1", language="en", stream=False, action=action, status=200,
            latency=Latencies(0.8, 1.2, 120.0, 125.0, ttft_ms=30.0),
            prompt_tokens=40, completion_tokens=120,
        )  # fmt: skip
        base.update(kw)
        return DecisionRecord(**base)  # type: ignore[arg-type]

    clean_in = Verdict(Stage.INPUT, Action.ALLOW, scores={"violence": 0.02, "hate": 0.01})
    clean_out = Verdict(Stage.OUTPUT, Action.ALLOW, scores={"violence": 0.01})
    refuse = Verdict(Stage.INPUT, Action.REFUSE, ("violent_crimes",), scores={"violence": 0.97})
    escalate = Verdict(Stage.INPUT, Action.ESCALATE, ("self_harm",))
    answer = "Paris is the capital of France. " * 20
    return {
        "allowed, streamed": rec(
            Action.ALLOW, input=clean_in, output=clean_out, stream=True, response=answer,
            latency=Latencies(0.8, 1.2, 120.0, 125.0, ttft_ms=30.0, holdback_ms=4.0),
        ),
        "refused": rec(Action.REFUSE, input=refuse, completion_tokens=0),
        "escalated": rec(Action.ESCALATE, input=escalate, completion_tokens=0),
        "upstream error": rec(Action.ALLOW, input=clean_in, status=502, error_code="upstream_error"),
        "model refusal": rec(
            Action.ALLOW, input=clean_in, output=clean_out,
            response="I'm sorry, but I can't help with that request.",
        ),
    }  # fmt: skip


def _per_call_us(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    """Best-of-`repeats` mean time of one call, in microseconds (best: least disturbed by others)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - start) / n * 1e6)
    return min(times)


def measure(n: int = 20000) -> dict[str, float]:
    """µs per call for observe() of each kind of record (on and off), the log line, and render()."""
    on = Telemetry(CollectorRegistry())
    off = Telemetry(CollectorRegistry(), enabled=False)
    out: dict[str, float] = {}
    for kind, record in _records().items():
        out[f"observe on: {kind}"] = _per_call_us(lambda r=record: on.observe(r), n)
        out[f"observe off: {kind}"] = _per_call_us(lambda r=record: off.observe(r), n)
    logger = logging.getLogger("railguard.bench.access")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    log = RequestLog(logger)
    record = _records()["allowed, streamed"]
    out["access log line"] = _per_call_us(lambda: log.log(record), n // 4)
    out["render (one scrape)"] = _per_call_us(on.render, 50, repeats=3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="calls per timing")
    figures = measure(parser.parse_args().n)
    width = max(map(len, figures))
    print(f"{'what':<{width}}  µs per call")
    for name, us in figures.items():
        print(f"{name:<{width}}  {us:10.2f}")
    on = [v for k, v in figures.items() if k.startswith("observe on")]
    off = [v for k, v in figures.items() if k.startswith("observe off")]
    worst = max(on) - min(off) + figures["access log line"]
    print(f"\nmetrics on - off, worst kind, with the log line: {worst:.1f} µs per request "
          f"(budget {BUDGET_US:.0f} µs); mean observe: {statistics.mean(on):.1f} µs")  # fmt: skip
    if worst >= BUDGET_US:
        raise SystemExit(f"over budget: {worst:.1f} µs >= {BUDGET_US:.0f} µs")


if __name__ == "__main__":
    main()
