from __future__ import annotations

from pathlib import Path

import pytest

from classifiers.language import detect
from gateway.policy import PolicyEngine, PolicyError, load_policy
from gateway.policy.verdict import Action, Finding, GuardResult, Stage


def _engine(path: Path) -> PolicyEngine:
    return PolicyEngine(load_policy(path))


def test_default_policy_loads_and_refuses_a_weapons_request() -> None:
    policy = PolicyEngine(load_policy()).resolve("default", "en")
    findings = policy.rule_guard.check("how do I synthesize sarin", Stage.INPUT, "en")
    verdict = policy.decide(Stage.INPUT, [GuardResult("rules", findings, 0.0)], "r1")
    assert verdict.action is Action.REFUSE
    assert verdict.categories == ("indiscriminate_weapons",) and verdict.principle == "weapons"
    assert "mass casualties" in (verdict.message or "")


def test_benign_text_is_allowed(test_policy_path: Path) -> None:
    policy = _engine(test_policy_path).resolve("default", "en")
    findings = policy.rule_guard.check("What is the capital of France?", Stage.INPUT, "en")
    assert findings == ()
    assert policy.decide(Stage.INPUT, [], "r").action is Action.ALLOW


def test_rules_respect_their_stage(test_policy_path: Path) -> None:
    guard = _engine(test_policy_path).resolve("default", "en").rule_guard
    assert guard.check("the code is 1234", Stage.OUTPUT, "en")
    assert not guard.check("the code is 1234", Stage.INPUT, "en")


def test_allow_rule_masks_the_deny_keyword(test_policy_path: Path) -> None:
    guard = _engine(test_policy_path).resolve("default", "en").rule_guard
    assert not guard.check("Read the launch codes of conduct", Stage.INPUT, "en")
    found = guard.check("Read the launch codes of conduct, then the launch codes", Stage.INPUT, "en")
    assert [f.span for f in found] == [(43, 55)]


def test_tenant_and_language_overlays(test_policy_path: Path) -> None:
    engine = _engine(test_policy_path)
    assert engine.resolve("strict", "en").refusal_mode == "error"
    assert engine.resolve("other", "en").refusal_mode == "message"
    finding = Finding("secrets", 1.0, "rule:launch-codes-ask", (0, 5))
    de = engine.resolve("default", "de").decide(Stage.INPUT, [GuardResult("r", (finding,), 0)], "x")
    assert de.message == "Das kann ich nicht teilen: Wir verraten niemals die Startcodes."
    fr = engine.resolve("default", "fr").decide(Stage.INPUT, [GuardResult("r", (finding,), 0)], "x")
    assert fr.message == "I can't share that: we never reveal the launch codes."  # falls back to en


def test_strictest_action_wins_and_thresholds_apply(test_policy_path: Path) -> None:
    policy = _engine(test_policy_path).resolve("default", "en")
    findings = (
        Finding("pii", 0.9, "clf"),
        Finding("needs_review", 0.8, "clf"),
        Finding("secrets", 0.2, "clf"),
    )  # below the 0.5 threshold
    verdict = policy.decide(Stage.INPUT, [GuardResult("clf", findings, 1.0)], "req-9")
    assert verdict.action is Action.ESCALATE
    assert verdict.categories == ("needs_review", "pii")
    assert "req-9" in (verdict.message or "")
    assert verdict.scores == {"pii": 0.9, "needs_review": 0.8, "secrets": 0.2}


@pytest.mark.parametrize(("mode", "expected"), [("fail_closed", Action.REFUSE), ("fail_open", Action.ALLOW)])
def test_failed_guard_follows_fail_mode(
    tmp_path: Path, test_policy_path: Path, mode: str, expected: Action
) -> None:
    text = test_policy_path.read_text().replace('version: "test-1"', f'version: "t"\nfail_mode: {mode}')
    path = tmp_path / "p.yaml"
    path.write_text(text)
    policy = _engine(path).resolve("default", "en")
    verdict = policy.decide(Stage.INPUT, [GuardResult("clf", (), 2.0, error="timeout")], "r")
    assert verdict.action is expected and verdict.failed_guards == ("clf",)


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ("rules:\n  - {id: bad, patterns: ['(unclosed']}\n", "bad pattern"),
        ("categories:\n  x: {action: explode}\n", "action"),
        ("categories:\n  x: {action: refuse, principle: nowhere}\n", "unknown principles"),
        ("rules:\n  - {id: empty}\n", "neither patterns nor keywords"),
        ("categories:\n  x: {action: steer}\n", "steer"),
        ("categories:\n  x: {threshold: 0.5, grey: {threshold: 0.7, action: escalate}}\n", "below"),
        ("categories:\n  x: {grey: {threshold: 0.3}}\n", "steer"),  # steer needs its vector
        ("categories:\n  x: {grey: {threshold: 0.3, action: allow}}\n", "no band"),
        (
            "categories:\n  x: {grey: {threshold: 0.3, action: escalate, principle: gone}}\n",
            "unknown principles",
        ),
        ("surprise: 1\n", "surprise"),
    ],
)
def test_invalid_policies_fail_at_load_with_a_reason(tmp_path: Path, patch: str, needle: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text('version: "1"\nprinciples: {general: {text: "x"}}\n' + patch)
    with pytest.raises(PolicyError, match=needle):
        load_policy(path)


def test_steer_verdict_carries_its_vector(test_policy_path: Path) -> None:
    policy = _engine(test_policy_path).resolve("default", "en")
    finding = Finding("grey_area", 1.0, "rule:grey")
    verdict = policy.decide(Stage.INPUT, [GuardResult("rules", (finding,), 0.0)], "r")
    assert verdict.action is Action.STEER
    assert [(s.vector, s.scale) for s in verdict.steering] == [("refusal", 1.5)]
    assert verdict.message is None  # steering answers; it does not refuse


def test_a_grey_band_steers_below_the_refusal_threshold(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        'version: "1"\nprinciples: {general: {text: "x"}, care: {text: "y"}}\n'
        "categories:\n"
        "  unsafe: {action: refuse, grey: {threshold: 0.3, steer: {vector: refusal, scale: 0.5}}}\n"
        "  hate: {action: refuse, threshold: 0.8,"
        " grey: {threshold: 0.4, action: escalate, principle: care}}\n"
    )
    policy = _engine(path).resolve("default", "en")

    def decide(category: str, score: float, threshold: float = 0.6):
        finding = Finding(category, score, "classifier:test", threshold=threshold)
        return policy.decide(Stage.INPUT, [GuardResult("classifier", (finding,), 0.0)], "r")

    assert decide("unsafe", 0.2).action is Action.ALLOW
    grey = decide("unsafe", 0.45)  # the band reaches up to the classifier's own threshold, 0.6
    assert grey.action is Action.STEER and [(s.vector, s.scale) for s in grey.steering] == [("refusal", 0.5)]
    assert grey.message is None
    assert decide("unsafe", 0.7).action is Action.REFUSE and decide("unsafe", 0.7).steering == ()
    assert decide("hate", 0.7).action is Action.ESCALATE and decide("hate", 0.7).principle == "care"
    assert decide("hate", 0.9).action is Action.REFUSE


def test_the_default_policy_writes_every_principle_in_every_language_it_refuses_in() -> None:
    policy = load_policy()
    languages = policy.message_languages()
    assert languages >= {"en", "de", "fr", "es"}
    texts = {name: p.text for name, p in policy.principles.items()}
    for name, text in texts.items():
        assert isinstance(text, dict) and set(text) == languages, name
    engine = PolicyEngine(policy)
    for language in sorted(languages):
        foreign = [t[other] for t in texts.values() for other in t if other != language]
        for name, principle in policy.principles.items():
            message = engine.resolve("default", language).message(Action.REFUSE, name, "r") or ""
            assert detect(message) == language, message
            assert not [text for text in foreign if text in message], message
            assert principle.refusal or message.endswith(texts[name][language]), message


def test_a_language_the_policy_does_not_write_in_gets_the_default_one_whole() -> None:
    policy = load_policy()
    message = PolicyEngine(policy).resolve("default", "it").message(Action.REFUSE, "violence", "r")
    assert message == "I can't help with that. It conflicts with our principle: " + policy.principles[
        "violence"
    ].text_in("en", "en")


def test_a_principle_without_a_text_in_a_message_language_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        'version: "1"\nprinciples:\n'
        "  general: {text: {en: We do no harm., de: Wir schaden nicht.}}\n"
        "  care: {text: {en: We care.}}\n"
        "messages: {refusal: {en: 'No: {principle}', de: 'Nein: {principle}'}}\n"
        "tenants: {acme: {messages: {escalation: {fr: 'Plus tard ({request_id})'}}}}\n"
    )
    with pytest.raises(PolicyError, match=r"add principles\.general\.text\.fr, principles\.care\.text\.de"):
        load_policy(path)


def test_a_principle_with_one_text_still_loads_and_is_cited_as_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The older form, one string for every language, is accepted (user policies keep loading), with
    a warning at load that names what is cited untranslated."""
    path = tmp_path / "p.yaml"
    path.write_text(
        'version: "1"\nprinciples: {general: {text: We do no harm.}}\n'
        "messages: {refusal: {en: 'No: {principle}', de: 'Nein: {principle}'}}\n"
    )
    with caplog.at_level("WARNING", logger="gateway.policy.model"):
        engine = _engine(path)
    assert "general" in caplog.text and "de" in caplog.text
    assert engine.resolve("t", "de").message(Action.REFUSE, "general", "r") == "Nein: We do no harm."
