"""Exactly one decision record per chat request, whatever way it ends: answered, refused as JSON or SSE,
refused with an Azure-style 400, failed upstream before or during a stream; a request rejected before
it reached the policy (bad JSON, no key) is counted but not sunk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.records import DecisionRecord
from gateway.settings import Settings

pytestmark = pytest.mark.anyio

KEY, STRICT = "sk-tenant-a-0001", "sk-tenant-strict-01"


class ListSink:
    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []

    def submit(self, record: DecisionRecord) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


@pytest.fixture
async def gateway(tmp_path: Path, test_policy_path: Path, stub_url: str) -> AsyncIterator[dict[str, Any]]:
    settings = Settings.load(
        upstream={"url": stub_url, "timeout_s": 30},
        policy_file=test_policy_path,
        cache_dir=tmp_path,
        tenants={"a": {"api_keys": [KEY]}, "strict": {"api_keys": [STRICT]}},
        classifiers={"enabled": False},
    )
    sink = ListSink()
    registry = CollectorRegistry()
    app = create_app(settings, sink=sink, registry=registry)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as http,
    ):
        yield {"http": http, "sink": sink, "registry": registry}


def _requests(registry: CollectorRegistry) -> float:
    return sum(s.value for m in registry.collect() for s in m.samples if s.name == "railguard_requests_total")


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


CASES = {  # name: (key, body, the record's status, its error code)
    "answered": (KEY, {"messages": _user("say: Hello.")}, 200, None),
    "streamed": (KEY, {"stream": True, "messages": _user("say: One. Two.")}, 200, None),
    "refused": (KEY, {"messages": _user("the launch codes")}, 200, None),
    "refused-stream": (KEY, {"stream": True, "messages": _user("the launch codes")}, 200, None),
    "content-filter-400": (STRICT, {"messages": _user("the launch codes")}, 400, "content_filter"),
    "upstream-502": (KEY, {"model": "stub-500", "messages": _user("hi")}, 502, None),
    "midstream-error": (
        KEY,
        {"model": "stub-midstream-error", "stream": True, "messages": _user("say: a b c")},
        502,
        None,
    ),
}


@pytest.mark.parametrize(("key", "body", "status", "error_code"), CASES.values(), ids=CASES.keys())
async def test_one_record_per_request(
    gateway: dict[str, Any], key: str, body: dict[str, Any], status: int, error_code: str | None
) -> None:
    r = await gateway["http"].post(
        "/v1/chat/completions",
        json={"model": "stub-model", **body},
        headers={"authorization": f"Bearer {key}"},
    )
    assert r.status_code == (200 if body.get("stream") else status)
    [record] = gateway["sink"].records
    assert record.status == status
    if error_code is not None:
        assert record.error_code == error_code
    assert _requests(gateway["registry"]) == 1


async def test_a_rejection_is_counted_once_and_not_sunk(gateway: dict[str, Any]) -> None:
    http: httpx.AsyncClient = gateway["http"]
    r = await http.post("/v1/chat/completions", content=b"{bad", headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 400
    r = await http.post("/v1/chat/completions", json={"model": "stub-model", "messages": []})
    assert r.status_code == 401
    assert gateway["sink"].records == []
    assert _requests(gateway["registry"]) == 2
