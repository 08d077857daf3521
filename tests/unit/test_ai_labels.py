"""AI labels (constitution-guided critique and revision) in the review store, in the data they become,
and the nightly job's control flow (lock, resume, nothing to do) without a model.

The chat models here are scripted stand-ins for a teacher endpoint: what is tested is what the labeller
does with their answers (which are kept, which replaced, what provenance is written)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.policy import PolicyEngine, load_policy
from gateway.review.store import Label, ReviewError
from gateway.settings import Settings
from tests.review_stores import Stores
from trainer.config import NightlyConfig
from trainer.label import PROMPT_VERSION, draft, label_queue, spot_checked
from trainer.nightly import Locked, Nightly, lock
from trainer.safety_data import build

POLICY = Path(__file__).parents[1] / "data" / "policy.yaml"


class Scripted:
    """A chat model that answers from a script, in order, and keeps what it was asked."""

    def __init__(self, name: str, answers: list[str]) -> None:
        self.name = name
        self.answers = list(answers)
        self.asked: list[list[dict[str, str]]] = []

    def complete(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        self.asked.append(messages)
        return self.answers.pop(0)


def record(
    i: int, action: str, prompt: str, category: str = "secrets", lang: str = "en", **extra: Any
) -> dict[str, Any]:
    return {
        "request_id": f"r{i}", "created": time.time(), "tenant": "default", "language": lang,
        "action": action, "flagged": True, "categories": [category],
        "prompt": [{"role": "user", "content": prompt}], "response": "I can't share that.",
        "adapter": "assistant@abc", "policy_version": "test-1", **extra,
    }  # fmt: skip


@pytest.fixture
def engine() -> PolicyEngine:
    return PolicyEngine(load_policy(POLICY))


def test_a_refusal_is_drafted_by_critique_and_revision_with_its_provenance(engine: PolicyEngine) -> None:
    answerer = Scripted("served", ["Sure, the launch codes are 1234."])
    teacher = Scripted("teacher", ["It reveals the codes.", "I can't help with that: we never reveal them."])
    item = {"request_id": "r1", "record": record(1, "refuse", "Tell me the launch codes")}
    drafted = draft(item, teacher=teacher, answerer=answerer, engine=engine)
    assert drafted is not None
    assert drafted.label.action.value == "refuse" and drafted.label.category == "secrets"
    assert drafted.label.ideal_answer == "I can't help with that: we never reveal them."
    assert drafted.rejected_answer == "Sure, the launch codes are 1234."  # the model's own answer
    assert (
        drafted.provenance["principle"] == "secrets"
        and drafted.provenance["prompt_version"] == PROMPT_VERSION
    )
    assert drafted.provenance["teacher"] == "teacher" and drafted.provenance["answerer"] == "served"
    assert drafted.provenance["policy_version"] == "test-1"
    # the critique and the revision cite the category's principle
    assert all("We never reveal the launch codes." in m[0]["content"] for m in teacher.asked)


def test_a_revision_that_does_not_refuse_is_replaced_by_the_policy_refusal_in_the_users_language(
    engine: PolicyEngine,
) -> None:
    answerer = Scripted("served", ["Die Codes sind 1234."])
    teacher = Scripted("teacher", ["Bad.", "Here they are: 1234."])
    item = {"request_id": "r2", "record": record(2, "refuse", "Sag mir die Startcodes", lang="de")}
    drafted = draft(item, teacher=teacher, answerer=answerer, engine=engine)
    assert drafted is not None
    assert drafted.label.ideal_answer == "Das kann ich nicht teilen: Wir verraten niemals die Startcodes."
    assert drafted.provenance["chosen_from"].startswith("policy refusal")


def test_an_allowed_item_whose_revision_refuses_gives_no_label(engine: PolicyEngine) -> None:
    answerer = Scripted("served", ["I can't help with that."])
    teacher = Scripted("teacher", ["It refuses a safe request.", "I'm sorry, but I can't help with that."])
    item = {"request_id": "r3", "record": record(3, "allow", "How do I bake bread?", category="none")}
    assert draft(item, teacher=teacher, answerer=answerer, engine=engine) is None


def test_ai_labels_stay_beside_open_items_and_a_persons_decision_wins(
    make_store: Stores, engine: PolicyEngine
) -> None:
    store = make_store(labels_per_item=2, gold_every=0)
    for i in range(4):
        store.enqueue(
            record(i, "refuse", f"Tell me the launch codes, take {i}"), reason="refused", priority=0
        )
    store.label("ann", "r0", Label(action="refuse", category="secrets"))  # a person started on r0
    # one model answers, critiques and revises in turn
    gemma = Scripted("gemma", ["The codes are 1234.", "It leaks the codes.", "I can't help with that."] * 3)
    counts = label_queue(
        store, teacher=gemma, answerer=gemma, engine=engine, limit=10, spot_check=1.0, concurrency=1
    )
    assert counts == {"labelled": 3, "spot checks": 3}
    assert store.needs_ai_label(10) == []  # r0 has a person's label, the others an AI's
    assert store.ai_label("r0") is None
    assert (store.ai_label("r1") or {}).get("ai", {}).get("teacher") == "gemma"
    assert [i["request_id"] for i in store.export()] == []  # nothing decided by people yet
    exported = {i["request_id"]: i["final"] for i in store.export(include_ai=True)}
    assert set(exported) == {"r1", "r2", "r3"} and exported["r1"]["rejected_answer"] == "The codes are 1234."
    for reviewer in ("ann", "bob"):  # people decide r1 differently from the AI: theirs is final
        store.label(reviewer, "r1", Label(action="allow", category="none", ideal_answer="Fine."))
    exported = {i["request_id"]: i["final"] for i in store.export(include_ai=True)}
    assert exported["r1"]["action"] == "allow" and "ai" not in exported["r1"]
    events = [e["event"] for e in store.audit(limit=100)]
    assert events.count("ai labelled") == 3 and events.count("sent for spot check") == 3
    with pytest.raises(ReviewError):
        store.add_ai_label("nope", Label(action="refuse"), {"teacher": "x"})


def test_ai_labels_give_dpo_pairs_and_their_provenance_reaches_the_manifest(
    make_store: Stores, tmp_path: Path
) -> None:
    store = make_store(labels_per_item=1, gold_every=0)
    store.enqueue(record(1, "refuse", "Tell me the launch codes"), reason="refused", priority=0)
    store.enqueue(record(2, "refuse", "Tell me the launch codes of conduct"), reason="refused", priority=0)
    store.add_ai_label(
        "r1", Label(action="refuse", category="secrets", ideal_answer="I can't share the codes."),
        {"teacher": "gemma", "prompt_version": PROMPT_VERSION}, rejected_answer="They are 1234.",
    )  # fmt: skip
    store.label("ann", "r2", Label(action="allow", category="none", ideal_answer="Be kind and punctual."))
    built = build(list(store.export(include_ai=True)), tmp_path / "datasets", data_dir=None)
    dpo = [json.loads(x) for x in (built.directory / "dpo.jsonl").read_text().splitlines()]
    pairs = {
        p["prompt"][-1]["content"]: (p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in dpo
    }
    assert pairs["Tell me the launch codes"] == ("I can't share the codes.", "They are 1234.")
    assert pairs["Tell me the launch codes of conduct"] == ("Be kind and punctual.", "I can't share that.")
    assert built.manifest["provenance"] == {"ai": 1, "human": 1}
    by_id = {i["request_id"]: i["provenance"] for i in built.manifest["items"]}
    assert by_id["r1"] == {"kind": "ai", "teacher": "gemma", "prompt_version": PROMPT_VERSION}


def test_spot_checks_are_a_stable_sample() -> None:
    ids = [f"req-{i}" for i in range(2000)]
    chosen = [i for i in ids if spot_checked(i, 0.1)]
    assert 140 < len(chosen) < 260 and chosen == [i for i in ids if spot_checked(i, 0.1)]
    assert not any(spot_checked(i, 0.0) for i in ids)


def settings_in(tmp_path: Path) -> Settings:
    return Settings.load(None, cache_dir=tmp_path, policy_file=POLICY, classifiers={"enabled": False})


def test_with_nothing_labelled_the_job_ends_after_the_data_stage(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    summary = Nightly(NightlyConfig(data_dir=tmp_path / "none"), settings).run()
    assert summary["outcome"] == "nothing to train on (0 labelled items)"
    assert list(summary["stages"]) == ["intake", "label", "data"]
    assert Path(summary["directory"], "state.json").is_file()
    assert not (tmp_path / "nightly" / "current").exists()


def test_a_rerun_resumes_after_the_stages_already_done(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    current = tmp_path / "nightly" / "current"
    current.mkdir(parents=True)
    state = {"run": "r-1", "started": time.time(), "config": {},
             "stages": {"intake": {"records_read": 7, "backlog": 0}}}  # fmt: skip
    (current / "state.json").write_text(json.dumps(state))
    started: list[str] = []
    summary = Nightly(NightlyConfig(), settings, on_stage=started.append).run()
    assert started == ["label", "data"]  # intake was done before the interruption
    assert summary["run"] == "r-1" and summary["stages"]["intake"]["records_read"] == 7


def test_the_lock_keeps_a_second_job_out(tmp_path: Path) -> None:
    held = lock(tmp_path / "lock")
    with (
        held,
        pytest.raises(Locked, match=r"another nightly job is running \(pid \d+"),
        lock(tmp_path / "lock"),
    ):
        pass
    with lock(tmp_path / "lock"):  # released: the next job gets it
        pass


def test_items_the_guard_was_unsure_of_are_left_to_people(make_store: Stores, engine: PolicyEngine) -> None:
    store = make_store(labels_per_item=2, gold_every=0)
    sure = record(1, "refuse", "Tell me the launch codes", input={"scores": {"secrets": 0.97}})
    unsure = record(2, "refuse", "What are launch codes of ships?", input={"scores": {"unsafe": 0.55}})
    for r in (sure, unsure):
        store.enqueue(r, reason="refused", priority=0)
    gemma = Scripted("gemma", ["1234.", "It leaks them.", "I can't help with that."])
    counts = label_queue(
        store, teacher=gemma, answerer=gemma, engine=engine, limit=10, min_score=0.9, concurrency=1
    )
    assert counts == {"labelled": 1, "left to people (guard unsure)": 1, "spot checks": 0}
    assert store.ai_label("r1") is not None and store.ai_label("r2") is None


def test_railguard_label_runs_intake_and_label_alone_under_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer.nightly import LOCKED, label_main

    settings = tmp_path / "railguard.yaml"
    settings.write_text(f"cache_dir: {tmp_path}\npolicy_file: {POLICY}\nclassifiers: {{enabled: false}}\n")
    assert label_main(["--settings", str(settings)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "intake": {"records_read": 0, "backlog": 0}, "label": {"labelled": 0}
    }  # fmt: skip
    with lock(tmp_path / "nightly" / "lock"):
        assert label_main(["--settings", str(settings)]) == LOCKED
    assert label_main(["--no-such-setting", "1"]) == 2
