"""The rule guard: the policy's own deny-lists and allow-lists, as regular expressions and keywords.

Each `EffectivePolicy` compiles its rules once (`EffectivePolicy.rule_guard`); the guard runner runs
them inline, before the classifiers.

All deny rules of a stage compile into one alternation, so a check is one pass over the text however many
rules there are. Allow rules mask what they match (same length, offsets kept) before the deny pass: an
allow pattern such as `kill (the|a) process` exempts that phrase from a deny keyword `kill`.

The text as written is read first, and its findings carry spans (redaction rewrites them); then each
of its other readings (`classifiers.canonical.views`: zero-width characters, look-alike letters,
leetspeak, spelled-out words undone, payloads decoded), whose findings carry no span, as their
offsets are not the text's: a rule that fires only there still refuses, but has nothing to redact.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from classifiers.canonical import views
from gateway.policy.model import Rule
from gateway.policy.verdict import Finding, Stage


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
        findings = list(self._scan(text, rules, deny, self._allow[stage]))
        fired = {f.source for f in findings}
        for reading in views(text):
            if reading == text:
                continue
            for finding in self._scan(reading, rules, deny, self._allow[stage]):
                if finding.source not in fired:
                    fired.add(finding.source)
                    findings.append(Finding(finding.category, finding.score, finding.source))
        return tuple(findings)

    @staticmethod
    def _scan(
        text: str, rules: list[Rule], deny: re.Pattern[str], allow: re.Pattern[str] | None
    ) -> Iterator[Finding]:
        if allow is not None:
            text = allow.sub(lambda m: " " * len(m.group(0)), text)
        for match in deny.finditer(text):
            group = match.lastgroup
            assert group is not None
            rule = rules[int(group[1:])]
            yield Finding(rule.category, 1.0, f"rule:{rule.id}", match.span())
