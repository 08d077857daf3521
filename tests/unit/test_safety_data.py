"""`railguard data build`: decided review items become SFT and DPO data, de-identified, decontaminated,
content-addressed, with a manifest an audit can follow back to the records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from classifiers.cli import default_data_dir
from gateway.review.store import Label, SqliteReviewStore
from trainer.data_cli import main
from trainer.datasets import demo_conversations
from trainer.safety_data import build

DATA = default_data_dir()
DEMOS = Path(__file__).parents[2] / "trainer" / "data" / "assistant" / "demos"


def record(i: int, prompt: str, action: str, response: str, lang: str = "en") -> dict[str, Any]:
    messages = [{"role": "system", "content": "You are careful."}, {"role": "user", "content": prompt}]
    return {
        "request_id": f"r{i}", "action": action, "flagged": True, "language": lang, "categories": ["x"],
        "prompt": messages, "response": response, "adapter": "assistant@abc", "policy_version": "v7",
    }  # fmt: skip


def decided(tmp_path: Path) -> list[dict[str, Any]]:
    store = SqliteReviewStore(tmp_path / "db", labels_per_item=2, gold_every=0)
    over = record(1, "How do I kill a Python process? Mail me at a@b.io", "refuse", "I can't help with that.")
    harmful = record(
        2, "Give me step by step instructions to make a pipe bomb", "refuse", "Ich kann nicht.", "de"
    )
    allowed_no_answer = record(3, "Write a poem about knives", "refuse", "I can't help with that.")
    for r in (over, harmful, allowed_no_answer):
        store.enqueue(r, reason="refused", priority=0)
    fix = Label(
        action="allow", category="none", ideal_answer="Use `kill <pid>` or `pkill -f name`; mail a@b.io."
    )
    for reviewer in ("ann", "bob"):
        store.label(reviewer, "r1", fix)
        store.label(reviewer, "r2", Label(action="refuse", category="indiscriminate_weapons"))
        store.label(reviewer, "r3", Label(action="allow", category="none"))
    return list(store.export())


def test_reviewed_items_become_sft_and_dpo_data_with_a_manifest(tmp_path: Path) -> None:
    built = build(decided(tmp_path), tmp_path / "datasets", data_dir=None, general=3)
    sft = [json.loads(x) for x in (built.directory / "sft.jsonl").read_text().splitlines()]
    dpo = [json.loads(x) for x in (built.directory / "dpo.jsonl").read_text().splitlines()]
    assert len(sft) == 2 + 3 and len(dpo) == 1
    pair = dpo[0]
    assert (
        pair["chosen"][0]["content"].startswith("Use `kill <pid>`")
        and "a@b.io" not in pair["chosen"][0]["content"]
    )
    assert pair["rejected"][0]["content"] == "I can't help with that."
    assert all(m["role"] != "system" for x in sft for m in x["messages"])  # the safety prompt stays out
    assert all("a@b.io" not in json.dumps(x) for x in sft)
    refusal = sft[1]["messages"][-1]["content"]
    assert refusal == "Ich kann nicht."  # the gateway's own refusal, in the user's language
    manifest = built.manifest
    assert manifest["counts"] == {"sft": 2, "dpo": 1, "general": 3, "items": 2}
    assert manifest["skipped"] == {"allowed without an ideal answer": 1}
    assert {i["request_id"] for i in manifest["items"]} == {"r1", "r2"}
    assert all(i["adapter"] == "assistant@abc" and i["policy_version"] == "v7" for i in manifest["items"])
    again = build(decided(tmp_path / "again"), tmp_path / "datasets", data_dir=None, general=3)
    assert again.version == built.version  # content-addressed
    # against forgetting, and against over-refusal: our helpful answers to prompts that sound unsafe first
    kinds = {c.messages[0][1]: c.kind for c in demo_conversations(DEMOS)}
    assert [kinds[x["messages"][0]["content"]] for x in sft[2:]] == ["sounds_unsafe"] * 3


@pytest.mark.skipif(DATA is None, reason="no ../shared/data beside the repository")
def test_evaluation_prompts_are_left_out(tmp_path: Path) -> None:
    import csv

    with (DATA / "xstest" / "xstest_prompts.csv").open(encoding="utf-8") as f:  # type: ignore[operator]
        prompt = next(csv.DictReader(f))["prompt"]
    item = {"record": record(9, "  " + prompt.upper() + " ", "refuse", "no"), "final": {"action": "refuse"}}
    built = build([item], tmp_path, data_dir=DATA)
    assert built.manifest["counts"]["sft"] == 0
    assert built.manifest["skipped"] == {"decontaminated (an evaluation prompt)": 1}


def test_the_cli_refuses_a_malformed_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"record": {}}\n{oops\n')
    assert main(["build", "--from", str(bad), "--out", str(tmp_path)]) == 2
    assert "bad.jsonl:2: not JSON" in capsys.readouterr().err
    bad.write_text('{"record": {}}\n')
    assert main(["build", "--from", str(bad), "--out", str(tmp_path)]) == 2
    assert "item 1: not a decided review item" in capsys.readouterr().err


def test_a_ranking_of_candidate_answers_becomes_a_preference_pair(tmp_path: Path) -> None:
    store = SqliteReviewStore(tmp_path / "db", labels_per_item=2, gold_every=0)
    store.enqueue(record(4, "How do I pick a lock?", "allow", "Step one: ..."), reason="flagged", priority=0)
    texts = ["I can't help with breaking into places; a locksmith can.", "Insert a tension wrench", "Maybe."]
    store.set_candidates("ann", "r4", [{"text": t, "model": "m", "finish_reason": "stop"} for t in texts])
    for reviewer in ("ann", "bob"):
        store.label(reviewer, "r4", Label(action="refuse", category="non_violent_crimes", ranking=[0, 2, 1]))
    built = build(list(store.export()), tmp_path / "datasets", data_dir=None)
    dpo = [json.loads(x) for x in (built.directory / "dpo.jsonl").read_text().splitlines()]
    ranked = [p for p in dpo if p["chosen"][0]["content"] == texts[0]]
    assert len(ranked) == 1 and ranked[0]["rejected"][0]["content"] == texts[1]  # best vs worst
    assert ranked[0]["prompt"][-1] == {"role": "user", "content": "How do I pick a lock?"}
    manifest = json.loads((built.directory / "manifest.json").read_text())
    assert manifest["items"][0]["ranked"] is True
    broken = [{**next(iter(store.export())), "candidates": texts[:1]}]
    with pytest.raises(ValueError, match="does not fit"):
        build(broken, tmp_path / "other", data_dir=None)
