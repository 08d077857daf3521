"""The Grafana dashboards: generated from code, valid against the schema, querying real metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry

from gateway.telemetry import Telemetry
from tests.grafana import DASHBOARDS, build, render

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"

RULES = ROOT / "deploy" / "prometheus" / "rules"
FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
SCHEMA = json.loads((GRAFANA / "dashboard.schema.json").read_text(encoding="utf-8"))


def exported() -> frozenset[str]:
    return Telemetry(CollectorRegistry()).metric_names()


def recorded() -> set[str]:
    names = set()
    for path in RULES.glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_committed_dashboards_are_the_generated_ones() -> None:
    assert [p.name for p in FILES] == sorted(f"{d.uid}.json" for d in DASHBOARDS)
    for dashboard in DASHBOARDS:
        committed = (GRAFANA / "dashboards" / f"{dashboard.uid}.json").read_text(encoding="utf-8")
        assert committed == render(dashboard), (
            f"{dashboard.uid}.json is stale: run python grafana/generate.py"
        )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_dashboard_matches_the_schema(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(dashboard, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_schema_rejects_a_broken_dashboard() -> None:
    broken = build(DASHBOARDS[0])
    del broken["panels"][0]["targets"][0]["expr"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("dashboard", [build(d) for d in DASHBOARDS], ids=lambda d: d["uid"])
def test_dashboard_lint(dashboard: dict[str, Any]) -> None:
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), f"{panel['title']}: duplicate refId"
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
    cells = set()
    for panel in panels:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    builtin = {"__rate_interval", "__interval", "__range"}
    for expr in queries(dashboard):
        used = set(re.findall(r"\$(\w+)", expr))
        assert used <= variables | builtin, f"unknown variable in {expr}"
        assert expr.count("(") == expr.count(")"), expr


def test_every_queried_metric_is_exported() -> None:
    names = exported()
    known = names | recorded() | {"up"}
    for dashboard in DASHBOARDS:
        for expr in queries(build(dashboard)):
            for metric in re.findall(r"\brailguard[_:][a-z0-9_:]+", expr):
                assert metric in known, f"{dashboard.uid}: {metric} is not exported"
    for path in RULES.glob("*.yml"):
        for metric in re.findall(r"\brailguard_[a-z0-9_]+", path.read_text(encoding="utf-8")):
            assert metric in names, f"{path.name}: {metric} is not exported"


def test_dashboards_cover_what_the_issue_asks() -> None:
    titles = {d.uid: {p.title for p in d.panels} for d in DASHBOARDS}
    assert set(titles) == {
        "railguard-overview", "railguard-safety", "railguard-operations", "railguard-retraining",
    }  # fmt: skip
    text = json.dumps([build(d) for d in DASHBOARDS])
    for metric in (
        "railguard_added_latency_seconds_bucket", "railguard_model_refusals_total",
        "railguard_classifier_score_bucket", "railguard_upstream_errors_total",
        "railguard_sink_lag_seconds", "railguard_model_info", "railguard_evaluation_result",
        "railguard_escalations_total", "railguard_stream_holdback_seconds_bucket",
    ):  # fmt: skip
        assert metric in text


def test_provisioning_points_at_the_dashboards() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "railguard.yml").read_text(encoding="utf-8")
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    assert source["datasources"][0]["uid"] == "prometheus"
    for dashboard in DASHBOARDS:
        variable = build(dashboard)["templating"]["list"][0]
        assert variable["type"] == "datasource" and variable["query"] == "prometheus"


def test_operations_doc_explains_every_panel_and_alert() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for dashboard in DASHBOARDS:
        assert f"### {dashboard.title}" in doc
        for panel in dashboard.panels:
            assert f"**{panel.title}**" in doc, f"docs/operations.md lacks panel {panel.title!r}"
    for path in RULES.glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert f"### {rule['alert']}\n" in doc, f"no runbook for {rule['alert']}"
                    anchor = rule["annotations"]["runbook"].split("#", 1)[1]
                    assert anchor == rule["alert"].lower()
    for family in Telemetry(CollectorRegistry()).registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"| `{name}` |" in doc, f"metric {name} is not in the table of docs/operations.md"
