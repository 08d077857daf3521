"""Chat completions, end to end: input guard, backend, output guard, decision record.

`ChatService.create` returns a `ChatResult`: a JSON body, or an iterator of SSE bytes. The router only
turns that into a response. Every request ends in exactly one `DecisionRecord`, errors included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson

from gateway.backends.base import Backend, Generation, ModelCard, SteeringSpec
from gateway.errors import (
    ContentFilterError,
    InvalidRequestError,
    NotFoundError,
    RailguardError,
    UnsupportedParameterError,
    UpstreamError,
    UpstreamRejectedError,
)
from gateway.guarding import GuardRunner
from gateway.guards.base import Action, Stage, Verdict
from gateway.messages import guarded_text, redact_messages
from gateway.policy.engine import EffectivePolicy, PolicyEngine
from gateway.protocol import ChatCompletionRequest
from gateway.records import DecisionRecord, Latencies, merged_categories
from gateway.redaction import redact_spans
from gateway.sinks.base import Sink
from gateway.streaming import StreamGuard
from gateway.telemetry import RequestLog, Telemetry, Tracing

DONE = b"data: [DONE]\n\n"


@dataclass
class RequestContext:
    request_id: str
    tenant: str
    started: float = field(default_factory=time.perf_counter)
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass(frozen=True)
class ChatResult:
    action: Action
    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None


class ModelRouter:
    """Model id -> the backend that serves it."""

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends

    def cards(self) -> list[ModelCard]:
        return [card for backend in self.backends for card in backend.models()]

    def card(self, model: str) -> ModelCard:
        for card in self.cards():
            if card.id == model:
                return card
        raise NotFoundError(
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )

    def backend_for(self, model: str) -> Backend:
        for backend in self.backends:
            if any(card.id == model for card in backend.models()):
                return backend
        self.card(model)  # raises the 404
        raise AssertionError("unreachable")


@dataclass
class _Trace:
    """What a request has gathered so far, to become its decision record."""

    ctx: RequestContext
    model: str
    backend: str
    policy: EffectivePolicy
    stream: bool
    input: Verdict | None = None
    output: Verdict | None = None
    backend_ms: float = 0.0
    ttft_ms: float | None = None
    holdback_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt: list[dict[str, Any]] | None = None
    adapter: str | None = None
    response: str | None = None
    record: DecisionRecord | None = None

    @property
    def action(self) -> Action:
        verdicts = [v for v in (self.input, self.output) if v is not None]
        return max((v.action for v in verdicts), key=lambda a: a.severity, default=Action.ALLOW)


class ChatService:
    def __init__(
        self,
        router: ModelRouter,
        engine: PolicyEngine,
        guards: GuardRunner,
        sink: Sink,
        telemetry: Telemetry,
        *,
        detect_language: Callable[[str, str], str] | None = None,
        tracing: Tracing | None = None,
        during_call: bool = False,
    ) -> None:
        self.detect_language = detect_language
        self.during_call = during_call  # settings.input_guard == "during_call"
        self.tracing = tracing or Tracing(enabled=False)
        self.router = router
        self.engine = engine
        self.guards = guards
        self.sink = sink
        self.telemetry = telemetry
        self.request_log = RequestLog()

    async def create(
        self, request: ChatCompletionRequest, body: dict[str, Any], ctx: RequestContext
    ) -> ChatResult:
        options = request.railguard
        language = options.language if options else None
        if language is None and self.detect_language is not None:
            text, _ = guarded_text(body["messages"])
            language = self.detect_language(text, self.engine.policy.default_language)
        policy = self.engine.resolve(ctx.tenant, self.engine.language_for(language))
        backend = self.router.backend_for(request.model)
        trace = _Trace(ctx, request.model, backend.name, policy, request.stream)
        trace.adapter = self.router.card(request.model).adapter
        with self.tracing.span("railguard.chat", model=request.model, stream=request.stream) as span:
            try:
                result = await self._create(request, body, backend, trace)
            except RailguardError as error:
                self._count_upstream_error(request.model, error)
                self.finish(trace, status=error.status, error_code=error.code)
                raise
            except asyncio.CancelledError:  # the client went away (gateway.disconnect)
                self.finish(trace, status=499, error_code="client_closed")
                raise
            finally:
                if trace.record is not None:
                    self.tracing.annotate(span, trace.record)
            return result

    async def _create(
        self, request: ChatCompletionRequest, body: dict[str, Any], backend: Backend, trace: _Trace
    ) -> ChatResult:
        ctx, policy = trace.ctx, trace.policy
        messages: list[dict[str, Any]] = body["messages"]
        text, segments = guarded_text(messages)
        forward = {k: v for k, v in body.items() if k != "railguard"}

        def generation(messages: list[dict[str, Any]], verdict: Verdict) -> Generation:
            steering = self._steering(request, backend, verdict, policy)
            return Generation(
                request, forward, messages, ctx.request_id, steering, banned_phrases=policy.banned_phrases
            )

        started = time.perf_counter()
        early = self._call_during_guard(
            request, backend, trace, text, lambda: generation(messages, Verdict(Stage.INPUT, Action.ALLOW))
        )
        try:
            with self.tracing.span("railguard.input_guard"):
                verdict = await self.guards.check(Stage.INPUT, text, policy, ctx.request_id)
        except BaseException:
            await _abandon(early)
            raise
        trace.input = verdict
        if verdict.action is Action.REDACT:
            messages = redact_messages(messages, segments, verdict)
        trace.prompt = messages
        if early is not None and (verdict.action.blocks or verdict.action is Action.REDACT):
            await _abandon(early)  # the model must not answer it, or must see it redacted
            early = None
        if verdict.action.blocks:
            return self._blocked(request, trace, verdict)
        if request.stream:
            events = await (early or backend.open_stream(generation(messages, verdict)))
            return ChatResult(verdict.action, stream=self._stream(request, events, trace))
        if early is None:
            started = time.perf_counter()
        with self.tracing.span("railguard.backend", backend=backend.name):
            completion = await (early or backend.complete(generation(messages, verdict)))
        trace.backend_ms = (time.perf_counter() - started) * 1000
        with self.tracing.span("railguard.output_guard"):
            await self._guard_completion(completion, trace)
        completion["railguard"] = self._block(trace, trace.action)
        self.finish(trace, status=200)
        return ChatResult(trace.action, body=completion)

    def _call_during_guard(
        self,
        request: ChatCompletionRequest,
        backend: Backend,
        trace: _Trace,
        text: str,
        make: Callable[[], Generation],
    ) -> asyncio.Task[Any] | None:
        """With ``input_guard: during_call``, in front of an upstream, and when nothing that runs
        without models would redact or refuse the prompt: the model's call, started now, to be awaited
        once the input guard allows it or abandoned when it does not. None: call after the guard."""
        if not self.during_call or backend.name == "local":  # a local model may have to be steered
            return None
        if not self.guards.clear_without_models(Stage.INPUT, text, trace.policy, trace.ctx.request_id):
            return None
        try:
            call = make()
        except RailguardError:  # a bad request: the ordinary path answers it, after the guard
            return None
        opened = backend.open_stream(call) if request.stream else backend.complete(call)
        return asyncio.ensure_future(opened)

    def _steering(
        self, request: ChatCompletionRequest, backend: Backend, verdict: Verdict, policy: EffectivePolicy
    ) -> tuple[SteeringSpec, ...]:
        """The policy's steering (a `steer` verdict) plus what the request asked for and may have."""
        asked = (
            tuple(SteeringSpec(s.vector, s.scale) for s in (request.railguard.steering or ()))
            if request.railguard
            else ()
        )
        refused = [s.vector for s in asked if s.vector not in policy.steering_vectors]
        if refused:
            raise InvalidRequestError(
                f"Steering vector(s) {refused} are not allowed for this API key.",
                param="railguard.steering",
                code="steering_not_allowed",
            )
        if backend.name != "local":
            if asked:
                raise UnsupportedParameterError(
                    f"The model `{request.model}` is served by an upstream and cannot be steered.",
                    param="railguard.steering",
                )
            return ()  # a policy `steer` verdict on an upstream model: answered unsteered (recorded)
        return (*verdict.steering, *asked)

    async def _guard_completion(self, completion: dict[str, Any], trace: _Trace) -> None:
        usage = completion.get("usage") or {}
        trace.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        trace.completion_tokens = int(usage.get("completion_tokens") or 0)
        strictest: Verdict | None = None
        texts = []
        for choice in completion["choices"]:
            message = choice.get("message") or {}
            content = message.get("content")
            if not isinstance(content, str) or not content:
                continue
            verdict = await self.guards.check(Stage.OUTPUT, content, trace.policy, trace.ctx.request_id)
            if verdict.action.blocks:
                choice["message"] = {**message, "content": verdict.message, "tool_calls": None}
                choice["finish_reason"] = "content_filter"
            elif verdict.action is Action.REDACT:
                choice["message"] = {**message, "content": _redact_text(content, verdict)}
            if strictest is None or verdict.action.severity > strictest.action.severity:
                strictest = verdict
            texts.append(choice["message"]["content"])
        trace.output = strictest
        trace.response = "\n".join(texts)

    async def _stream(
        self, request: ChatCompletionRequest, events: AsyncIterator[dict[str, Any]], trace: _Trace
    ) -> AsyncIterator[bytes]:
        policy = trace.policy
        request_id = trace.ctx.request_id

        async def check(text: str) -> Verdict:
            return await self.guards.check(Stage.OUTPUT, text, policy, request_id)

        def refusal(template: dict[str, Any], index: int, verdict: Verdict, after: bool) -> dict[str, Any]:
            trace.output = verdict
            content = ("\n\n" if after else "") + (verdict.message or "")
            chunk = _chunk(template, request, trace.ctx, index, {"content": content}, "content_filter")
            chunk["railguard"] = self._block(trace, verdict.action, verdict)
            return chunk

        guard = StreamGuard(check, policy.stream, refusal)
        started = time.perf_counter()
        status, error_code = 200, None
        try:
            async for chunk in guard.run(events):
                if guard.stats.first_content_at is not None and trace.ttft_ms is None:
                    trace.ttft_ms = (guard.stats.first_content_at - trace.ctx.started) * 1000
                usage = chunk.get("usage")
                if usage:
                    trace.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                    trace.completion_tokens = int(usage.get("completion_tokens") or 0)
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        except RailguardError as error:
            status, error_code = error.status, error.code
            self._count_upstream_error(request.model, error)
            yield b"data: " + orjson.dumps({"error": _error_body(error)}) + b"\n\n"
        except (GeneratorExit, asyncio.CancelledError):
            status, error_code = 499, "client_closed"  # nginx's code for a client that went away
            raise
        finally:
            with anyio.CancelScope(shield=True):  # stop the backend even while being cancelled
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()
            trace.backend_ms = (time.perf_counter() - started) * 1000 - guard.stats.check_ms
            trace.holdback_ms = guard.stats.holdback_ms
            if trace.output is None and guard.stats.verdict is not None:
                trace.output = guard.stats.verdict
            trace.response = guard.text(0)
            self.finish(trace, status=status, error_code=error_code, output_guard_ms=guard.stats.check_ms)
        yield DONE

    def _blocked(self, request: ChatCompletionRequest, trace: _Trace, verdict: Verdict) -> ChatResult:
        block = self._block(trace, verdict.action, verdict)
        if trace.policy.refusal_mode == "error":
            self.finish(trace, status=400, error_code="content_filter")
            raise ContentFilterError(
                verdict.message or "content filtered", param="messages", extra={"railguard": block}
            )
        trace.response = verdict.message
        self.finish(trace, status=200)
        if request.stream:
            return ChatResult(verdict.action, stream=self._blocked_stream(request, trace, block))
        message = {"role": "assistant", "content": verdict.message, "refusal": None}
        body = _completion_shell(request, trace.ctx)
        body["choices"] = [
            {"index": i, "message": message, "finish_reason": "content_filter", "logprobs": None}
            for i in range(request.n)
        ]
        body["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        body["railguard"] = block
        return ChatResult(verdict.action, body=body)

    async def _blocked_stream(
        self, request: ChatCompletionRequest, trace: _Trace, block: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        ctx = trace.ctx
        for i in range(request.n):
            first = _chunk({}, request, ctx, i, {"role": "assistant", "content": ""}, None)
            text = _chunk({}, request, ctx, i, {"content": trace.response or ""}, None)
            last = _chunk({}, request, ctx, i, {}, "content_filter")
            last["railguard"] = block
            for chunk in (first, text, last):
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        if request.stream_options and request.stream_options.include_usage:
            usage = {**_completion_shell(request, ctx), "object": "chat.completion.chunk"}
            usage["choices"] = []
            usage["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            yield b"data: " + orjson.dumps(usage) + b"\n\n"
        yield DONE

    def _block(self, trace: _Trace, action: Action, verdict: Verdict | None = None) -> dict[str, Any]:
        block: dict[str, Any] = {
            "action": action.value,
            "categories": list(
                verdict.categories if verdict else merged_categories(trace.input, trace.output)
            ),
            "request_id": trace.ctx.request_id,
            "policy_version": trace.policy.version,
        }
        if verdict is not None and verdict.action is not Action.ALLOW:
            block["stage"] = verdict.stage.value
            block["principle"] = verdict.principle
        return block

    def finish(
        self,
        trace: _Trace,
        *,
        status: int,
        error_code: str | None = None,
        output_guard_ms: float | None = None,
    ) -> DecisionRecord:
        total_ms = (time.perf_counter() - trace.ctx.started) * 1000
        latency = Latencies(
            input_guard_ms=trace.input.latency_ms if trace.input else 0.0,
            output_guard_ms=output_guard_ms
            if output_guard_ms is not None
            else (trace.output.latency_ms if trace.output else 0.0),
            backend_ms=trace.backend_ms,
            total_ms=total_ms,
            ttft_ms=trace.ttft_ms,
            holdback_ms=trace.holdback_ms,
        )
        record = DecisionRecord(
            request_id=trace.ctx.request_id,
            created=time.time(),
            tenant=trace.ctx.tenant,
            model=trace.model,
            backend=trace.backend,
            policy_version=trace.policy.version,
            language=trace.policy.language,
            stream=trace.stream,
            action=trace.action,
            status=status,
            input=trace.input,
            output=trace.output,
            error_code=error_code,
            latency=latency,
            guard_versions=self.guards.versions,
            prompt_tokens=trace.prompt_tokens,
            completion_tokens=trace.completion_tokens,
            prompt=trace.prompt,
            response=trace.response,
            raw_text=trace.policy.record_raw_text,
            adapter=trace.adapter,
        )
        trace.record = record
        self.record(record)
        return record

    def record(self, record: DecisionRecord) -> None:
        self.telemetry.observe(record)
        self.request_log.log(record)
        self.sink.submit(record)

    def _count_upstream_error(self, model: str, error: RailguardError) -> None:
        if isinstance(error, UpstreamError | UpstreamRejectedError):
            self.telemetry.upstream_error(model, error.code or f"http_{error.status}")

    def record_rejection(self, ctx: RequestContext, model: str, error: RailguardError) -> None:
        """A request refused before it reached the policy (bad input, auth, limits): counted too."""
        record = DecisionRecord(
            request_id=ctx.request_id,
            created=time.time(),
            tenant=ctx.tenant,
            model=model or "",
            backend="none",
            policy_version=self.engine.version,
            language="",
            stream=False,
            action=Action.ALLOW,
            status=error.status,
            error_code=error.code,
            latency=Latencies(total_ms=(time.perf_counter() - ctx.started) * 1000),
        )
        self.telemetry.observe(record)
        self.request_log.log(record)


async def _abandon(call: asyncio.Task[Any] | None) -> None:
    """Cancel a model call started during the input guard; close its stream if it already opened."""
    if call is None:
        return
    call.cancel()
    await asyncio.wait([call])
    if call.cancelled() or call.exception() is not None:  # retrieved: a failed call is nobody's error now
        return
    aclose = getattr(call.result(), "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


def _redact_text(text: str, verdict: Verdict) -> str:
    spans = [
        (f.span[0], f.span[1], f.category)
        for f in verdict.findings
        if f.span is not None and f.category in verdict.categories
    ]
    return redact_spans(text, spans)


def _completion_shell(request: ChatCompletionRequest, ctx: RequestContext) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{ctx.request_id}",
        "object": "chat.completion",
        "created": ctx.created,
        "model": request.model,
        "system_fingerprint": None,
    }


def _chunk(
    template: dict[str, Any],
    request: ChatCompletionRequest,
    ctx: RequestContext,
    index: int,
    delta: dict[str, Any],
    finish_reason: str | None,
) -> dict[str, Any]:
    return {
        "id": template.get("id", f"chatcmpl-{ctx.request_id}"),
        "object": "chat.completion.chunk",
        "created": template.get("created", ctx.created),
        "model": template.get("model", request.model),
        "system_fingerprint": template.get("system_fingerprint"),
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


def _error_body(error: RailguardError) -> dict[str, Any]:
    return {"message": error.message, "type": error.type, "param": error.param, "code": error.code}
