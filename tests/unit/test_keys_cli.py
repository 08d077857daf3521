"""`railguard keys create|list|revoke`: a key shown once and stored as its sha256 only, picked up by a
running gateway at once (revoked ones refused at once), and bad input refused in one line, status 2,
the file unchanged. Keys with a review role open the review queue's routes and pages, by their role."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.settings import Settings
from railguard.cli import main


def _create(cache: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["keys", "create", *args]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("sk-rg-") and len(key) > 40 and "\n" not in key
    assert "shown only this once" in out.err and key not in out.err
    return key


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAILGUARD_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_create_list_revoke(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = _create(cache, capsys, "--tenant", "acme")
    admin = _create(cache, capsys, "--tenant", "ops", "--role", "admin")
    path = cache / "keys.json"
    text = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert user not in text and admin not in text  # only digests
    digest = hashlib.sha256(user.encode()).hexdigest()
    assert digest in text

    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == ["TENANT", "NAME", "ROLE", "SHA256", "CREATED"]
    rows = [line.split() for line in listed[1:]]
    assert [tuple(r[:4]) for r in rows] == [
        ("acme", "-", "user", digest[:12]),
        ("ops", "-", "admin", hashlib.sha256(admin.encode()).hexdigest()[:12]),
    ]
    assert all(r[4].endswith("Z") for r in rows)
    assert '"name"' not in text  # an unnamed key is written as an older gateway reads it
    assert user not in "\n".join(listed) and digest not in "\n".join(listed)

    assert main(["keys", "revoke", digest[:8]]) == 0
    assert "acme" in capsys.readouterr().out
    assert digest not in path.read_text()
    assert main(["keys", "list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["ops"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--tenant", "acme", "--role", "root"], "unknown role 'root'"),
        (["create", "--tenant", "a b"], "bad tenant name"),
        (["create", "--tenant", ""], "bad tenant name"),
        (["create", "--tenant", "acme", "--name", "ann smith"], "bad name 'ann smith'"),
        (["revoke", "ffffffff"], "no key's digest starts with 'ffffffff'"),
        (["revoke", "xyz!"], "bad digest prefix"),
        (["revoke", "ab"], "at least 4 hex digits"),
    ],
)
def test_bad_input_is_one_line_and_status_2_and_changes_nothing(
    cache: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    _create(cache, capsys, "--tenant", "acme")
    before = (cache / "keys.json").read_bytes()
    assert main(["keys", *args]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and message in out.err, out.err
    assert (cache / "keys.json").read_bytes() == before


def test_an_ambiguous_prefix_revokes_nothing(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = {"tenant": "acme", "role": "user", "created": "2025-01-01T00:00:00Z"}
    keys = [{**entry, "sha256": "abcdef" + c * 58} for c in "01"]
    (cache / "keys.json").write_text(json.dumps({"version": 1, "keys": keys}))
    before = (cache / "keys.json").read_bytes()
    assert main(["keys", "revoke", "ABCD"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 keys' digests start with 'abcd'" in err and "nothing revoked" in err
    assert (cache / "keys.json").read_bytes() == before
    assert main(["keys", "revoke", "abcdef1"]) == 0  # more digits: one key
    assert [k["sha256"][6] for k in json.loads((cache / "keys.json").read_text())["keys"]] == ["0"]


def test_a_corrupt_keys_file_is_one_line(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cache / "keys.json").write_text('{"version": 1, "keys": [{"sha256": "nope"}]}')
    assert main(["keys", "list"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is not valid" in err


def test_the_gateway_picks_up_created_and_revoked_keys_at_once(
    cache: Path, capsys: pytest.CaptureFixture[str], stub_url: str
) -> None:
    settings = Settings.load(
        upstream={"url": stub_url}, cache_dir=cache, classifiers={"enabled": False},
        tenants={"acme": {"requests_per_minute": 5}},  # limits for the file's tenant, no keys here
    )  # fmt: skip
    with TestClient(create_app(settings, registry=CollectorRegistry())) as http:
        assert http.get("/v1/models").status_code == 200  # no keys yet: auth is off
        key = _create(cache, capsys, "--tenant", "acme")
        assert http.get("/v1/models").status_code == 401  # the first key turns auth on
        client = openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="stub-model", messages=[{"role": "user", "content": "say: Hi."}]
        )
        assert raw.parse().choices[0].message.content == "Hi."
        assert raw.headers["x-ratelimit-remaining-requests"] == "4"  # the tenant's limit from the settings

        other = _create(cache, capsys, "--tenant", "beta")
        assert main(["keys", "revoke", hashlib.sha256(key.encode()).hexdigest()[:10]]) == 0
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
        assert http.get("/v1/models", headers={"Authorization": f"Bearer {other}"}).status_code == 200
        assert main(["keys", "revoke", hashlib.sha256(other.encode()).hexdigest()[:10]]) == 0
        assert http.get("/v1/models").status_code == 401  # no key left: nobody, not everybody
        (cache / "keys.json").unlink()
        assert http.get("/v1/models").status_code == 401  # a running gateway never turns auth off


def test_the_keys_file_turns_auth_on_even_empty(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.auth import Authenticator

    settings = Settings.load(upstream={"url": "http://127.0.0.1:9/v1"}, cache_dir=cache)
    assert not Authenticator(settings).enabled
    key = _create(cache, capsys, "--tenant", "acme")
    assert Authenticator(settings).enabled
    assert main(["keys", "revoke", hashlib.sha256(key.encode()).hexdigest()[:8]]) == 0
    assert Authenticator(settings).enabled  # the file is there, empty: auth stays on


RECORD = {
    "request_id": "r1", "action": "refuse", "flagged": True, "categories": ["violence"],
    "prompt": [{"role": "user", "content": "x"}],
}  # fmt: skip


def _review_app(cache: Path) -> TestClient:
    settings = Settings.load(
        upstream={"url": "http://127.0.0.1:9/v1"}, cache_dir=cache, classifiers={"enabled": False},
        review={"labels_per_item": 2, "gold_every": 0, "poll_s": 3600},
    )  # fmt: skip
    return TestClient(create_app(settings, registry=CollectorRegistry()))


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_review_roles_come_from_the_keys_file(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No `review.reviewers` in the settings: the keys file's reviewer, adjudicator and admin keys open
    the review routes by role; a user's key gets 403, an unknown key 401; changes apply at once."""
    ann = _create(cache, capsys, "--tenant", "ops", "--name", "ann", "--role", "reviewer")
    bob = _create(cache, capsys, "--tenant", "ops", "--name", "bob", "--role", "reviewer")
    user = _create(cache, capsys, "--tenant", "acme")
    label = {"action": "refuse", "category": "violence", "reason": "operational help"}
    with _review_app(cache) as http:
        assert http.get("/v1/review/next", headers=_bearer(ann)).json() == {"item": None}
        assert http.get("/v1/review/next", headers=_bearer(user)).status_code == 403
        assert http.get("/v1/review/next", headers=_bearer("sk-rg-unknown")).status_code == 401
        assert http.get("/v1/review/next").status_code == 401

        # two reviewers disagree: the item waits for an adjudicator, which a reviewer is not
        store = http.app.state.services.review.store  # type: ignore[attr-defined]
        store.enqueue(RECORD, reason="refused", priority=1)
        for key, said in [(ann, label), (bob, {"action": "allow", "category": "none"})]:
            item = http.get("/v1/review/next", headers=_bearer(key)).json()["item"]
            labelled = http.post("/v1/review/items/r1/labels", headers=_bearer(key), json=said)
            assert item["request_id"] == "r1" and labelled.status_code == 200, labelled.text
        adjudicated = http.post("/v1/review/items/r1/adjudication", headers=_bearer(ann), json=label)
        assert adjudicated.status_code == 403
        assert http.get("/v1/review/adjudication", headers=_bearer(ann)).status_code == 403

        # a key made while the gateway runs works at once, with its role
        root = _create(cache, capsys, "--tenant", "ops", "--name", "root", "--role", "admin")
        assert [
            i["request_id"]
            for i in http.get("/v1/review/adjudication", headers=_bearer(root)).json()["items"]
        ] == ["r1"]
        decided = http.post("/v1/review/items/r1/adjudication", headers=_bearer(root), json=label)
        assert decided.status_code == 200 and store.item("r1")["status"] == "done"
        assert store.audit("r1")[0]["actor"] == "root"  # named as in the keys file
        assert http.get("/v1/review/audit", headers=_bearer(ann)).status_code == 403
        assert http.get("/v1/review/audit", headers=_bearer(root)).status_code == 200
        judy = _create(cache, capsys, "--tenant", "ops", "--name", "judy", "--role", "adjudicator")
        assert http.get("/v1/review/stats", headers=_bearer(judy)).status_code == 200
        assert http.get("/v1/review/audit", headers=_bearer(judy)).status_code == 403

        # the page: a reviewer's key logs in, a user's is refused with 403; a revoked key, and the
        # session it opened, get 401 from the next request on
        assert http.post("/review/login", data={"key": user}, follow_redirects=False).status_code == 403
        assert http.post("/review/login", data={"key": "nope"}, follow_redirects=False).status_code == 401
        login = http.post("/review/login", data={"key": ann}, follow_redirects=False)
        assert login.status_code == 303 and http.get("/review").status_code == 200
        assert main(["keys", "revoke", hashlib.sha256(ann.encode()).hexdigest()[:10]]) == 0
        assert http.get("/v1/review/next", headers=_bearer(ann)).status_code == 401
        assert http.get("/review").status_code == 401  # the cookie is signed with the revoked key
        assert http.get("/v1/review/next", headers=_bearer(bob)).status_code == 200


def test_a_keys_file_reviewer_beside_the_settings_reviewers(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The settings' reviewers keep working beside the keys file's; an unnamed key's reviewer is its
    tenant; an admin changes a keys-file reviewer's role like anyone's."""
    settings_key = "judy-key-0123456789abcd"
    key = _create(cache, capsys, "--tenant", "ops", "--role", "reviewer")
    settings = Settings.load(
        upstream={"url": "http://127.0.0.1:9/v1"}, cache_dir=cache, classifiers={"enabled": False},
        review={"reviewers": {"judy": {"api_key": settings_key, "role": "admin"}}},
    )  # fmt: skip
    with TestClient(create_app(settings, registry=CollectorRegistry())) as http:
        assert http.get("/v1/review/stats", headers=_bearer(key)).status_code == 403
        changed = http.put(
            "/v1/review/reviewers/ops/role", headers=_bearer(settings_key), json={"role": "adjudicator"}
        )
        assert changed.json() == {"reviewer": "ops", "role": "adjudicator"}
        assert http.get("/v1/review/stats", headers=_bearer(key)).status_code == 200
