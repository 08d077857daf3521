"""The decision record: one per request, the unit that metrics, the sink and audits read.

Its JSON form (`to_json`) is the schema of the flagged stream; change it only by adding fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.policy.verdict import Action, Verdict
from gateway.redaction import deidentify_messages

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Latencies:
    """Milliseconds. `guard_ms` is what railguard added; `backend_ms` is the model's own time."""

    input_guard_ms: float = 0.0
    output_guard_ms: float = 0.0
    backend_ms: float = 0.0
    total_ms: float = 0.0
    ttft_ms: float | None = None
    holdback_ms: float | None = None

    @property
    def guard_ms(self) -> float:
        return self.input_guard_ms + self.output_guard_ms


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    request_id: str
    created: float
    tenant: str
    model: str
    backend: str
    policy_version: str
    language: str
    stream: bool
    action: Action
    status: int
    input: Verdict | None = None
    output: Verdict | None = None
    error_code: str | None = None
    adapter: str | None = None
    model_version: str | None = None
    latency: Latencies = field(default_factory=Latencies)
    guard_versions: Mapping[str, str] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt: list[dict[str, Any]] | None = None
    response: str | None = None
    # The tenant's policy keeps prompts and answers verbatim in the stores (`record_raw_text`);
    # otherwise the sinks store them de-identified (`deidentified`).
    raw_text: bool = False

    @property
    def flagged(self) -> bool:
        """Whether the record goes to review: anything the policy did not simply allow."""
        return self.action is not Action.ALLOW or any(
            v is not None and v.failed_guards for v in (self.input, self.output)
        )

    @property
    def categories(self) -> tuple[str, ...]:
        return merged_categories(self.input, self.output)

    def deidentified(self) -> DecisionRecord:
        """The record as the stores keep it: personal data in the prompt and answer replaced by
        placeholders such as ``[EMAIL]``, unless the tenant's policy keeps raw text. Without the
        classifiers package (which finds the spans) the text is left out rather than kept."""
        if self.raw_text or (self.prompt is None and self.response is None):
            return self
        try:
            from classifiers.pii import redact
        except ImportError:  # an upstream-only install without `railguard[classifiers]`
            return replace(self, prompt=None, response=None)
        prompt = deidentify_messages(self.prompt, redact) if self.prompt is not None else None
        response = redact(self.response) if self.response is not None else None
        return replace(self, prompt=prompt, response=response)

    def to_json(self) -> dict[str, Any]:
        lat = self.latency
        return {
            "schema": SCHEMA_VERSION,
            "request_id": self.request_id,
            "created": self.created,
            "tenant": self.tenant,
            "model": self.model,
            "model_version": self.model_version,
            "adapter": self.adapter,
            "backend": self.backend,
            "policy_version": self.policy_version,
            "guard_versions": dict(self.guard_versions),
            "language": self.language,
            "stream": self.stream,
            "action": self.action.value,
            "flagged": self.flagged,
            "status": self.status,
            "error_code": self.error_code,
            "categories": list(self.categories),
            "input": self.input.to_json() if self.input else None,
            "output": self.output.to_json() if self.output else None,
            "latency_ms": {
                "input_guard": lat.input_guard_ms,
                "output_guard": lat.output_guard_ms,
                "backend": lat.backend_ms,
                "total": lat.total_ms,
                "ttft": lat.ttft_ms,
                "holdback": lat.holdback_ms,
            },
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            },
            "prompt": self.prompt,
            "response": self.response,
            "raw_text": self.raw_text,
        }


def merged_categories(*verdicts: Verdict | None) -> tuple[str, ...]:
    """The categories of several verdicts, each once, in order."""
    seen: dict[str, None] = {}
    for verdict in verdicts:
        if verdict is not None:
            seen.update(dict.fromkeys(verdict.categories))
    return tuple(seen)
