"""A guarded `Generation` -> the engine rows for it, refusing what the local model cannot honour.

Constraints: OpenAI's `response_format` (`json_schema`, `json_object`) and the `railguard` block's
`regex` and `choice` become one `ConstraintSpec` (at most one per request). `json_object` means a
flat JSON object (string, number, boolean or null values): any object would compile to an automaton
too large to build per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.backends.base import Generation, SteeringSpec
from gateway.backends.local.params import LogitsProcessor, RowSpec, SamplingParams, SteeringVector
from gateway.backends.local.template import prompt_ids
from gateway.errors import InvalidRequestError, UnsupportedParameterError
from gateway.protocol import ChatCompletionRequest
from gateway.settings import LocalModelConfig
from steering.constrain import ConstraintSpec

__all__ = ["Plan", "SteeringResolver", "check_supported", "constraint_spec", "plan_rows"]

log = logging.getLogger(__name__)

SteeringResolver = Callable[[SteeringSpec], "SteeringVector | Sequence[SteeringVector]"]
"""Named, scaled steering request -> the vectors to apply, each with its layer (see `vectors.py`)."""

_IGNORED = ("user",)
JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
}
MAX_REGEX_CHARS = 2_000
MAX_CHOICES = 256


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
    constraint_spec(request)
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
    limit = request.token_limit
    if limit is not None and limit > config.max_context_tokens:
        field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        raise InvalidRequestError(
            f"{field} is too large: {limit}. This model supports at most {config.max_context_tokens} "
            "tokens of context, prompt and completion together",
            param=field,
            code="invalid_value",
        )
    steering = _steering(generation, resolve_steering)
    max_tokens = min(limit or config.default_max_tokens, room)
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


def constraint_spec(request: ChatCompletionRequest) -> ConstraintSpec | None:
    """The one constraint a request asks for, validated; None when it asks for none."""
    found: list[tuple[str, ConstraintSpec]] = []
    response_format = request.response_format
    if response_format is not None:
        spec = _response_format(response_format)
        if spec is not None:
            found.append(("response_format", spec))
    options = request.railguard
    if options is not None and options.regex is not None:
        if not options.regex or len(options.regex) > MAX_REGEX_CHARS:
            raise InvalidRequestError(
                f"railguard.regex must have 1 to {MAX_REGEX_CHARS} characters", param="railguard.regex"
            )
        found.append(("railguard.regex", ConstraintSpec.regex(options.regex)))
    if options is not None and options.choice is not None:
        choices = options.choice
        if not 1 <= len(choices) <= MAX_CHOICES or not all(choices):
            raise InvalidRequestError(
                f"railguard.choice must hold 1 to {MAX_CHOICES} non-empty strings", param="railguard.choice"
            )
        found.append(("railguard.choice", ConstraintSpec.choice(choices)))
    if len(found) > 1:
        raise InvalidRequestError(
            "ask for one constraint at most: " + ", ".join(name for name, _ in found), param=found[1][0]
        )
    return found[0][1] if found else None


def _response_format(response_format: dict[str, Any]) -> ConstraintSpec | None:
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ConstraintSpec.json_schema(JSON_OBJECT_SCHEMA)
    if kind == "json_schema":
        body = response_format.get("json_schema")
        schema = body.get("schema") if isinstance(body, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequestError(
                "response_format.json_schema.schema must be a JSON schema object",
                param="response_format.json_schema.schema",
            )
        return ConstraintSpec.json_schema(schema)
    raise UnsupportedParameterError(
        f"response_format type {kind!r} is not supported", param="response_format.type"
    )


def _steering(generation: Generation, resolve: SteeringResolver | None) -> tuple[SteeringVector, ...]:
    if not generation.steering:
        return ()
    if resolve is None:
        raise UnsupportedParameterError(
            "steering vectors are not configured on the local model", param="railguard.steering"
        )
    vectors: list[SteeringVector] = []
    for spec in generation.steering:
        resolved = resolve(spec)
        vectors += [resolved] if isinstance(resolved, SteeringVector) else list(resolved)
    return tuple(vectors)
