"""The Grafana dashboards, as code: `python grafana/generate.py` writes `grafana/dashboards/*.json`.

A development-time tool, not part of the gateway: it imports nothing of the project. Written from code
so that every query names a metric the gateway exports (`tests/unit/test_dashboards.py` checks it, and
that the committed JSON is what this writes) and the layout stays regular. Each panel carries a
description; docs/operations.md says the same at more length, with what to do.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARDS", "Dashboard", "Panel", "Query", "build", "write"]

RI = "$__rate_interval"
SEL = 'tenant=~"$tenant", model=~"$model"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = field(default=("railguard",))


def q(expr: str, legend: str = "", *, instant: bool = False) -> Query:
    return Query(expr, legend, instant)


def rate(metric: str, selector: str = SEL, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{selector}}}[{RI}]))"


def ratio(num: str, den: str, by: str = "") -> str:
    return f"{rate(num.split('{')[0], _sel(num), by)}\n/\n{rate(den.split('{')[0], _sel(den), by)}"


def _sel(metric: str) -> str:
    extra = metric.split("{", 1)[1].rstrip("}") if "{" in metric else ""
    return f"{SEL}, {extra}" if extra else SEL


def quantile(phi: float, metric: str, selector: str = "", by: str = "") -> str:
    keys = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({phi}, sum by ({keys}) (rate({metric}_bucket{{{selector}}}[{RI}])))"


REQUESTS = "railguard_requests_total"

OVERVIEW = Dashboard(
    "railguard-overview",
    "railguard / Overview",
    "Traffic, refusal and escalation rates, and the latency railguard adds.",
    (
        Panel(
            "Requests by action",
            "Finished requests per second by what the policy did: allow, steer, redact, escalate, refuse.",
            (q(rate(REQUESTS, by="action"), "{{action}}"),),
            unit="reqps",
        ),
        Panel(
            "Refusal and escalation rate",
            "Share of requests refused or escalated by the guard, and share of answered "
            "requests the model itself refused.",
            (
                q(ratio(REQUESTS + '{action="refuse"}', REQUESTS), "guard refusals"),
                q(ratio(REQUESTS + '{action="escalate"}', REQUESTS), "escalations"),
                q(
                    ratio("railguard_model_refusals_total", REQUESTS + '{action!~"refuse|escalate"}'),
                    "model refusals",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "Added latency p50 / p99",
            "Latency railguard adds (input plus output guard), 50th and 99th percentile.",
            (
                q(quantile(0.5, "railguard_added_latency_seconds"), "p50"),
                q(quantile(0.99, "railguard_added_latency_seconds"), "p99"),
            ),
            unit="s",
        ),
        Panel(
            "Time to first token p50 / p99",
            "Time from request to the first token the client received, hold-back included.",
            (
                q(
                    quantile(0.5, "railguard_time_to_first_token_seconds", 'model=~"$model"'),
                    "p50",
                ),
                q(
                    quantile(0.99, "railguard_time_to_first_token_seconds", 'model=~"$model"'),
                    "p99",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Error rate",
            "Share of requests answered with an error (status >= 400; policy refusals excluded).",
            (q(ratio("railguard_request_errors_total", REQUESTS), "errors"),),
            unit="percentunit",
        ),
        Panel(
            "Tokens per second",
            "Prompt tokens in and completion tokens out.",
            (q(rate("railguard_tokens_total", by="direction"), "{{direction}}"),),
            unit="short",
        ),
        Panel(
            "Review backlog",
            "Flagged records waiting for human review.",
            (q("max(railguard_review_backlog)", "backlog"),),
            kind="stat",
            width=6,
        ),
        Panel(
            "Requests in range",
            "Requests in the selected time range, by action.",
            (
                q(
                    f"sum by (action) (increase({REQUESTS}{{{SEL}}}[$__range]))",
                    "{{action}}",
                    instant=True,
                ),
            ),
            kind="stat",
            width=18,
        ),
    ),
)

SAFETY = Dashboard(
    "railguard-safety",
    "railguard / Safety",
    "What the guard sees and does, by category and language; the model's own refusals.",
    (
        Panel(
            "Verdicts by category",
            "Guard verdicts other than allow, per second, by harm category.",
            (
                q(
                    'sum by (category) (rate(railguard_verdicts_total{tenant=~"$tenant", '
                    f'action!="allow", category!="none"}}[{RI}]))',
                    "{{category}}",
                ),
            ),
        ),
        Panel(
            "Verdicts by language",
            "Guard verdicts other than allow, per second, by language and action.",
            (
                q(
                    'sum by (language, action) (rate(railguard_verdicts_total{tenant=~"$tenant", '
                    f'action!="allow"}}[{RI}]))',
                    "{{language}} {{action}}",
                ),
            ),
        ),
        Panel(
            "Model refusals vs guard refusals",
            "Refusals written by railguard against refusals the model wrote itself on allowed "
            "requests. A rise of the second after a model change is over-refusal.",
            (
                q(rate(REQUESTS, SEL + ', action="refuse"'), "guard"),
                q(rate("railguard_model_refusals_total"), "model"),
                q(rate("railguard_over_refusals_total"), "model, clean prompt"),
            ),
            unit="reqps",
        ),
        Panel(
            "Guard refusal rate by language",
            "Share of requests the guard refused, per language.",
            (q(ratio(REQUESTS + '{action="refuse"}', REQUESTS, by="language"), "{{language}}"),),
            unit="percentunit",
        ),
        Panel(
            "Over-refusal rate by language",
            "Share of allowed requests with a clean prompt that the model refused anyway.",
            (
                q(
                    ratio(
                        "railguard_over_refusals_total",
                        REQUESTS + '{action="allow"}',
                        by="language",
                    ),
                    "{{language}}",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "Guard refusals and escalations by category",
            "Refusals (by stage) and escalations per second, by category.",
            (
                q(
                    rate("railguard_guard_refusals_total", by="category, stage"),
                    "refuse {{category}} ({{stage}})",
                ),
                q(rate("railguard_escalations_total", by="category"), "escalate {{category}}"),
            ),
            unit="reqps",
        ),
        Panel(
            "Refusal rate by policy and model version",
            "Guard refusal rate per policy version and per model version: watch it move when either changes.",
            (
                q(
                    ratio(REQUESTS + '{action="refuse"}', REQUESTS, by="policy_version"),
                    "policy {{policy_version}}",
                ),
                q(
                    ratio(REQUESTS + '{action="refuse"}', REQUESTS, by="model_version"),
                    "model {{model_version}}",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "Classifier scores (input)",
            "Distribution of input classifier scores, all categories: a shift means the traffic "
            "or the classifier changed.",
            (
                q(
                    f'sum by (le) (rate(railguard_classifier_score_bucket{{stage="input"}}[{RI}]))',
                    "{{le}}",
                ),
            ),
            kind="heatmap",
        ),
        Panel(
            "Classifier score p90 by category",
            "90th percentile of classifier scores per stage and category.",
            (
                q(
                    quantile(0.9, "railguard_classifier_score", by="stage, category"),
                    "{{stage}} {{category}}",
                ),
            ),
            unit="percentunit",
        ),
    ),
)

OPERATIONS = Dashboard(
    "railguard-operations",
    "railguard / Operations",
    "Upstream health, errors, guard and classifier latency, the flagged-record sink.",
    (
        Panel(
            "Gateways up",
            "Gateway instances Prometheus scrapes successfully.",
            (q('sum(up{job=~"railguard.*"})', "up"),),
            kind="stat",
            width=6,
        ),
        Panel(
            "Responses by status",
            "Requests per second by HTTP status.",
            (q(rate(REQUESTS, by="status"), "{{status}}"),),
            unit="reqps",
            width=18,
        ),
        Panel(
            "Upstream errors",
            "Failed calls to the model server per second, by model and error code.",
            (
                q(
                    f"sum by (model, code) (rate(railguard_upstream_errors_total[{RI}]))",
                    "{{model}} {{code}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Backend latency p50 / p99",
            "The model's own time, per backend.",
            (
                q(
                    quantile(0.5, "railguard_backend_duration_seconds", by="backend"),
                    "p50 {{backend}}",
                ),
                q(
                    quantile(0.99, "railguard_backend_duration_seconds", by="backend"),
                    "p99 {{backend}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Request errors by code",
            "Errors returned to clients per second, by code.",
            (q(rate("railguard_request_errors_total", by="code"), "{{code}}"),),
            unit="reqps",
        ),
        Panel(
            "Guard latency p99 by stage, hold-back p99",
            "99th percentile of the latency each guard stage adds, and of the streaming hold-back.",
            (
                q(quantile(0.99, "railguard_guard_latency_seconds", by="stage"), "{{stage}}"),
                q(quantile(0.99, "railguard_stream_holdback_seconds"), "hold-back"),
            ),
            unit="s",
        ),
        Panel(
            "Classifier latency p99",
            "99th percentile of one classifier call, per classifier.",
            (
                q(
                    quantile(0.99, "railguard_classifier_latency_seconds", by="classifier"),
                    "{{classifier}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Guard failures",
            "Guards that failed per second, by guard and by fail-open / fail-closed.",
            (
                q(
                    f"sum by (guard, mode) (rate(railguard_guard_failures_total[{RI}]))",
                    "{{guard}} {{mode}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Sink lag",
            "Age of the oldest decision record not yet written to the sink.",
            (q("max(railguard_sink_lag_seconds)", "lag"),),
            unit="s",
        ),
        Panel(
            "Sink records",
            "Decision records per second written, spooled to disk, replayed, dropped.",
            (q(f"sum by (event) (rate(railguard_sink_records_total[{RI}]))", "{{event}}"),),
            unit="short",
        ),
    ),
)

RETRAINING = Dashboard(
    "railguard-retraining",
    "railguard / Retraining",
    "Model, adapter and policy versions in service, their behaviour, the last evaluation.",
    (
        Panel(
            "Versions in service",
            "Model, adapter and policy versions each gateway serves now.",
            (
                q(
                    "max by (model, model_version, adapter, policy_version) (railguard_model_info) > 0",
                    "{{model}} {{model_version}} {{adapter}} {{policy_version}}",
                    instant=True,
                ),
            ),
            kind="table",
            width=24,
        ),
        Panel(
            "Traffic by model version",
            "Requests per second served by each model version.",
            (q(rate(REQUESTS, by="model, model_version"), "{{model}} {{model_version}}"),),
            unit="reqps",
        ),
        Panel(
            "Model refusal rate by model version",
            "Share of answered requests the model refused itself, per model version.",
            (
                q(
                    ratio(
                        "railguard_model_refusals_total",
                        REQUESTS + '{action!~"refuse|escalate"}',
                        by="model_version",
                    ),
                    "{{model_version}}",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "Last evaluation results",
            "Evaluation-gate results of the adapter in service, by metric and language.",
            (
                q(
                    "max by (adapter, metric, language) (railguard_evaluation_result)",
                    "",
                    instant=True,
                ),
            ),
            kind="table",
        ),
        Panel(
            "Age of last evaluation",
            "Time since the adapter in service was evaluated, and the gate's decision.",
            (
                q(
                    "time() - max by (adapter, decision) (railguard_evaluation_timestamp_seconds)",
                    "{{adapter}} {{decision}}",
                    instant=True,
                ),
            ),
            kind="stat",
            unit="s",
        ),
        Panel(
            "Flagged records for training",
            "Decision records written to the sink in the selected range: the raw material of "
            "the next nightly run.",
            (
                q(
                    'sum(increase(railguard_sink_records_total{event="written"}[$__range]))',
                    "written",
                    instant=True,
                ),
            ),
            kind="stat",
            width=24,
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, SAFETY, OPERATIONS, RETRAINING)

_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _variable(name: str, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": _DATASOURCE,
        "query": {"query": f"label_values({REQUESTS}, {name})", "refId": f"{name}-values"},
        "definition": f"label_values({REQUESTS}, {name})",
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for index, query in enumerate(panel.queries):
        target: dict[str, Any] = {
            "refId": chr(ord("A") + index),
            "datasource": _DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "range": not query.instant,
            "instant": query.instant,
        }
        if panel.kind == "heatmap":
            target["format"] = "heatmap"
        elif panel.kind == "table":
            target["format"] = "table"
        targets.append(target)
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": _DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {},
        "targets": targets,
    }


def build(dashboard: Dashboard) -> dict[str, Any]:
    """The Grafana JSON model of one dashboard."""
    panels = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "utc",
        "graphTooltip": 1,
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus", "value": "prometheus"},
                },
                _variable("tenant", "Tenant"),
                _variable("model", "Model"),
            ]
        },
        "panels": panels,
    }


def render(dashboard: Dashboard) -> str:
    return json.dumps(build(dashboard), indent=2, ensure_ascii=False) + "\n"


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = folder / f"{dashboard.uid}.json"
        path.write_text(render(dashboard), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write railguard's Grafana dashboards as JSON.")
    parser.add_argument("folder", type=Path, nargs="?", default=Path(__file__).parent / "dashboards")
    for path in write(parser.parse_args(argv).folder):
        print(path)


if __name__ == "__main__":
    main()
