"""Guards turn text into findings; the policy turns findings into a verdict."""

from gateway.guards.base import Action, Finding, Guard, GuardResult, Stage, Verdict

__all__ = ["Action", "Finding", "Guard", "GuardResult", "Stage", "Verdict"]
