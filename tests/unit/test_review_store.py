"""The review queue's store and agreement figures, on a real SQLite file and on a real `redis-server`
(started here): the same tests pass on both stores."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.review.agreement import cohen_kappa, fleiss_kappa, percent_agreement
from gateway.review.intake import DEFAULT_RULES, Intake, IntakeRule
from gateway.review.store import Label, ReviewError, ReviewStore
from tests.review_stores import Stores


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
    make_store: Stores,
) -> None:
    store = make_store(labels_per_item=2, gold_every=0)
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


def test_gold_items_are_served_unannounced_and_scored(make_store: Stores) -> None:
    store = make_store(labels_per_item=2, gold_every=3)
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


def test_a_malformed_import_names_the_line_and_imports_nothing(make_store: Stores) -> None:
    store = make_store()
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


def test_intake_rules_priorities_quotas_and_disagreement(make_store: Stores) -> None:
    store = make_store(gold_every=0)
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
    make_store: Stores, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    store = make_store()
    store.enqueue(record(1), reason="refused", priority=0)
    env = ["--config", str(tmp_path / "c.yaml")]
    (tmp_path / "c.yaml").write_text(
        f"cache_dir: {tmp_path}\nupstream: {{url: 'http://127.0.0.1:9/v1'}}\n" + make_store.settings_yaml()
    )
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


def test_a_report_puts_an_item_at_the_top_of_the_queue(make_store: Stores) -> None:
    store = make_store(gold_every=0)
    for i in range(3):
        store.enqueue(record(i), reason="refused", priority=10)
    store.report("r2", record(2), actor="user", reason="it refused a recipe")
    store.report("r9", record(9), actor="user", reason="it answered something it should not have")
    with pytest.raises(ReviewError, match="no decision record") as err:
        store.report("r404", None, actor="user", reason="?")
    assert err.value.status == 404
    assert store.item("r9")["reason"] == "user report" and store.item("r2")["priority"] == 100
    served = [store.next_item(name) for name in ("ann", "bob", "cat")]
    assert [s["request_id"] for s in served if s] == ["r2", "r2", "r2"]  # oldest of the priority 100
    store.label("ann", "r2", ALLOW)
    store.label("bob", "r2", REFUSE)  # disputed: it leaves the open queue, still at the top
    following = [store.next_item(name) for name in ("ann", "dan")]
    assert [(s or {}).get("request_id") for s in following] == ["r9", "r9"]
    assert [e["event"] for e in store.audit("r9")] == ["reported", "enqueued"]
    assert store.backlog() == 4


def test_two_stores_on_one_state_serve_one_queue_under_concurrent_writes(make_store: Stores) -> None:
    """Two replicas' stores: the same record delivered to both enters once, labels written at the same
    time by two reviewers through different stores settle each item exactly once."""
    from concurrent.futures import ThreadPoolExecutor

    first, second = make_store(labels_per_item=2, gold_every=0), make_store(labels_per_item=2, gold_every=0)
    records = [record(i) for i in range(20)]
    deliveries = [(store, r) for r in records for store in (first, second, first, second)]
    with ThreadPoolExecutor(4) as pool:
        entered = list(pool.map(lambda d: d[0].enqueue(d[1], reason="refused", priority=0), deliveries))
    assert sum(entered) == 20

    def review(store: ReviewStore, reviewer: str) -> None:
        for i in range(20):
            store.label(reviewer, f"r{i}", REFUSE if reviewer == "ann" or i % 4 else ALLOW)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda a: review(*a), [(first, "ann"), (second, "bob")]))
    assert first.stats() == second.stats()
    assert first.stats()["queue"] == {"open": 0, "adjudication": 5, "done": 15}
    events = [e["event"] for e in second.audit(limit=1000)]
    assert (events.count("enqueued"), events.count("labelled")) == (20, 40)
    assert (events.count("decided"), events.count("disputed")) == (15, 5)
    assert len(second.disputed()) == len(first.disputed()) == 5


def test_candidates_are_kept_once_and_a_ranking_must_fit_them(make_store: Stores) -> None:
    """Every reviewer ranks the same candidate answers: the first set kept wins; a ranking names each of
    them at most once; agreeing labels keep the first ranking of two or more for the trainer."""
    store = make_store(labels_per_item=2, gold_every=0)
    store.enqueue(record(1), reason="refused", priority=1)
    ranked = REFUSE.model_copy(update={"ranking": [1, 0]})
    with pytest.raises(ReviewError, match="no candidate answers") as err:
        store.label("ann", "r1", ranked)
    assert err.value.status == 400 and store.item("r1")["candidates"] == []
    made = [{"text": f"answer {i}", "model": "m", "finish_reason": "stop"} for i in range(3)]
    assert store.set_candidates("ann", "r1", made) == made
    later = [{"text": "another", "model": "m", "finish_reason": "stop"}] * 3
    assert store.set_candidates("bob", "r1", later) == made  # kept once: bob ranks ann's candidates
    assert store.item("r1", reveal=False)["candidates"] == made
    for bad, message in (([0, 3], "index in 0..2"), ([2, 2], "appears twice")):
        with pytest.raises(ReviewError, match=message):
            store.label("ann", "r1", REFUSE.model_copy(update={"ranking": bad}))
    assert store.item("r1")["labels"] == []  # nothing written
    store.label("ann", "r1", REFUSE.model_copy(update={"ranking": [2]}))  # one ranked: no preference
    assert store.label("bob", "r1", ranked)["status"] == "done"
    assert store.item("r1")["final"]["ranking"] == [1, 0]
    events = [e["event"] for e in store.audit("r1")]
    assert events.count("candidates generated") == 1
    store.enqueue(record(2), reason="refused", priority=1)
    store.label("ann", "r2", REFUSE)
    store.label("bob", "r2", REFUSE)
    for request_id, status in (("r2", 409), ("r404", 404)):  # decided without candidates; unknown
        with pytest.raises(ReviewError) as err:
            store.set_candidates("cat", request_id, made)
        assert err.value.status == status
    assert store.item("r2")["candidates"] == []


def test_a_review_file_from_before_candidates_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    from gateway.review.store import SqliteReviewStore

    path = tmp_path / "records.sqlite3"
    SqliteReviewStore(path).enqueue(record(1), reason="refused", priority=1)
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE review_items DROP COLUMN candidates")
    store = SqliteReviewStore(path)
    assert store.item("r1")["candidates"] == []
    store.set_candidates("ann", "r1", [{"text": "a", "model": "m", "finish_reason": "stop"}])
    assert store.item("r1")["candidates"][0]["text"] == "a"
