"""A classifier that crashes or hangs follows the policy's fail mode, and is counted."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.policy.verdict import Finding, Stage
from gateway.settings import Settings
from gateway.sinks.sqlite import read_records

pytestmark = pytest.mark.anyio


class BrokenGuard:
    name = "broken"
    blocking = True
    version = "broken-v7"  # decision records carry each guard's version

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def check(self, text: str, stage: Stage, language: str) -> tuple[Finding, ...]:
        if self.mode == "hang":
            time.sleep(1.0)  # longer than the 0.2 s the settings allow
            return ()
        raise RuntimeError("the classifier fell over")


async def _client(
    tmp_path: Path, stub_url: str, policy: Path, guard: BrokenGuard, registry: CollectorRegistry
) -> AsyncIterator[tuple[openai.AsyncOpenAI, httpx.AsyncClient]]:
    settings = Settings.load(
        upstream={"url": stub_url},
        policy_file=policy,
        cache_dir=tmp_path,
        classifiers={"timeout_s": 0.2},
    )
    app = create_app(settings, guards=[guard], registry=registry)
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        yield openai.AsyncOpenAI(base_url="http://gw/v1", api_key="x", http_client=http, max_retries=0), http
        await http.aclose()


@pytest.mark.parametrize("failure", ["crash", "hang"])
@pytest.mark.parametrize(("mode", "finish"), [("fail_closed", "content_filter"), ("fail_open", "stop")])
async def test_failing_classifier_follows_fail_mode_and_is_counted(
    tmp_path: Path, stub_url: str, test_policy_path: Path, failure: str, mode: str, finish: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        test_policy_path.read_text().replace('version: "test-1"', f'version: "t"\nfail_mode: {mode}')
    )
    registry = CollectorRegistry()
    async for client, http in _client(tmp_path, stub_url, policy, BrokenGuard(failure), registry):
        started = time.monotonic()
        r = await client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": "say: Hello."}]
        )
        assert time.monotonic() - started < 5  # a hung classifier costs its timeout, not the request
        assert r.choices[0].finish_reason == finish
        metrics = (await http.get("/metrics")).text
        counted = registry.get_sample_value(
            "railguard_guard_failures_total", {"guard": "broken", "stage": "input", "mode": mode}
        )
        assert counted == 1.0, metrics
    # the failed guard is in the decision record, with the version of what judged (or failed to)
    [record] = read_records(tmp_path / "records.sqlite3")
    assert record["guard_versions"] == {"broken": "broken-v7"}
    assert record["input"]["failed_guards"] == ["broken"]
