"""From what a request gathered to its one `DecisionRecord`, and the record's fan-out.

A `Trace` collects a chat request's verdicts, latencies, tokens and texts as the service works; the
`Recorder` turns it into the request's decision record when the block that owns it ends
(`Recorder.recording`), and hands the record to the telemetry, the request log and the sink: the one
place a record is made, and where another consumer would plug in. A request refused before it reached
the policy (bad input, auth, limits: `Recorder.reject`) is counted and logged but not sunk. Every
request gets exactly one record, errors and clients that hang up included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import RailguardError, UpstreamError, UpstreamRejectedError
from gateway.policy.engine import EffectivePolicy
from gateway.policy.verdict import Action, Verdict
from gateway.records import DecisionRecord, Latencies, merged_categories
from gateway.sinks.base import Sink
from gateway.telemetry import RequestLog, Telemetry

__all__ = ["Recorder", "RequestContext", "Trace"]

CLIENT_CLOSED = 499  # nginx's code for a client that went away


@dataclass
class RequestContext:
    request_id: str
    tenant: str
    started: float = field(default_factory=time.perf_counter)
    created: int = field(default_factory=lambda: int(time.time()))
    recorded: bool = False  # whether the request has its decision record


@dataclass
class Trace:
    """What a request has gathered so far, to become its decision record."""

    ctx: RequestContext
    model: str
    backend: str
    policy: EffectivePolicy
    stream: bool
    adapter: str | None = None
    input: Verdict | None = None
    output: Verdict | None = None
    backend_ms: float = 0.0
    ttft_ms: float | None = None
    holdback_ms: float | None = None
    output_guard_ms: float | None = None  # a stream's: every check it made (else the output verdict's)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt: list[dict[str, Any]] | None = None
    response: str | None = None
    status: int = 200
    error_code: str | None = None
    handed_on: bool = False  # the block that owns the trace opened a stream, which finishes it
    record: DecisionRecord | None = None

    @property
    def action(self) -> Action:
        verdicts = [v for v in (self.input, self.output) if v is not None]
        return max((v.action for v in verdicts), key=lambda a: a.severity, default=Action.ALLOW)

    @property
    def categories(self) -> tuple[str, ...]:
        return merged_categories(self.input, self.output)

    def count_tokens(self, usage: Mapping[str, Any] | None) -> None:
        if usage:
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)


class Recorder:
    def __init__(
        self,
        telemetry: Telemetry,
        sink: Sink,
        *,
        policy_version: str,
        guard_versions: Callable[[], Mapping[str, str]],
    ) -> None:
        self.telemetry = telemetry
        self.sink = sink
        self.request_log = RequestLog()
        self._policy_version = policy_version
        self._guard_versions = guard_versions

    @contextmanager
    def recording(self, trace: Trace) -> Iterator[Trace]:
        """Owns ``trace`` for the block, and makes its record when the block ends: with the status the
        trace holds, or its error's when the block raises (499 for a client gone). A block that opens a
        stream hands the trace on (``trace.handed_on``): the stream's own ``recording`` block ends it."""
        trace.handed_on = False
        try:
            yield trace
        except BaseException as error:
            self.failed(trace, error)
            raise
        finally:
            if not trace.handed_on:
                self._finish(trace)

    def failed(self, trace: Trace, error: BaseException) -> None:
        """What ``error`` makes of the request's status (an upstream's failure is counted too). The
        first error decides: a client that leaves while a stream's error event is sent changes nothing."""
        if trace.error_code is not None:
            return
        if isinstance(error, RailguardError):
            trace.status, trace.error_code = error.status, error.code
            if isinstance(error, UpstreamError | UpstreamRejectedError):
                self.telemetry.upstream_error(trace.model, error.code or f"http_{error.status}")
        elif isinstance(error, asyncio.CancelledError | GeneratorExit):  # the client went away
            trace.status, trace.error_code = CLIENT_CLOSED, "client_closed"
        elif isinstance(error, Exception):
            trace.status, trace.error_code = 500, "server_error"

    def reject(self, ctx: RequestContext, model: str, error: RailguardError) -> None:
        """A request refused before it reached the policy (bad input, auth, limits): counted and logged,
        unless it already has its record (an error the chat service raised, and recorded)."""
        if ctx.recorded:
            return
        record = DecisionRecord(
            request_id=ctx.request_id,
            created=time.time(),
            tenant=ctx.tenant,
            model=model,
            backend="none",
            policy_version=self._policy_version,
            language="",
            stream=False,
            action=Action.ALLOW,
            status=error.status,
            error_code=error.code,
            latency=Latencies(total_ms=(time.perf_counter() - ctx.started) * 1000),
        )
        self._publish(ctx, record, sink=False)

    def _finish(self, trace: Trace) -> None:
        assert not trace.ctx.recorded, "a request has exactly one decision record"
        total_ms = (time.perf_counter() - trace.ctx.started) * 1000
        output_guard_ms = trace.output_guard_ms
        if output_guard_ms is None:
            output_guard_ms = trace.output.latency_ms if trace.output else 0.0
        latency = Latencies(
            input_guard_ms=trace.input.latency_ms if trace.input else 0.0,
            output_guard_ms=output_guard_ms,
            backend_ms=trace.backend_ms,
            total_ms=total_ms,
            ttft_ms=trace.ttft_ms,
            holdback_ms=trace.holdback_ms,
        )
        policy = trace.policy
        record = DecisionRecord(
            request_id=trace.ctx.request_id,
            created=time.time(),
            tenant=trace.ctx.tenant,
            model=trace.model,
            backend=trace.backend,
            policy_version=policy.version,
            language=policy.language,
            stream=trace.stream,
            action=trace.action,
            status=trace.status,
            input=trace.input,
            output=trace.output,
            error_code=trace.error_code,
            latency=latency,
            guard_versions=self._guard_versions(),
            prompt_tokens=trace.prompt_tokens,
            completion_tokens=trace.completion_tokens,
            prompt=trace.prompt,
            response=trace.response,
            raw_text=policy.record_raw_text,
            adapter=trace.adapter,
        )
        trace.record = record
        self._publish(trace.ctx, record, sink=True)

    def _publish(self, ctx: RequestContext, record: DecisionRecord, *, sink: bool) -> None:
        """The fan-out: metrics, the request's log line, and (for records the policy made) the sink."""
        ctx.recorded = True
        self.telemetry.observe(record)
        self.request_log.log(record)
        if sink:
            self.sink.submit(record)
