"""The ops surface: keys kept as digests, /metrics behind a scrape token once keys exist, and no
unauthenticated gateway on a public address unless asked for."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.cli import main
from gateway.settings import Settings

KEY = "sk-tenant-a-0123456789"
TOKEN = "scrape-token-0123456789"


def _app(tmp_path: Path, **settings: object) -> TestClient:
    s = Settings.load(upstream={"url": "http://127.0.0.1:9/v1"}, cache_dir=tmp_path,
                      classifiers={"enabled": False}, **settings)  # fmt: skip
    return TestClient(create_app(s))


def test_keys_given_as_digests_authenticate(tmp_path: Path) -> None:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    with _app(tmp_path, tenants={"a": {"api_key_sha256": [digest]}}) as client:
        ok = client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        wrong = client.get("/v1/models", headers={"Authorization": "Bearer sk-tenant-a-nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert ok.status_code != 401


def test_a_digest_that_is_not_one_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="sha256 hex digests"):
        Settings.load(upstream={"url": "http://x/v1"}, tenants={"a": {"api_key_sha256": ["abc"]}})


def test_metrics_need_the_scrape_token_once_keys_exist(tmp_path: Path) -> None:
    with _app(tmp_path) as client:  # no keys: auth is off, /metrics as before
        assert client.get("/metrics").status_code == 200
    with _app(tmp_path, tenants={"a": {"api_keys": [KEY]}}) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "metrics_token_required"
        assert client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
    with _app(tmp_path, tenants={"a": {"api_keys": [KEY]}}, metrics_token=TOKEN) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200 and "railguard_requests_total" in scraped.text
        assert KEY not in scraped.text and TOKEN not in scraped.text


def test_a_public_address_without_keys_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"cache_dir: {tmp_path}\nupstream: {{url: 'http://127.0.0.1:9/v1'}}\n")
    assert main(["serve", "--config", str(config), "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--allow-unauthenticated" in capsys.readouterr().err
