"""Guards turn text into findings (`base.Guard`); `runner.GuardRunner` runs them on one stage of a request
and asks the policy (`gateway.policy`) for its verdict. The policy's own rules are `gateway.policy.rules`."""

from gateway.guards.base import Guard
from gateway.guards.runner import GuardRunner

__all__ = ["Guard", "GuardRunner"]
