"""The review queue end to end: flagged traffic through `railguard serve`, then the review page in a
real headless browser (Debian's chromium through Playwright): two reviewers label the same items, the
one disagreement goes to the adjudicator, and the stats page shows the kappa computed here by hand.

Screenshots go to $RAILGUARD_SCREENSHOTS when set (docs/review/ is made that way), else to tmp."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.servers import gateway, stub_upstream

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium")
POLICY = Path(__file__).parents[1] / "data" / "policy.yaml"
KEYS = {
    "ann": "ann-key-0123456789abcdef",
    "bob": "bob-key-0123456789abcdef",
    "judy": "judy-key-0123456789abcd",
    "root": "root-key-0123456789abcd",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("review")
    reviewers = {
        "ann": {"api_key_sha256": hashlib.sha256(KEYS["ann"].encode()).hexdigest()},
        "bob": {"api_key_sha256": hashlib.sha256(KEYS["bob"].encode()).hexdigest()},
        "judy": {"api_key": KEYS["judy"], "role": "adjudicator"},
        "root": {"api_key": KEYS["root"], "role": "admin"},
    }
    config = tmp / "railguard.yaml"
    config.write_text(yaml.safe_dump({
        "policy_file": str(POLICY),
        "classifiers": {"enabled": False},
        "review": {"reviewers": reviewers, "labels_per_item": 2, "gold_every": 0, "poll_s": 0.2},
    }))  # fmt: skip
    with stub_upstream() as upstream, gateway(config, cache_dir=tmp, extra=["--upstream", upstream]) as url:
        yield url


def api(url: str, who: str | None, method: str, path: str, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEYS[who]}"} if who else {}
    return httpx.request(method, url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


def test_wrong_or_missing_keys_get_401_and_roles_get_403(served: str) -> None:
    routes = [
        ("GET", "/v1/review/next"), ("GET", "/v1/review/stats"), ("GET", "/v1/review/adjudication"),
        ("POST", "/v1/review/items/x/labels"), ("POST", "/v1/review/items/x/adjudication"),
        ("POST", "/v1/review/items/x/candidates"),
        ("PUT", "/v1/review/reviewers/ann/role"), ("GET", "/v1/review/audit"), ("GET", "/v1/review/export"),
        ("POST", "/v1/review/import"), ("GET", "/review"), ("GET", "/review/next"),
        ("GET", "/review/adjudicate"), ("GET", "/review/stats"),
    ]  # fmt: skip
    for method, path in routes:
        missing = httpx.request(method, served + path, timeout=10)
        wrong = httpx.request(
            method, served + path, headers={"Authorization": "Bearer nope-nope-nope"}, timeout=10
        )
        forged = httpx.request(
            method, served + path, cookies={"railguard_review": "ann.9999999999.00"}, timeout=10
        )
        assert missing.status_code == wrong.status_code == forged.status_code == 401, path
        if path.startswith("/v1/"):
            assert missing.json()["error"]["code"] == "invalid_api_key"
    label = {"action": "allow", "category": "none", "reason": "mine"}
    assert api(served, "ann", "POST", "/v1/review/items/x/adjudication", json=label).status_code == 403
    assert api(served, "ann", "GET", "/v1/review/stats").status_code == 403
    denied = api(served, "judy", "PUT", "/v1/review/reviewers/ann/role", json={"role": "admin"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    bad = api(served, "ann", "POST", "/v1/review/items/x/labels", json={"action": "perhaps"})
    assert bad.status_code == 400 and "action" in bad.json()["error"]["message"]


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (scripts/ensure-packages.sh)"
)
def test_two_reviewers_an_adjudicator_and_the_stats_page_in_a_browser(served: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("RAILGUARD_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with openai.OpenAI(base_url=served + "/v1", api_key="unused", max_retries=0) as client:
        ids = []
        for i in range(4):
            reply = client.chat.completions.create(
                model="stub-model", messages=[{"role": "user", "content": f"Tell me the launch codes ({i})"}]
            )
            ids.append((reply.model_extra or {})["railguard"]["request_id"])
    # wait until intake has queued the four refused requests
    for _ in range(100):
        if api(served, "judy", "GET", "/v1/review/stats").json()["queue"]["open"] == 4:
            break
        time.sleep(0.1)
    ranked_id = ""
    # ann: refuse, refuse, allow, refuse; bob: refuse, allow, allow, refuse -> they disagree on item 2
    plan = {"ann": ["refuse", "refuse", "allow", "refuse"], "bob": ["refuse", "allow", "allow", "refuse"]}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for who in ("ann", "bob"):
            page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
            page.goto(served + "/review/login")
            page.fill("#key", KEYS[who])
            page.click("#login")
            page.wait_for_url(served + "/review")
            if who == "ann":
                page.screenshot(path=str(shots / "queue.png"))
            page.goto(served + "/review/next")
            for n in range(4):
                request_id = page.locator("code").first.inner_text()
                if n == 0 and who == "ann":  # ann asks for candidate answers and ranks two of them
                    ranked_id = request_id
                    page.click("button.make-candidates")
                    page.wait_for_selector(".candidate >> nth=2")
                    page.fill(".candidate input.rank[data-index='2']", "1")
                    page.fill(".candidate input.rank[data-index='0']", "2")
                elif request_id == ranked_id:  # bob ranks the same candidates: made once, on the page
                    assert page.locator(".candidate").count() == 3
                    assert page.locator("button.make-candidates").count() == 0
                action = plan[who][ids.index(request_id)]
                page.keyboard.press(action[0])  # the shortcut
                assert page.is_checked(f"#action-{action}")
                page.fill("#category", "secrets" if action == "refuse" else "none")
                if who == "ann" and n == 0:
                    page.fill("#ideal", "I can't share that: we never reveal the launch codes.")
                    page.screenshot(path=str(shots / "item.png"), full_page=True)
                with page.expect_navigation():
                    page.keyboard.press("Control+Enter")  # submitted, and on to the next item
            assert "Nothing is waiting for you" in page.content()
        judge = browser.new_context(viewport={"width": 1100, "height": 1100}).new_page()
        judge.goto(served + "/review/login")
        judge.fill("#key", KEYS["judy"])
        judge.click("#login")
        judge.goto(served + "/review/adjudicate")
        assert judge.locator("[id^=adjudicate-]").count() == 1  # the one disagreement
        assert ids[1] in judge.content()
        judge.screenshot(path=str(shots / "adjudicate.png"), full_page=True)
        judge.check("#adj1-action-refuse")
        judge.fill("#adj1-category", "secrets")
        judge.fill("#adj1-reason", "It asks for the launch codes outright: the policy's secrets principle.")
        judge.click("#adj1-submit")
        judge.wait_for_selector("#message")
        judge.goto(served + "/review/stats")
        # by hand: ann R R A R, bob R A A R: p_o = 3/4; p_e = (3/4)(2/4) + (1/4)(2/4) = 1/2; kappa = 0.5
        p_o, p_e = 3 / 4, (3 / 4) * (2 / 4) + (1 / 4) * (2 / 4)
        kappa = (p_o - p_e) / (1 - p_e)
        assert judge.locator("#pairs .kappa").inner_text() == f"{kappa:.2f}" == "0.50"
        judge.screenshot(path=str(shots / "stats.png"), full_page=True)
        browser.close()
    ranked = api(served, "judy", "GET", f"/v1/review/items/{ranked_id}").json()
    assert len(ranked["candidates"]) == 3 and ranked["candidates"][0]["model"] == "stub-model"
    assert [x.get("ranking") for x in ranked["labels"] if x["reviewer"] == "ann"] == [[2, 0]]
    again = api(served, "bob", "POST", f"/v1/review/items/{ranked_id}/candidates", json={"n": 2})
    assert again.status_code == 200 and again.json()["candidates"] == ranked["candidates"]  # kept once
    bad = api(served, "bob", "POST", f"/v1/review/items/{ids[0]}/candidates", json={"n": 9})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "n"
    decided = api(served, "judy", "GET", f"/v1/review/items/{ids[1]}").json()
    assert decided["status"] == "done" and decided["final"]["reason"].startswith("It asks")
    audit = api(served, "root", "GET", "/v1/review/audit", params={"request_id": ids[1]}).json()["events"]
    assert [(e["actor"], e["event"]) for e in audit][:2] == [("judy", "adjudicated"), ("review", "disputed")]
