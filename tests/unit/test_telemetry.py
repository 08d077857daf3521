"""Telemetry: metrics from decision records, bounded labels, exposition, multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.policy.verdict import Action, Stage, Verdict
from gateway.records import DecisionRecord, Latencies
from gateway.telemetry import Telemetry


def record(action: Action = Action.ALLOW, **fields: Any) -> DecisionRecord:
    base: dict[str, Any] = {
        "request_id": "req-1",
        "created": 0.0,
        "tenant": "acme",
        "model": "gemma",
        "backend": "upstream",
        "policy_version": "p1",
        "language": "en",
        "stream": False,
        "action": action,
        "status": 200,
    }
    base.update(fields)
    return DecisionRecord(**base)


def refused_input(*categories: str) -> Verdict:
    scores = dict.fromkeys(categories, 0.97)
    return Verdict(Stage.INPUT, Action.REFUSE, categories=categories, scores=scores)


CLEAN_INPUT = Verdict(Stage.INPUT, Action.ALLOW, scores={"violence": 0.02})
CLEAN_OUTPUT = Verdict(Stage.OUTPUT, Action.ALLOW, scores={"violence": 0.01})


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry(CollectorRegistry(), tenants=["acme"], categories=["violence", "self_harm"])


def value(t: Telemetry, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for family in t.registry.collect():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def test_allowed_request_counts_outcome_tokens_and_latencies(telemetry: Telemetry) -> None:
    telemetry.observe(
        record(
            input=CLEAN_INPUT,
            output=CLEAN_OUTPUT,
            stream=True,
            prompt_tokens=12,
            completion_tokens=30,
            response="Paris is the capital of France.",
            latency=Latencies(1.5, 2.5, 100.0, 110.0, ttft_ms=40.0, holdback_ms=8.0),
        )
    )
    assert value(telemetry, "railguard_requests_total", action="allow", status="200") == 1
    assert value(telemetry, "railguard_requests_total", stream="true", tenant="acme") == 1
    assert value(telemetry, "railguard_tokens_total", direction="in") == 12
    assert value(telemetry, "railguard_tokens_total", direction="out") == 30
    assert value(telemetry, "railguard_guard_latency_seconds_sum", stage="input") == 0.0015
    assert value(telemetry, "railguard_added_latency_seconds_sum") == pytest.approx(0.004)
    assert value(telemetry, "railguard_stream_holdback_seconds_count") == 1
    assert value(telemetry, "railguard_time_to_first_token_seconds_sum") == pytest.approx(0.04)
    assert value(telemetry, "railguard_backend_duration_seconds_count", backend="upstream") == 1
    assert value(telemetry, "railguard_classifier_score_count", stage="output") == 1
    assert value(telemetry, "railguard_verdicts_total", category="none", action="allow") == 2
    assert value(telemetry, "railguard_model_refusals_total") == 0
    assert value(telemetry, "railguard_guard_refusals_total") == 0


def test_guard_refusal_counts_once_per_category(telemetry: Telemetry) -> None:
    telemetry.observe(record(Action.REFUSE, input=refused_input("violence", "self_harm")))
    assert value(telemetry, "railguard_requests_total", action="refuse") == 1
    assert value(telemetry, "railguard_guard_refusals_total", stage="input") == 2
    assert value(telemetry, "railguard_guard_refusals_total", category="self_harm") == 1
    assert value(telemetry, "railguard_verdicts_total", action="refuse", category="violence") == 1
    assert value(telemetry, "railguard_escalations_total") == 0
    assert value(telemetry, "railguard_request_errors_total") == 0


def test_escalation_and_output_stage_refusal(telemetry: Telemetry) -> None:
    escalated = Verdict(Stage.INPUT, Action.ESCALATE, categories=("self_harm",))
    telemetry.observe(record(Action.ESCALATE, input=escalated))
    stopped = Verdict(Stage.OUTPUT, Action.REFUSE, categories=("violence",))
    telemetry.observe(record(Action.REFUSE, input=CLEAN_INPUT, output=stopped, stream=True))
    assert value(telemetry, "railguard_escalations_total", category="self_harm") == 1
    assert value(telemetry, "railguard_guard_refusals_total", stage="output") == 1
    assert value(telemetry, "railguard_guard_refusals_total", stage="input") == 0


def test_model_refusal_of_a_clean_prompt_is_an_over_refusal(telemetry: Telemetry) -> None:
    sorry = "I'm sorry, but I can't help with that request."
    telemetry.observe(record(input=CLEAN_INPUT, response=sorry))
    flagged = Verdict(Stage.INPUT, Action.ALLOW, categories=("violence",))
    telemetry.observe(record(input=flagged, response=sorry))
    telemetry.observe(record(input=CLEAN_INPUT, response="Sure, here is a recipe."))
    assert value(telemetry, "railguard_model_refusals_total") == 2
    assert value(telemetry, "railguard_over_refusals_total") == 1


def test_error_status_counts_an_error_not_a_refusal(telemetry: Telemetry) -> None:
    telemetry.observe(record(status=502, error_code="upstream_unavailable", response=None))
    telemetry.observe(record(status=429))
    assert value(telemetry, "railguard_requests_total", status="502") == 1
    assert value(telemetry, "railguard_request_errors_total", code="upstream_unavailable") == 1
    assert value(telemetry, "railguard_request_errors_total", code="http_429") == 1
    azure_style = record(Action.REFUSE, status=400, input=refused_input("violence"))
    telemetry.observe(azure_style)
    assert value(telemetry, "railguard_request_errors_total") == 2


def test_label_values_are_bounded() -> None:
    t = Telemetry(CollectorRegistry(), tenants=["acme"], categories=["violence"])
    t.observe(record(tenant="intruder", language="xx", input=refused_input("made-up")))
    assert value(t, "railguard_requests_total", tenant="other", language="other") == 1
    assert value(t, "railguard_verdicts_total", category="other") == 1
    for i in range(100):
        t.observe(record(model=f"model-{i}"))
    models = {
        s.labels["model"]
        for f in t.registry.collect()
        for s in f.samples
        if s.name == "railguard_requests_total"
    }
    assert len(models) <= 33 and "other" in models
    t.guard_failure("pii", "sideways", "whatever")
    assert value(t, "railguard_guard_failures_total", stage="other", mode="other") == 1


def test_events_outside_requests(telemetry: Telemetry) -> None:
    telemetry.upstream_error("gemma", "upstream_timeout")
    telemetry.guard_failure("taxonomy", "input", "fail_open")
    telemetry.classifier_latency("taxonomy", 0.003)
    telemetry.sink_event("spooled", 3)
    telemetry.sink_event("replayed")
    telemetry.set_sink_lag(4.5)
    telemetry.set_review_backlog(7)
    assert value(telemetry, "railguard_upstream_errors_total", code="upstream_timeout") == 1
    assert value(telemetry, "railguard_guard_failures_total", mode="fail_open") == 1
    assert value(telemetry, "railguard_classifier_latency_seconds_count") == 1
    assert value(telemetry, "railguard_sink_records_total", event="spooled") == 3
    assert value(telemetry, "railguard_sink_records_total", event="replayed") == 1
    assert value(telemetry, "railguard_sink_lag_seconds") == 4.5
    assert value(telemetry, "railguard_review_backlog") == 7


def test_versions_info_keeps_only_what_is_in_service(telemetry: Telemetry) -> None:
    telemetry.set_versions(model="gemma", model_version="v1", adapter=None, policy_version="p1")
    telemetry.set_versions(model="gemma", model_version="v2", adapter="a7", policy_version="p1")
    assert value(telemetry, "railguard_model_info", model_version="v2", adapter="a7") == 1
    assert value(telemetry, "railguard_model_info", model_version="v1") == 0
    telemetry.set_evaluation(
        adapter="a7",
        results={"harmful_refusal_rate": {"en": 0.98, "de": 0.95}, "perplexity": 12.5},
        decision="promoted",
        timestamp=1700000000.0,
    )
    assert value(telemetry, "railguard_evaluation_result", language="de") == 0.95
    assert value(telemetry, "railguard_evaluation_result", metric="perplexity") == 12.5
    assert value(telemetry, "railguard_evaluation_timestamp_seconds", decision="promoted") > 0


def test_render_is_parseable_text_and_stays_off_the_default_registry(
    telemetry: Telemetry,
) -> None:
    telemetry.observe(record(Action.REFUSE, input=refused_input("violence")))
    body, content_type = telemetry.render()
    assert content_type.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"railguard_requests", "railguard_guard_refusals", "railguard_model_info"} <= names
    assert not any(name.startswith("railguard") for name in REGISTRY._names_to_collectors)
    Telemetry(CollectorRegistry())  # a second app in the same process does not collide


def test_disabled_telemetry_records_nothing() -> None:
    t = Telemetry(CollectorRegistry(), enabled=False)
    t.observe(record(Action.REFUSE, input=refused_input("violence")))
    t.upstream_error("m", "x")
    t.set_versions(model="m", model_version="1", adapter=None, policy_version="p")
    assert t.render()[0] == b""
    assert list(t.registry.collect()) == []


def test_observe_is_cheap(telemetry: Telemetry) -> None:
    rec = record(Action.REFUSE, input=refused_input("violence"), output=CLEAN_OUTPUT, completion_tokens=3)
    telemetry.observe(rec)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(500):
            telemetry.observe(rec)
        best = min(best, (time.perf_counter() - start) / 500)
    assert best < 100e-6, f"observe() took {best * 1e6:.1f} µs"


_WORKER = textwrap.dedent(
    """
    import sys
    from gateway.policy.verdict import Action
    from gateway.records import DecisionRecord
    from gateway.telemetry import Telemetry
    t = Telemetry()
    for _ in range(int(sys.argv[1])):
        t.observe(DecisionRecord("r", 0.0, "acme", "m", "upstream", "p1", "en", False,
                                 Action.REFUSE, 200))
    t.set_review_backlog(int(sys.argv[1]))
    if sys.argv[2] == "render":
        sys.stdout.write(t.render()[0].decode())
    """
)


def test_multiprocess_render_adds_up_every_worker(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run = [sys.executable, "-c", _WORKER]
    subprocess.run([*run, "3", "quiet"], env=env, check=True, timeout=60)
    out = subprocess.run(
        [*run, "2", "render"], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    samples = {
        s.name: s.value
        for f in text_string_to_metric_families(out)
        for s in f.samples
        if s.name in ("railguard_requests_total", "railguard_review_backlog")
    }
    assert samples["railguard_requests_total"] == 5
    assert samples["railguard_review_backlog"] == 2


def test_alerted_series_exist_at_zero_from_the_start(tmp_path: Path) -> None:
    """Alert rules divide and rate() these before their first event: they must be there at 0."""
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.settings import Settings

    settings = Settings.load(upstream={"url": "http://127.0.0.1:9/v1"}, cache_dir=tmp_path,
                             classifiers={"enabled": False})  # fmt: skip
    with TestClient(create_app(settings)) as client:
        text = client.get("/metrics").text
    for event in ("queued", "written", "spooled", "replayed", "dropped"):
        assert f'railguard_sink_records_total{{event="{event}"}} 0.0' in text
    assert 'railguard_guard_failures_total{guard="rules",mode="fail_closed",stage="input"} 0.0' in text
