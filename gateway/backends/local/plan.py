"""A guarded `Generation` -> the engine rows for it, refusing what the local model cannot honour."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.backends.base import Generation, SteeringSpec
from gateway.backends.local.params import LogitsProcessor, RowSpec, SamplingParams, SteeringVector
from gateway.backends.local.template import prompt_ids
from gateway.errors import InvalidRequestError, UnsupportedParameterError
from gateway.protocol import ChatCompletionRequest
from gateway.settings import LocalModelConfig

__all__ = ["Plan", "SteeringResolver", "check_supported", "plan_rows"]

log = logging.getLogger(__name__)

SteeringResolver = Callable[[SteeringSpec], SteeringVector]
"""Named, scaled steering request -> a layer and a vector (the `steering` package's job)."""

_IGNORED = ("frequency_penalty", "presence_penalty", "user")


@dataclass(frozen=True)
class Plan:
    rows: tuple[RowSpec, ...]
    prompt_tokens: int


def check_supported(request: ChatCompletionRequest) -> None:
    """Refuse parameters the local model cannot honour; log the ones it merely ignores."""
    if request.tools:
        raise UnsupportedParameterError("the local model does not support tools", param="tools")
    if request.tool_choice not in (None, "none"):
        raise UnsupportedParameterError("the local model does not support tool_choice", param="tool_choice")
    if request.logprobs or request.top_logprobs:
        param = "logprobs" if request.logprobs else "top_logprobs"
        raise UnsupportedParameterError("the local model does not return logprobs", param=param)
    if request.response_format is not None and request.response_format.get("type") != "text":
        raise UnsupportedParameterError(
            "the local model supports response_format {'type': 'text'} only",
            param="response_format",
        )
    options = request.railguard
    if options is not None and (options.regex is not None or options.choice is not None):
        param = "railguard.regex" if options.regex is not None else "railguard.choice"
        raise UnsupportedParameterError(
            "constrained decoding is not available on the local model yet", param=param
        )
    ignored = [name for name in _IGNORED if getattr(request, name) is not None]
    ignored += request.ignored_fields()
    if ignored:
        log.debug("local backend ignores %s", ", ".join(ignored))


def plan_rows(
    generation: Generation,
    tokenizer: Any,
    config: LocalModelConfig,
    *,
    adapter: str | None,
    processors: tuple[LogitsProcessor, ...] = (),
    resolve_steering: SteeringResolver | None = None,
) -> Plan:
    """Tokenize the guarded messages and build one row per choice."""
    request = generation.request
    prompt = tuple(prompt_ids(tokenizer, generation.messages))
    room = config.max_context_tokens - len(prompt)
    if room < 1:
        raise InvalidRequestError(
            f"the prompt has {len(prompt)} tokens; this model's context is "
            f"{config.max_context_tokens} tokens",
            param="messages",
            code="context_length_exceeded",
        )
    steering = _steering(generation, resolve_steering)
    max_tokens = min(request.token_limit or config.default_max_tokens, room)
    temperature = 1.0 if request.temperature is None else request.temperature
    rows = tuple(
        RowSpec(
            prompt_ids=prompt,
            sampling=SamplingParams(
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=request.top_p if request.top_p is not None else 1.0,
                seed=None if request.seed is None else request.seed + index,
                stop=tuple(request.stop_list),
            ),
            index=index,
            adapter=adapter,
            processors=processors,
            steering=steering,
        )
        for index in range(request.n)
    )
    return Plan(rows=rows, prompt_tokens=len(prompt))


def _steering(generation: Generation, resolve: SteeringResolver | None) -> tuple[SteeringVector, ...]:
    if not generation.steering:
        return ()
    if resolve is None:
        raise UnsupportedParameterError(
            "steering vectors are not configured on the local model", param="railguard.steering"
        )
    return tuple(resolve(spec) for spec in generation.steering)
