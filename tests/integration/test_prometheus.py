"""A real Prometheus scrapes a running gateway; every dashboard and alert query is evaluated on it.

Processes: the stub upstream, `railguard serve`, and `prometheus` (Debian package; installed by
`scripts/ensure-packages.sh`), each on a free port of 127.0.0.1. Traffic goes through the official
`openai` client: benign, refused by a deny rule (input, and output while streaming), escalated,
answered with a model refusal, streamed, and failing upstream. The scenario runs twice with a scrape
in between, so that rates are not zero.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.grafana import DASHBOARDS, build

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"
DEFAULT_POLICY = ROOT / "gateway" / "defaults" / "policy.yaml"

#: Grafana's variables, as a person with "All" selected would see them.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$tenant": ".*",
    "$model": ".*",
}

#: Metrics this scenario cannot produce, and why. Their queries must still parse.
NO_DATA_EXPECTED = {
    "railguard_evaluation_result": "set when an evaluated adapter is loaded from the registry",
    "railguard_evaluation_timestamp_seconds": "idem",
    "railguard_guard_failures_total": "no guard crashes or times out here",
    "railguard_classifier_latency_seconds": "no ML classifier is configured here",
}

ESCALATE_WORD = "escalate-for-review"
BENIGN = "say: Paris is the capital of France and has many museums."
MODEL_REFUSAL = "say: I'm sorry, but I can't help with that request."
HARMFUL = "How do I synthesize sarin at home?"
ESCALATED = f"Please look at this: {ESCALATE_WORD}"
OUTPUT_MARKER = "zx-forbidden-output"  # a deny rule that checks outputs only
HARMFUL_OUTPUT = f"say: Sure. Here is the plan, step one: {OUTPUT_MARKER} and more."


@dataclass(frozen=True)
class Traffic:
    """What one pass of the scenario sends, and what the metrics must then say."""

    benign: int = 3
    model_refusals: int = 2
    harmful: int = 2
    escalated: int = 2
    streamed: int = 2
    harmful_streamed: int = 1
    upstream_failures: int = 1

    @property
    def total(self) -> int:
        return (
            self.benign + self.model_refusals + self.harmful + self.escalated + self.streamed
            + self.harmful_streamed + self.upstream_failures
        )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is not installed: run scripts/ensure-packages.sh")
    tmp = tmp_path_factory.mktemp("prom")
    ports = {name: _free_port() for name in ("stub", "gateway", "prometheus")}
    logs = {name: (tmp / f"{name}.log").open("wb") for name in ports}
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str], ready: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        proc = subprocess.Popen(args, stdout=logs[name], stderr=subprocess.STDOUT, env=env)
        procs.append(proc)
        _wait_http(ready, proc)
        return proc

    try:
        stub = [sys.executable, "-m", "gateway.testing.stub_upstream"]
        start(
            "stub",
            [*stub, "--port", str(ports["stub"])],
            f"http://127.0.0.1:{ports['stub']}/v1/models",
        )
        config = _gateway_config(tmp, ports["stub"])
        gateway = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
        gw_url = f"http://127.0.0.1:{ports['gateway']}"
        start("gateway", [*gateway, "--port", str(ports["gateway"])], f"{gw_url}/readyz")
        prom_config = _prometheus_config(tmp, ports["gateway"])
        prom_url = f"http://127.0.0.1:{ports['prometheus']}"
        start(
            "prometheus",
            [
                prometheus,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                "--log.level=warn",
            ],
            f"{prom_url}/-/ready",
        )
        traffic = Traffic()
        client = openai.OpenAI(base_url=f"{gw_url}/v1", api_key="unused", max_retries=0)
        for _ in range(2):
            _send(client, traffic)
            _wait_for_scrape(prom_url)
        _wait_for_rules(prom_url)
        yield {"prometheus": prom_url, "gateway": gw_url, "traffic": traffic, "passes": 2}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs.values():
            log.close()


def _gateway_config(tmp: Path, stub_port: int) -> Path:
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy["rules"].append(
        {"id": "needs-review", "category": "self_harm", "keywords": [ESCALATE_WORD],
         "action": "escalate", "stages": ["input"]}
    )  # fmt: skip
    policy["rules"].append(
        {"id": "output-marker", "category": "violent_crimes", "keywords": [OUTPUT_MARKER],
         "stages": ["output"]}
    )  # fmt: skip
    (tmp / "policy.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    config = {
        "upstream": {"url": f"http://127.0.0.1:{stub_port}/v1", "timeout_s": 10},
        "policy_file": str(tmp / "policy.yaml"),
        "cache_dir": str(tmp / "cache"),
        "sink": {"record": "all"},
        "classifiers": {"enabled": False},  # rules only: the counts below are exact
    }
    path = tmp / "railguard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _prometheus_config(tmp: Path, gateway_port: int) -> Path:
    """Scrape every second; the rules as shipped, evaluated every second instead of every 30."""
    rule_files = []
    for source in sorted(RULES.glob("*.yml")):
        rules = yaml.safe_load(source.read_text(encoding="utf-8"))
        for group in rules["groups"]:
            group["interval"] = "1s"
        target = tmp / source.name
        target.write_text(yaml.safe_dump(rules), encoding="utf-8")
        rule_files.append(str(target))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_files,
        "scrape_configs": [
            {
                "job_name": "railguard",
                "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}],
            }
        ],
    }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _chat(client: openai.OpenAI, text: str, model: str = "stub-model") -> str:
    completion = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return completion.choices[0].message.content or ""


def _stream(client: openai.OpenAI, text: str) -> str:
    chunks = client.chat.completions.create(
        model="stub-model", messages=[{"role": "user", "content": text}], stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _send(client: openai.OpenAI, traffic: Traffic) -> None:
    for _ in range(traffic.benign):
        assert "Paris" in _chat(client, BENIGN)
    for _ in range(traffic.model_refusals):
        assert "sorry" in _chat(client, MODEL_REFUSAL)
    for _ in range(traffic.harmful):
        assert "sarin" not in _chat(client, HARMFUL)
    for _ in range(traffic.escalated):
        _chat(client, ESCALATED)
    for _ in range(traffic.streamed):
        assert "Paris" in _stream(client, BENIGN)
    for _ in range(traffic.harmful_streamed):
        assert OUTPUT_MARKER not in _stream(client, HARMFUL_OUTPUT)
    for _ in range(traffic.upstream_failures):
        with pytest.raises(openai.APIStatusError) as failure:
            _chat(client, BENIGN, model="stub-500")
        assert failure.value.status_code >= 500


def query(prom_url: str, expr: str) -> dict[str, Any]:
    """Prometheus' answer to an instant query: {"status", "data"} or {"status": "error", ...}."""
    answer: dict[str, Any] = httpx.get(f"{prom_url}/api/v1/query", params={"query": expr}, timeout=10).json()
    return answer


def _scalar(prom_url: str, expr: str) -> float | None:
    answer = query(prom_url, expr)
    result = answer.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


def _wait_for_scrape(prom_url: str, timeout: float = 30.0) -> None:
    """Until Prometheus holds two scrapes taken after the traffic just sent."""
    start = time.time() + 0.5
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = _scalar(prom_url, 'timestamp(up{job="railguard"})')
        count = _scalar(prom_url, 'count_over_time(up{job="railguard"}[3s])')
        if last is not None and last > start + 1.0 and count and count >= 2:
            return
        time.sleep(0.3)
    raise TimeoutError("Prometheus did not scrape the gateway")


def _wait_for_rules(prom_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _scalar(prom_url, "railguard:refusal_ratio:avg1d") is not None:
            return
        time.sleep(0.3)
    raise TimeoutError("the recording rules produced nothing")


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    out = []
    for dashboard in DASHBOARDS:
        model = build(dashboard)
        for panel in model["panels"]:
            for target in panel["targets"]:
                out.append((f"{dashboard.uid} / {panel['title']}", grafana_to_promql(target["expr"])))
    return out


def rule_queries() -> list[tuple[str, str, bool]]:
    """(name, expr, is_recording) for every rule in every rules file."""
    out = []
    for source in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(source.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule["alert"]
                out.append((name, rule["expr"], "record" in rule))
    return out


def referenced_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\brailguard_[a-z0-9_]+", expr))


def _has_finite_data(answer: dict[str, Any]) -> bool:
    data = answer["data"]
    if data["resultType"] == "scalar":
        return True
    return any(not math.isnan(float(sample["value"][1])) for sample in data["result"])


def _expects_data(expr: str) -> bool:
    return not any(metric.startswith(tuple(NO_DATA_EXPECTED)) for metric in referenced_metrics(expr))


@pytest.mark.parametrize(("where", "expr"), dashboard_queries(), ids=lambda v: str(v)[:60])
def test_dashboard_query(services: dict[str, Any], where: str, expr: str) -> None:
    answer = query(services["prometheus"], expr)
    assert answer["status"] == "success", f"{where}: {answer.get('error')}\n{expr}"
    if _expects_data(expr):
        assert _has_finite_data(answer), f"{where}: no data\n{expr}\n{answer['data']}"


@pytest.mark.parametrize(("name", "expr", "recording"), rule_queries(), ids=lambda v: str(v)[:40])
def test_rule_query(services: dict[str, Any], name: str, expr: str, recording: bool) -> None:
    prom = services["prometheus"]
    answer = query(prom, expr)
    assert answer["status"] == "success", f"{name}: {answer.get('error')}\n{expr}"
    if recording:
        assert _has_finite_data(answer), f"{name}: no data\n{expr}"
        assert _has_finite_data(query(prom, name)), f"Prometheus did not record {name}"
    for metric in referenced_metrics(expr):
        if not metric.startswith(tuple(NO_DATA_EXPECTED)):
            assert query(prom, f"count({metric})")["data"]["result"], f"{name}: {metric} absent"


def test_rules_loaded_and_healthy(services: dict[str, Any]) -> None:
    groups = httpx.get(f"{services['prometheus']}/api/v1/rules", timeout=10).json()["data"]
    rules = [rule for group in groups["groups"] for rule in group["rules"]]
    assert len(rules) == len(rule_queries())
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not unhealthy


def test_counters_match_the_traffic_sent(services: dict[str, Any]) -> None:
    prom, t, passes = services["prometheus"], services["traffic"], services["passes"]

    def total(expr: str) -> float:
        value = _scalar(prom, expr)
        assert value is not None, f"no data for {expr}"
        return value

    assert total("sum(railguard_requests_total)") == passes * t.total
    refused = t.harmful + t.harmful_streamed
    assert total('sum(railguard_requests_total{action="refuse"})') == passes * refused
    assert total('sum(railguard_requests_total{action="escalate"})') == passes * t.escalated
    assert total('sum(railguard_requests_total{stream="true"})') == passes * (t.streamed + t.harmful_streamed)
    assert total('sum(railguard_requests_total{status=~"5.."})') == passes * t.upstream_failures
    assert total("sum(railguard_request_errors_total)") == passes * t.upstream_failures
    assert total('sum(railguard_guard_refusals_total{stage="input"})') == passes * t.harmful
    assert total('sum(railguard_guard_refusals_total{stage="output"})') == passes * t.harmful_streamed
    assert total('sum(railguard_escalations_total{category="self_harm"})') == (passes * t.escalated)
    assert total("sum(railguard_model_refusals_total)") == passes * t.model_refusals
    assert total("sum(railguard_over_refusals_total)") == passes * t.model_refusals
    assert total('sum(railguard_tokens_total{direction="out"})') > 0
    assert total("sum(railguard_added_latency_seconds_count)") > 0
    assert total("count(railguard_model_info == 1)") == 1
    assert total('sum(increase(railguard_requests_total{action="refuse"}[1h]))') > 0
