"""Runs the guards on one stage of one request and asks the policy for a verdict.

Cheap guards (the policy's rule guard) run inline; `blocking` guards (ML classifiers) run concurrently
in a thread pool, never on the event loop, each within a time limit. A guard that raises or times out is
a failed guard: the policy's `fail_mode` decides what that means, and telemetry counts it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor

from gateway.guards.base import Guard
from gateway.policy.engine import EffectivePolicy
from gateway.policy.verdict import Action, GuardResult, Stage, Verdict
from gateway.telemetry import Telemetry

log = logging.getLogger(__name__)


class GuardRunner:
    def __init__(
        self,
        guards: Sequence[Guard],
        *,
        executor: Executor | None,
        timeout_s: float,
        telemetry: Telemetry,
    ) -> None:
        self.guards = tuple(guards)
        self._executor = executor
        self._timeout_s = timeout_s
        self._telemetry = telemetry

    @property
    def ready(self) -> bool:
        return all(getattr(guard, "ready", True) for guard in self.guards)

    @property
    def versions(self) -> dict[str, str]:
        """Each guard that reports a version (the classifiers: which models judged), by name."""
        found = {guard.name: getattr(guard, "version", None) for guard in self.guards}
        return {name: version for name, version in found.items() if version}

    async def check(self, stage: Stage, text: str, policy: EffectivePolicy, request_id: str) -> Verdict:
        inline = [policy.rule_guard, *(g for g in self.guards if not g.blocking)]
        results = [self._run_inline(g, text, stage, policy) for g in inline]
        blocking = [g for g in self.guards if g.blocking]
        if blocking and text:
            results += await asyncio.gather(*(self._run_blocking(g, text, stage, policy) for g in blocking))
        return policy.decide(stage, results, request_id)

    def clear_without_models(self, stage: Stage, text: str, policy: EffectivePolicy, request_id: str) -> bool:
        """Whether what runs without models finds nothing to act on: no rule fires, and no blocking
        guard's ``prescreen`` (the classifiers' PII patterns, microseconds) sees anything the policy
        would redact or refuse. False for a blocking guard without a prescreen: it cannot be known."""
        inline = [policy.rule_guard, *(g for g in self.guards if not g.blocking)]
        results = [self._run_inline(g, text, stage, policy) for g in inline]
        for guard in (g for g in self.guards if g.blocking):
            prescreen = getattr(guard, "prescreen", None)
            if prescreen is None:
                return False
            try:
                results.append(GuardResult(guard.name, prescreen(text, stage, policy.language), 0.0))
            except Exception:  # not ready, or a bug: the ordinary path decides
                return False
        if any(r.failed for r in results):
            return False
        return policy.decide(stage, results, request_id).action is Action.ALLOW

    def _run_inline(self, guard: Guard, text: str, stage: Stage, policy: EffectivePolicy) -> GuardResult:
        started = time.perf_counter()
        try:
            findings = guard.check(text, stage, policy.language)
        except Exception as exc:  # a guard's bug must not take the request down
            return self._failed(guard, stage, policy, started, exc)
        return GuardResult(guard.name, findings, (time.perf_counter() - started) * 1000)

    async def _run_blocking(
        self, guard: Guard, text: str, stage: Stage, policy: EffectivePolicy
    ) -> GuardResult:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            findings = await asyncio.wait_for(
                loop.run_in_executor(self._executor, guard.check, text, stage, policy.language),
                self._timeout_s,
            )
        except Exception as exc:
            return self._failed(guard, stage, policy, started, exc)
        elapsed = time.perf_counter() - started
        self._telemetry.classifier_latency(guard.name, elapsed)
        return GuardResult(guard.name, findings, elapsed * 1000)

    def _failed(
        self, guard: Guard, stage: Stage, policy: EffectivePolicy, started: float, exc: Exception
    ) -> GuardResult:
        reason = "timeout" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        log.warning("guard %s failed on %s (%s): %s", guard.name, stage, policy.fail_mode, reason)
        self._telemetry.guard_failure(guard.name, stage.value, policy.fail_mode)
        return GuardResult(guard.name, (), (time.perf_counter() - started) * 1000, error=reason)
