"""From findings to a verdict, under the policy that applies to this tenant and language."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from gateway.policy.model import CategoryPolicy, Overlay, Policy, Rule, SteerPolicy, StreamPolicy
from gateway.policy.rules import RuleGuard
from gateway.policy.verdict import Action, Finding, GuardResult, Stage, Steering, Verdict

BANNED_PHRASE = "banned_phrase"

_FALLBACK_MESSAGES = {
    "refusal": "I can't help with that. This request conflicts with the principle: {principle}",
    "escalation": "This request needs a review by a person before it can be answered. "
    "Reference: {request_id}",
}


@dataclass(frozen=True, slots=True)
class _Judgement:
    """What the policy makes of one finding."""

    action: Action
    principle: str | None = None
    steer: SteerPolicy | None = None


@dataclass(frozen=True)
class EffectivePolicy:
    """The base policy with the language overlay and then the tenant overlay applied."""

    policy: Policy
    language: str
    categories: dict[str, CategoryPolicy]
    rules: tuple[Rule, ...]
    allow: tuple[Rule, ...]
    refusal_mode: str
    fail_mode: str
    stream: StreamPolicy
    messages: dict[str, dict[str, str]]
    banned_phrases: tuple[str, ...] = ()
    steering_vectors: frozenset[str] = frozenset()
    record_raw_text: bool = False

    @property
    def version(self) -> str:
        return self.policy.version

    @cached_property
    def rule_guard(self) -> RuleGuard:
        rules = list(self.rules)
        if self.banned_phrases:
            rules.append(
                Rule(
                    id="banned-phrases",
                    category=BANNED_PHRASE,
                    keywords=list(self.banned_phrases),
                    stages=[Stage.OUTPUT],
                )
            )
        return RuleGuard(rules, self.allow)

    @cached_property
    def _rule_by_source(self) -> dict[str, Rule]:
        return {f"rule:{r.id}": r for r in (*self.rules, *self.rule_guard.rules)}

    def decide(self, stage: Stage, results: list[GuardResult], request_id: str) -> Verdict:
        findings = tuple(f for r in results for f in r.findings)
        failed = tuple(r.guard for r in results if r.failed)
        latency = sum(r.latency_ms for r in results)
        scores: dict[str, float] = {}
        triggered: dict[str, _Judgement] = {}
        for finding in findings:
            scores[finding.category] = max(scores.get(finding.category, 0.0), finding.score)
            judged = self._judge(finding)
            if judged.action is not Action.ALLOW:
                previous = triggered.get(finding.category)
                if previous is None or judged.action.severity > previous.action.severity:
                    triggered[finding.category] = judged
        if failed and self.fail_mode == "fail_closed":
            triggered["guard_failure"] = _Judgement(Action.REFUSE)
        if not triggered:
            return Verdict(stage, Action.ALLOW, (), findings, None, None, latency, failed, scores)
        # The strictest action first; among equals, a category that names its principle (specific)
        # before one that does not (generic, such as the aggregate `unsafe`).
        ordered = sorted(triggered.items(), key=lambda kv: (-kv[1].action.severity, kv[1].principle is None))
        action = ordered[0][1].action
        principle = ordered[0][1].principle or self.policy.default_principle
        message = self.message(action, principle, request_id)
        categories = tuple(c for c, _ in ordered)
        steering = self._steering([j for _, j in ordered]) if action is Action.STEER else ()
        return Verdict(
            stage, action, categories, findings, principle, message, latency, failed, scores, steering
        )

    @staticmethod
    def _steering(judged: list[_Judgement]) -> tuple[Steering, ...]:
        specs = {}
        for judgement in judged:
            steer = judgement.steer
            if steer is not None:
                specs[steer.vector] = Steering(steer.vector, steer.scale)
        return tuple(specs.values())

    def _judge(self, finding: Finding) -> _Judgement:
        rule = self._rule_by_source.get(finding.source)
        category = self.categories.get(finding.category)
        threshold = category.threshold if category and category.threshold is not None else finding.threshold
        if finding.score < threshold:
            grey = category.grey if category else None
            if category is not None and grey is not None and finding.score >= grey.threshold:
                return _Judgement(grey.action, grey.principle or category.principle, grey.steer)
            return _Judgement(Action.ALLOW)
        if rule is not None and rule.action is not None:
            principle = rule.principle or (category.principle if category else None)
            return _Judgement(rule.action, principle, category.steer if category else None)
        if category is None:
            # A deny rule with an unlisted category refuses; an unlisted classifier category is noted.
            return _Judgement(Action.REFUSE if rule else Action.ALLOW, rule.principle if rule else None)
        principle = (rule.principle if rule else None) or category.principle
        return _Judgement(category.action, principle, category.steer)

    def message(self, action: Action, principle_id: str, request_id: str) -> str | None:
        if not action.blocks:
            return None
        principle = self.policy.principles[principle_id]
        own = principle.refusal if action is Action.REFUSE else {}
        kind = "refusal" if action is Action.REFUSE else "escalation"
        generic = self.messages.get(kind, {})
        default = self.policy.default_language
        # The user's language if the policy writes this message in it, else the default language; the
        # principle's own message before the generic template, and the principle cited in that language.
        language = self.language if self.language in own or self.language in generic else default
        template = own.get(language) or generic.get(language) or _FALLBACK_MESSAGES[kind]
        text = principle.text_in(language, default)
        return template.format(principle=text, id=principle_id, request_id=request_id)


class PolicyEngine:
    """Resolves (tenant, language) to an `EffectivePolicy`, once each: they are few and immutable."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._resolved: dict[tuple[str, str], EffectivePolicy] = {}

    @property
    def version(self) -> str:
        return self.policy.version

    def language_for(self, requested: str | None) -> str:
        return (requested or self.policy.default_language).lower()

    def resolve(self, tenant: str, language: str) -> EffectivePolicy:
        key = (tenant, language)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolved[key] = self._build(tenant, language)
        return found

    def _build(self, tenant: str, language: str) -> EffectivePolicy:
        base = self.policy
        overlays: list[Overlay] = [base]
        if language in base.languages:
            overlays.append(base.languages[language])
        if tenant in base.tenants:
            overlays.append(base.tenants[tenant])
        categories: dict[str, CategoryPolicy] = {}
        rules: list[Rule] = []
        allow: list[Rule] = []
        messages: dict[str, dict[str, str]] = {}
        banned: list[str] = []
        vectors: set[str] = set()
        refusal_mode, fail_mode, stream = "message", "fail_closed", StreamPolicy()
        raw_text = False
        for overlay in overlays:
            categories.update(overlay.categories)
            rules += overlay.rules
            allow += overlay.allow
            for kind, texts in overlay.messages.items():
                messages[kind] = {**messages.get(kind, {}), **texts}
            refusal_mode = overlay.refusal_mode or refusal_mode
            fail_mode = overlay.fail_mode or fail_mode
            stream = overlay.stream or stream
            raw_text = raw_text if overlay.record_raw_text is None else overlay.record_raw_text
            banned += overlay.banned_phrases
            vectors |= set(overlay.steering_vectors)
        return EffectivePolicy(
            base,
            language,
            categories,
            tuple(rules),
            tuple(allow),
            refusal_mode,
            fail_mode,
            stream,
            messages,
            tuple(dict.fromkeys(banned)),
            frozenset(vectors),
            raw_text,
        )
