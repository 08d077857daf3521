"""The rule guard: deny-lists and allow-lists from the policy file, as regular expressions and keywords.

All deny rules of a stage compile into one alternation, so a check is one pass over the text however many
rules there are. Allow rules mask what they match (same length, offsets kept) before the deny pass: an
allow pattern such as `kill (the|a) process` exempts that phrase from a deny keyword `kill`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.guards.base import Finding, Stage
from gateway.policy.model import Rule


def _rule_regex(rule: Rule) -> str:
    parts = list(rule.patterns)
    parts += [r"\b" + re.escape(k).replace(r"\ ", r"\s+") + r"\b" for k in rule.keywords]
    return "|".join(f"(?:{p})" for p in parts)


def _compile(rules: Sequence[Rule]) -> re.Pattern[str] | None:
    if not rules:
        return None
    alternatives = [f"(?P<r{i}>{_rule_regex(rule)})" for i, rule in enumerate(rules)]
    return re.compile("|".join(alternatives), re.IGNORECASE)


class RuleGuard:
    name = "rules"
    blocking = False

    def __init__(self, deny: Sequence[Rule], allow: Sequence[Rule]) -> None:
        self.rules = tuple(deny)
        self._deny: dict[Stage, tuple[list[Rule], re.Pattern[str] | None]] = {}
        self._allow: dict[Stage, re.Pattern[str] | None] = {}
        for stage in Stage:
            stage_deny = [r for r in deny if stage in r.stages]
            self._deny[stage] = (stage_deny, _compile(stage_deny))
            self._allow[stage] = _compile([r for r in allow if stage in r.stages])

    def check(self, text: str, stage: Stage, language: str) -> tuple[Finding, ...]:
        rules, deny = self._deny[stage]
        if deny is None or not text:
            return ()
        allow = self._allow[stage]
        if allow is not None:
            text = allow.sub(lambda m: " " * len(m.group(0)), text)
        findings = []
        for match in deny.finditer(text):
            group = match.lastgroup
            assert group is not None
            rule = rules[int(group[1:])]
            findings.append(Finding(rule.category, 1.0, f"rule:{rule.id}", match.span()))
        return tuple(findings)
