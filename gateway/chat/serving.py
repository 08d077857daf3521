"""Chat completions, end to end: input guard, backend, output guard; the record is `recording`'s.

`ChatService.create` returns a `ChatResult`: a JSON body, or an iterator of SSE bytes; the router only
turns that into a response. What railguard answers itself is written by `answers`, and every request
ends in exactly one `DecisionRecord` (`recording`), errors included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from gateway.backends.base import Backend, Generation
from gateway.backends.models import ModelRouter
from gateway.chat import answers
from gateway.chat.recording import Recorder, RequestContext, Trace
from gateway.chat.steering import steering_for
from gateway.errors import ContentFilterError, RailguardError
from gateway.guards.output import StreamGuard, guard_completion
from gateway.guards.runner import GuardRunner
from gateway.messages import Segment, guarded_text
from gateway.policy.engine import PolicyEngine
from gateway.policy.verdict import Action, Stage, Verdict
from gateway.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Envelope,
    RailguardBlock,
)
from gateway.redaction import redact_messages
from gateway.telemetry import Tracing

__all__ = ["ChatResult", "ChatService"]


@dataclass(frozen=True)
class ChatResult:
    action: Action
    body: ChatCompletion | None = None
    stream: AsyncIterator[bytes] | None = None


@dataclass(frozen=True)
class _Call:
    """One request as the service handles it: the validated request, the body an upstream is sent
    (the client's JSON without the `railguard` block, computed once), its backend and its trace."""

    request: ChatCompletionRequest
    forward: dict[str, Any]
    backend: Backend
    trace: Trace
    envelope: Envelope

    @property
    def request_id(self) -> str:
        return self.trace.ctx.request_id


class ChatService:
    def __init__(
        self,
        models: ModelRouter,
        engine: PolicyEngine,
        guards: GuardRunner,
        recorder: Recorder,
        *,
        detect_language: Callable[[str, str], str] | None = None,
        tracing: Tracing | None = None,
        during_call: bool = False,
    ) -> None:
        self.models = models
        self.engine = engine
        self.guards = guards
        self.recorder = recorder
        self.detect_language = detect_language
        self.tracing = tracing or Tracing(enabled=False)
        self.during_call = during_call  # settings.input_guard == "during_call"

    async def create(
        self, request: ChatCompletionRequest, body: dict[str, Any], ctx: RequestContext
    ) -> ChatResult:
        """`request` is `body` validated; `body` is read once more, for what an upstream is sent."""
        text, segments = guarded_text(request.messages)
        language = request.railguard.language if request.railguard else None
        if language is None and self.detect_language is not None:
            language = self.detect_language(text, self.engine.policy.default_language)
        policy = self.engine.resolve(ctx.tenant, self.engine.language_for(language))
        backend = self.models.backend_for(request.model)
        adapter = self.models.card(request.model).adapter
        trace = Trace(ctx, request.model, backend.name, policy, request.stream, adapter)
        forward = {k: v for k, v in body.items() if k != "railguard"}
        envelope = Envelope(f"chatcmpl-{ctx.request_id}", request.model, ctx.created)
        call = _Call(request, forward, backend, trace, envelope)
        with self.tracing.span("railguard.chat", model=request.model, stream=request.stream) as span:
            try:
                with self.recorder.recording(trace):
                    return await self._answer(call, text, segments)
            finally:
                if trace.record is not None:
                    self.tracing.annotate(span, trace.record)

    async def _answer(self, call: _Call, text: str, segments: list[Segment]) -> ChatResult:
        trace, backend = call.trace, call.backend
        messages = [m.model_dump(exclude_unset=True) for m in call.request.messages]
        started = time.perf_counter()
        early = self._call_during_guard(call, text, messages)
        try:
            with self.tracing.span("railguard.input_guard"):
                verdict = await self.guards.check(Stage.INPUT, text, trace.policy, call.request_id)
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
            return self._refuse(call, verdict)
        if call.request.stream:
            events = await (early or backend.open_stream(self._generation(call, messages, verdict)))
            trace.handed_on = True  # the stream finishes the record
            return ChatResult(verdict.action, stream=self._stream(call, events))
        if early is None:
            started = time.perf_counter()
        with self.tracing.span("railguard.backend", backend=backend.name):
            completion = await (early or backend.complete(self._generation(call, messages, verdict)))
        trace.backend_ms = (time.perf_counter() - started) * 1000
        trace.count_tokens(completion.get("usage"))
        with self.tracing.span("railguard.output_guard"):
            trace.output, trace.response = await guard_completion(completion, self._output_check(call))
        completion["railguard"] = self._block(trace, trace.action)
        return ChatResult(trace.action, body=completion)

    def _generation(self, call: _Call, messages: list[dict[str, Any]], verdict: Verdict) -> Generation:
        policy = call.trace.policy
        steering = steering_for(call.request, verdict, policy, local=call.backend.name == "local")
        return Generation(
            call.request, call.forward, messages, call.request_id, steering, policy.banned_phrases
        )

    def _call_during_guard(
        self, call: _Call, text: str, messages: list[dict[str, Any]]
    ) -> asyncio.Task[Any] | None:
        """With ``input_guard: during_call``, in front of an upstream, and when nothing that runs
        without models would redact or refuse the prompt: the model's call, started now, to be awaited
        once the input guard allows it or abandoned when it does not. None: call after the guard."""
        if not self.during_call or call.backend.name == "local":  # a local model may have to be steered
            return None
        if not self.guards.clear_without_models(Stage.INPUT, text, call.trace.policy, call.request_id):
            return None
        try:
            generation = self._generation(call, messages, Verdict(Stage.INPUT, Action.ALLOW))
        except RailguardError:  # a bad request: the ordinary path answers it, after the guard
            return None
        backend = call.backend
        opened = backend.open_stream(generation) if call.request.stream else backend.complete(generation)
        return asyncio.ensure_future(opened)

    async def _stream(self, call: _Call, events: AsyncIterator[ChatCompletionChunk]) -> AsyncIterator[bytes]:
        trace = call.trace

        def refusal(
            template: ChatCompletionChunk | None, index: int, verdict: Verdict, after: bool
        ) -> ChatCompletionChunk:
            trace.output = verdict
            message = ("\n\n" if after else "") + (verdict.message or "")
            block = self._block(trace, verdict.action, verdict)
            return answers.refusal_chunk(template, call.envelope, index, message, block)

        guard = StreamGuard(self._output_check(call), trace.policy.stream, refusal)
        started = time.perf_counter()
        with self.recorder.recording(trace):
            try:
                async for chunk in guard.run(events):
                    if guard.stats.first_content_at is not None and trace.ttft_ms is None:
                        trace.ttft_ms = (guard.stats.first_content_at - trace.ctx.started) * 1000
                    trace.count_tokens(chunk.get("usage"))
                    yield answers.sse(chunk)
            except RailguardError as error:
                self.recorder.failed(trace, error)
                yield answers.error_event(error)
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
                trace.output_guard_ms = guard.stats.check_ms
        yield answers.DONE

    def _output_check(self, call: _Call) -> Callable[[str], Awaitable[Verdict]]:
        async def check(text: str) -> Verdict:
            return await self.guards.check(Stage.OUTPUT, text, call.trace.policy, call.request_id)

        return check

    def _refuse(self, call: _Call, verdict: Verdict) -> ChatResult:
        """A prompt the policy refuses or escalates, answered by railguard (or an Azure-style error)."""
        block = self._block(call.trace, verdict.action, verdict)
        if call.trace.policy.refusal_mode == "error":
            message = verdict.message or "content filtered"
            raise ContentFilterError(message, param="messages", extra={"railguard": block})
        call.trace.response = verdict.message
        request = call.request
        if not request.stream:
            return ChatResult(
                verdict.action, body=answers.refusal(call.envelope, request.n, verdict.message, block)
            )
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        stream = answers.refusal_stream(
            call.envelope, request.n, verdict.message, block, include_usage=include_usage
        )
        return ChatResult(verdict.action, stream=stream)

    @staticmethod
    def _block(trace: Trace, action: Action, verdict: Verdict | None = None) -> RailguardBlock:
        return answers.railguard_block(
            action,
            verdict.categories if verdict else trace.categories,
            request_id=trace.ctx.request_id,
            policy_version=trace.policy.version,
            verdict=verdict,
        )


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
