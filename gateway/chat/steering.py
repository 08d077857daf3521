"""The steering a chat request generates with: the policy's (a `steer` verdict) and what the request asks
for in its `railguard` block, where its API key may and its model can be steered."""

from __future__ import annotations

from gateway.backends.base import SteeringSpec
from gateway.errors import InvalidRequestError, UnsupportedParameterError
from gateway.policy.engine import EffectivePolicy
from gateway.policy.verdict import Verdict
from gateway.protocol import ChatCompletionRequest

__all__ = ["steering_for"]


def steering_for(
    request: ChatCompletionRequest, verdict: Verdict, policy: EffectivePolicy, *, local: bool
) -> tuple[SteeringSpec, ...]:
    """The vectors to steer with, or a 400 for vectors the key may not use or a model served by an
    upstream (which cannot be steered: a policy's `steer` there is answered unsteered, and recorded)."""
    options = request.railguard.steering if request.railguard else None
    asked = tuple(SteeringSpec(s.vector, s.scale) for s in options or ())
    refused = [s.vector for s in asked if s.vector not in policy.steering_vectors]
    if refused:
        raise InvalidRequestError(
            f"Steering vector(s) {refused} are not allowed for this API key.",
            param="railguard.steering",
            code="steering_not_allowed",
        )
    if not local:
        if asked:
            raise UnsupportedParameterError(
                f"The model `{request.model}` is served by an upstream and cannot be steered.",
                param="railguard.steering",
            )
        return ()
    return (*(SteeringSpec(s.vector, s.scale) for s in verdict.steering), *asked)
