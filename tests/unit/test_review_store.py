"""The review queue's store and agreement figures, on a real SQLite file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.review.agreement import cohen_kappa, fleiss_kappa, percent_agreement
from gateway.review.intake import DEFAULT_RULES, Intake, IntakeRule
from gateway.review.store import Label, ReviewError, ReviewStore


def record(i: int, action: str = "refuse", category: str = "violence", **kw: Any) -> dict[str, Any]:
    return {
        "request_id": f"r{i}", "created": time.time(), "tenant": "t", "language": "en", "action": action,
        "flagged": action != "allow", "categories": [category], "prompt": [{"role": "user", "content": "x"}],
        "response": "y", **kw,
    }  # fmt: skip


REFUSE = Label(action="refuse", category="violence")
ALLOW = Label(action="allow", category="none")


def test_cohen_kappa_by_hand() -> None:
    # 10 items: both say refuse on 4, both allow on 3, A refuse/B allow on 2, A allow/B refuse on 1
    pairs = [("r", "r")] * 4 + [("a", "a")] * 3 + [("r", "a")] * 2 + [("a", "r")]
    p_o = 7 / 10
    p_e = (6 / 10) * (5 / 10) + (4 / 10) * (5 / 10)  # A: 6 r, 4 a; B: 5 r, 5 a
    assert cohen_kappa(pairs) == pytest.approx((p_o - p_e) / (1 - p_e))
    assert percent_agreement(pairs) == pytest.approx(0.7)
    assert cohen_kappa([("r", "r"), ("r", "r")]) is None  # all one label: undefined
    assert cohen_kappa([]) is None


def test_fleiss_kappa_matches_cohen_style_hand_computation() -> None:
    # 3 raters, 4 items; P_i = (sum n_ij^2 - n) / (n (n - 1))
    items = [["a", "a", "a"], ["a", "a", "r"], ["r", "r", "r"], ["a", "r", "r"]]
    p_bar = (1 + 1 / 3 + 1 + 1 / 3) / 4
    p_e = (6 / 12) ** 2 + (6 / 12) ** 2
    assert fleiss_kappa(items) == pytest.approx((p_bar - p_e) / (1 - p_e))


def test_two_agreeing_labels_decide_an_item_and_a_disagreement_waits_for_an_adjudicator(
    tmp_path: Path,
) -> None:
    store = ReviewStore(tmp_path / "db", labels_per_item=2, gold_every=0)
    assert store.enqueue(record(1), reason="refused", priority=1)
    assert store.enqueue(record(2), reason="refused", priority=5)
    assert not store.enqueue(record(1), reason="refused", priority=1)  # a redelivery: no duplicate
    first = store.next_item("ann")
    assert first is not None and first["request_id"] == "r2"  # higher priority first
    assert "labels" not in first and "gold" not in first  # a reviewer does not see the others' labels
    assert store.label("ann", "r2", REFUSE)["status"] == "open"
    assert (
        store.label("bob", "r2", REFUSE.model_copy(update={"ideal_answer": "I can't help."}))["status"]
        == "done"
    )
    assert store.item("r2")["final"]["ideal_answer"] == "I can't help."
    store.label("ann", "r1", REFUSE)
    assert store.label("bob", "r1", ALLOW)["status"] == "adjudication"
    with pytest.raises(ReviewError, match="already adjudication") as err:
        store.label("cat", "r1", ALLOW)
    assert err.value.status == 409
    with pytest.raises(ReviewError, match="reason"):
        store.adjudicate("judy", "r1", ALLOW)
    store.adjudicate("judy", "r1", ALLOW.model_copy(update={"reason": "a news report, not a threat"}))
    item = store.item("r1")
    assert item["status"] == "done" and item["final"]["action"] == "allow"
    events = [e["event"] for e in store.audit("r1")]
    assert events == ["adjudicated", "disputed", "labelled", "labelled", "enqueued"]
    assert [x["request_id"] for x in store.export()] == ["r1", "r2"]


def test_gold_items_are_served_unannounced_and_scored(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "db", labels_per_item=2, gold_every=3)
    gold_line = {"type": "gold", "record": record(100), "answer": REFUSE.model_dump(mode="json")}
    assert store.import_lines([json.dumps(gold_line)], actor="admin") == {"label": 0, "gold": 1}
    for i in range(5):
        store.enqueue(record(i), reason="refused", priority=0)
    served = []
    for _ in range(3):  # an item is served until it is labelled
        item = store.next_item("ann")
        assert item is not None
        served.append(item)
        store.label("ann", item["request_id"], ALLOW)  # wrong on the gold item
    assert [s["request_id"] for s in served] == ["r0", "r1", "r100"]
    assert served[2]["status"] == "open" and "gold" not in served[2]  # unannounced
    stats = store.stats()
    [ann] = stats["reviewers"]
    assert ann["gold_items"] == 1 and ann["gold_accuracy"] == 0.0
    assert stats["queue"]["open"] == 5  # gold items are not part of the queue


def test_a_malformed_import_names_the_line_and_imports_nothing(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "db")
    store.enqueue(record(1), reason="refused", priority=0)
    good = {
        "type": "label",
        "request_id": "r1",
        "reviewer": "ann",
        "label": {"action": "refuse", "category": "violence"},
    }
    bad = {"type": "label", "request_id": "r1", "reviewer": "bob", "label": {"action": "maybe"}}
    with pytest.raises(ReviewError, match=r"^line 3: action: Input should be"):
        store.import_lines([json.dumps(good), "", json.dumps(bad)], actor="admin")
    with pytest.raises(ReviewError, match=r"^line 1: "):
        store.import_lines(["{not json"], actor="admin")
    with pytest.raises(ReviewError, match="not in the queue"):
        store.import_lines([json.dumps({**good, "request_id": "nope"})], actor="admin")
    assert store.item("r1")["labels"] == []  # nothing half-imported
    both = [json.dumps(good), json.dumps({**good, "reviewer": "bob"})]
    assert store.import_lines(both, actor="admin") == {"label": 2, "gold": 0}
    assert store.item("r1")["status"] == "done"


def test_intake_rules_priorities_quotas_and_disagreement(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "db", gold_every=0)
    intake = Intake(store, DEFAULT_RULES)
    assert not intake.offer(record(0, action="allow"))  # not flagged
    assert intake.offer(record(1, action="escalate"))
    disagree = record(2, action="refuse", input={"action": "allow"}, output={"action": "refuse"})
    assert intake.offer(disagree)
    assert intake.offer(record(3))
    items = {i: store.item(f"r{i}") for i in (1, 2, 3)}
    assert [items[i]["reason"] for i in (1, 2, 3)] == ["escalated", "guards disagree", "refused"]
    assert items[1]["priority"] > items[2]["priority"] > items[3]["priority"]
    quota = Intake(store, [IntakeRule(name="capped", daily_quota=2, categories=["hate"])])
    taken = [quota.offer(record(10 + i, category="hate")) for i in range(4)]
    assert taken == [True, True, False, False]
    band = IntakeRule(name="band", min_score=0.5, max_score=0.8)
    assert band.matches(record(20, input={"scores": {"hate": 0.6}}))
    assert not band.matches(record(21, input={"scores": {"hate": 0.9}}))


def test_the_review_cli_imports_exports_and_refuses_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    store = ReviewStore(tmp_path / "records.sqlite3")
    store.enqueue(record(1), reason="refused", priority=0)
    env = ["--config", str(tmp_path / "c.yaml")]
    (tmp_path / "c.yaml").write_text(f"cache_dir: {tmp_path}\nupstream: {{url: 'http://127.0.0.1:9/v1'}}\n")
    label = {"action": "refuse", "category": "violence"}
    lines = [
        json.dumps({"type": "label", "request_id": "r1", "reviewer": r, "label": label}) for r in ("a", "b")
    ]
    (tmp_path / "bad.jsonl").write_text(lines[0] + "\n{oops\n")
    assert main(["review", "import", str(tmp_path / "bad.jsonl"), *env]) == 2
    assert "line 2" in capsys.readouterr().err and store.item("r1")["labels"] == []
    (tmp_path / "good.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["review", "import", str(tmp_path / "good.jsonl"), "--actor", "vendor", *env]) == 0
    assert main(["review", "export", "--out", str(tmp_path / "out.jsonl"), *env]) == 0
    [exported] = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert exported["final"]["action"] == "refuse" and len(exported["labels"]) == 2
    assert store.audit("r1")[-2]["actor"] == "vendor"
    assert main(["review", "key"]) == 0
    key, digest = [line.split()[-1] for line in capsys.readouterr().out.splitlines()[-3:-1]]
    import hashlib

    assert hashlib.sha256(key.encode()).hexdigest() == digest
