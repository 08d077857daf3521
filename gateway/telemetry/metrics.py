"""Prometheus metrics, updated from one `DecisionRecord` per request.

All metrics live on a registry the caller injects (or one of their own), never on the default
`REGISTRY`, so tests and apps never share series. Label values are bounded (see `labels.py`).

Several workers: set `PROMETHEUS_MULTIPROC_DIR` to an empty, writable folder *before* Python
imports `prometheus_client` (uvicorn's `--workers`, gunicorn); every worker then writes its values
to files there, and `render()` adds them up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from classifiers.refusals import RefusalDetector
from gateway.policy.verdict import Action, Verdict
from gateway.records import DecisionRecord
from gateway.telemetry import exposition
from gateway.telemetry.labels import LANGUAGES, OTHER, BoundedLabel, status_label

__all__ = ["GUARD_FAILURE_MODES", "SINK_EVENTS", "Telemetry"]

SINK_EVENTS: Final = frozenset({"queued", "written", "spooled", "replayed", "dropped"})
GUARD_FAILURE_MODES: Final = frozenset({"fail_open", "fail_closed"})

_GUARD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
_GaugeMode = Literal["livemax", "livemostrecent"]
_ANSWERED = frozenset({Action.ALLOW, Action.STEER, Action.REDACT})


class Telemetry:
    """The gateway's metrics. Build one per app; call `observe(record)` once per finished request.

    `tenants`, `models`, `categories` and `languages` are the label values that get their own
    series (from the configuration and the policy); others are counted under "other". `None` admits
    the first 32 distinct values seen.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        enabled: bool = True,
        tenants: Iterable[str] | None = None,
        models: Iterable[str] | None = None,
        categories: Iterable[str] | None = None,
        languages: Iterable[str] | None = LANGUAGES,
        refusal_detector: RefusalDetector | None = None,
    ) -> None:
        self.enabled = enabled
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._tenant = BoundedLabel(tenants, missing="default")
        self._model = BoundedLabel(models, missing="unknown")
        self._category = BoundedLabel(categories, limit=64)
        self._language = BoundedLabel(languages, missing="und")
        self._version = BoundedLabel(limit=16)
        self._backend = BoundedLabel(limit=8, missing="unknown")
        self._classifier = BoundedLabel(limit=32, missing="unknown")
        self._guard = BoundedLabel(limit=32, missing="unknown")
        self._code = BoundedLabel(limit=32, missing="unknown")
        self._is_refusal = refusal_detector or RefusalDetector()
        self._children: dict[tuple[Any, ...], Any] = {}
        self._info_labels: tuple[str, ...] | None = None
        if enabled:
            self._define(self.registry)

    # -- definitions --------------------------------------------------------------------------

    def _define(self, r: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, registry=r, buckets=buckets)

        def gauge(name: str, doc: str, labels: tuple[str, ...], mode: _GaugeMode) -> Gauge:
            return Gauge(name, doc, labels, registry=r, multiprocess_mode=mode)

        request = ("tenant", "model", "model_version", "policy_version", "language")
        self.requests = counter(
            "railguard_requests_total",
            "Finished requests by outcome: action taken and HTTP status",
            (*request, "stream", "action", "status"),
        )
        self.request_errors = counter(
            "railguard_request_errors_total",
            "Requests answered with an error (status >= 400, policy refusals excluded)",
            ("tenant", "model", "code"),
        )
        self.verdicts = counter(
            "railguard_verdicts_total",
            "Guard verdicts, one per stage and category ('none' when no category)",
            ("tenant", "stage", "action", "category", "language"),
        )
        blocked = ("tenant", "model", "stage", "category", "language")
        self.guard_refusals = counter(
            "railguard_guard_refusals_total",
            "Requests refused by the guard, one per violated category",
            blocked,
        )
        self.escalations = counter(
            "railguard_escalations_total",
            "Requests escalated to human review, one per category",
            blocked,
        )
        answered = ("tenant", "model", "model_version", "language")
        self.model_refusals = counter(
            "railguard_model_refusals_total",
            "Answers the guard allowed in which the model itself refused",
            answered,
        )
        self.over_refusals = counter(
            "railguard_over_refusals_total",
            "Model refusals of prompts the input guard found nothing wrong with",
            answered,
        )
        self.tokens = counter(
            "railguard_tokens_total", "Tokens in (prompt) and out (completion)",
            ("tenant", "model", "direction"),
        )  # fmt: skip
        self.upstream_errors = counter(
            "railguard_upstream_errors_total", "Failed calls to the upstream model server",
            ("model", "code"),
        )  # fmt: skip
        self.guard_failures = counter(
            "railguard_guard_failures_total",
            "Guards or classifiers that failed; mode says whether the request went on or not",
            ("guard", "stage", "mode"),
        )
        self.sink_records = counter(
            "railguard_sink_records_total",
            "Decision records by sink event: queued, written, spooled, replayed, dropped",
            ("event",),
        )
        self.ratelimit_fallbacks = counter(
            "railguard_ratelimit_fallbacks_total",
            "Rate-limit decisions made in process because Redis failed (replicas did not share them)",
            (),
        )
        self.guard_latency = histogram(
            "railguard_guard_latency_seconds", "Latency a guard stage added to a request",
            ("stage",), _GUARD_BUCKETS,
        )  # fmt: skip
        self.added_latency = histogram(
            "railguard_added_latency_seconds",
            "Latency railguard added to a request: input plus output guard",
            ("stream",),
            _GUARD_BUCKETS,
        )
        self.holdback = histogram(
            "railguard_stream_holdback_seconds",
            "Delay the streaming hold-back window added before tokens reached the client",
            ("model",),
            _GUARD_BUCKETS,
        )
        self.ttft = histogram(
            "railguard_time_to_first_token_seconds", "Time to the first token the client got",
            ("model", "stream"), _REQUEST_BUCKETS,
        )  # fmt: skip
        self.duration = histogram(
            "railguard_request_duration_seconds", "Whole request, as the client saw it",
            ("model", "stream"), _REQUEST_BUCKETS,
        )  # fmt: skip
        self.backend_duration = histogram(
            "railguard_backend_duration_seconds", "The model's own time (upstream or local)",
            ("backend", "model"), _REQUEST_BUCKETS,
        )  # fmt: skip
        self.classifier_seconds = histogram(
            "railguard_classifier_latency_seconds", "Latency of one classifier call",
            ("classifier",), _GUARD_BUCKETS,
        )  # fmt: skip
        self.scores = histogram(
            "railguard_classifier_score", "Classifier scores in [0, 1] by stage and category",
            ("stage", "category"), _SCORE_BUCKETS,
        )  # fmt: skip
        self.sink_lag = gauge(
            "railguard_sink_lag_seconds", "Age of the oldest record not yet in the sink", (),
            "livemax",
        )  # fmt: skip
        self.review_backlog = gauge(
            "railguard_review_backlog", "Records waiting for human review", (), "livemostrecent"
        )
        self.model_info = gauge(
            "railguard_model_info",
            "The model, adapter and policy versions in service (value 1)",
            ("model", "model_version", "adapter", "policy_version"),
            "livemax",
        )
        self.evaluation = gauge(
            "railguard_evaluation_result",
            "Last evaluation-gate results of the adapter in service, by metric and language",
            ("adapter", "metric", "language"),
            "livemostrecent",
        )
        self.evaluation_time = gauge(
            "railguard_evaluation_timestamp_seconds",
            "When the adapter in service was evaluated; decision: promoted or rejected",
            ("adapter", "decision"),
            "livemostrecent",
        )

    def initialise(self, guards: Iterable[str], models: Iterable[str]) -> None:
        """Create at 0 the series the alert rules and dashboards query before their first event, so a
        panel shows 0 rather than "No data" and a rate() alert can fire on the first increment."""
        if not self.enabled:
            return
        for event in SINK_EVENTS:
            self._child(self.sink_records, event)
        for guard in guards:
            for stage in ("input", "output"):
                for mode in GUARD_FAILURE_MODES:
                    self._child(self.guard_failures, self._guard(guard), stage, mode)
        for model in models:
            for code in ("upstream_unavailable", "upstream_timeout"):
                self._child(self.upstream_errors, self._model(model), self._code(code))

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # -- the request path ---------------------------------------------------------------------

    def observe(self, record: DecisionRecord) -> None:
        """Count one finished request: allowed, refused, escalated or failed."""
        if not self.enabled:
            return
        child = self._child
        tenant = self._tenant(record.tenant)
        model = self._model(record.model)
        language = self._language(record.language)
        stream = "true" if record.stream else "false"
        action = record.action
        model_version = self._version(record.model_version)
        child(
            self.requests, tenant, model, model_version, self._version(record.policy_version),
            language, stream, action.value, status_label(record.status),
        ).inc()  # fmt: skip
        if record.status >= 400 and not action.blocks:
            code = self._code(record.error_code or f"http_{record.status}")
            child(self.request_errors, tenant, model, code).inc()
        for verdict in (record.input, record.output):
            if verdict is not None:
                self._observe_verdict(verdict, tenant, language)
        if action.blocks:
            self._observe_block(record, tenant, model, language)
        elif action in _ANSWERED and record.status < 400 and self._is_refusal(record.response):
            child(self.model_refusals, tenant, model, model_version, language).inc()
            if record.input is None or not record.input.categories:
                child(self.over_refusals, tenant, model, model_version, language).inc()
        if record.prompt_tokens:
            child(self.tokens, tenant, model, "in").inc(record.prompt_tokens)
        if record.completion_tokens:
            child(self.tokens, tenant, model, "out").inc(record.completion_tokens)
        self._observe_latency(record, model, stream)

    def _observe_verdict(self, verdict: Verdict, tenant: str, language: str) -> None:
        stage = verdict.stage.value
        action = verdict.action.value
        for category in verdict.categories or ("",):
            self._child(self.verdicts, tenant, stage, action, self._category(category), language).inc()
        for category, score in verdict.scores.items():
            self._child(self.scores, stage, self._category(category)).observe(score)

    def _observe_block(self, record: DecisionRecord, tenant: str, model: str, language: str) -> None:
        metric = self.guard_refusals if record.action is Action.REFUSE else self.escalations
        deciding = next(
            (v for v in (record.output, record.input) if v is not None and v.action is record.action),
            record.input or record.output,
        )
        stage = deciding.stage.value if deciding is not None else "input"
        categories = deciding.categories if deciding is not None else record.categories
        for category in categories or ("",):
            self._child(metric, tenant, model, stage, self._category(category), language).inc()

    def _observe_latency(self, record: DecisionRecord, model: str, stream: str) -> None:
        lat = record.latency
        child = self._child
        if record.input is not None:
            child(self.guard_latency, "input").observe(lat.input_guard_ms / 1000)
        if record.output is not None:
            child(self.guard_latency, "output").observe(lat.output_guard_ms / 1000)
        if record.input is not None or record.output is not None:
            child(self.added_latency, stream).observe(lat.guard_ms / 1000)
        if lat.holdback_ms is not None:
            child(self.holdback, model).observe(lat.holdback_ms / 1000)
        if lat.ttft_ms is not None:
            child(self.ttft, model, stream).observe(lat.ttft_ms / 1000)
        if lat.total_ms > 0:
            child(self.duration, model, stream).observe(lat.total_ms / 1000)
        if lat.backend_ms > 0:
            backend = self._backend(record.backend)
            child(self.backend_duration, backend, model).observe(lat.backend_ms / 1000)

    # -- events outside one request -----------------------------------------------------------

    def upstream_error(self, model: str, code: str) -> None:
        if self.enabled:
            self._child(self.upstream_errors, self._model(model), self._code(code)).inc()

    def guard_failure(self, guard: str, stage: str, mode: str) -> None:
        if self.enabled:
            stage_label = stage if stage in ("input", "output") else OTHER
            mode_label = mode if mode in GUARD_FAILURE_MODES else OTHER
            self._child(self.guard_failures, self._guard(guard), stage_label, mode_label).inc()

    def classifier_latency(self, classifier: str, seconds: float) -> None:
        if self.enabled:
            self._child(self.classifier_seconds, self._classifier(classifier)).observe(seconds)

    def sink_event(self, event: str, count: int = 1) -> None:
        if self.enabled and count > 0:
            self._child(self.sink_records, event if event in SINK_EVENTS else OTHER).inc(count)

    def ratelimit_fallback(self) -> None:
        if self.enabled:
            self.ratelimit_fallbacks.inc()

    def set_sink_lag(self, seconds: float) -> None:
        if self.enabled:
            self.sink_lag.set(max(0.0, seconds))

    def set_review_backlog(self, n: int) -> None:
        if self.enabled:
            self.review_backlog.set(max(0, n))

    def set_versions(
        self, *, model: str, model_version: str, adapter: str | None, policy_version: str
    ) -> None:
        """Publish what is in service as `railguard_model_info{...} 1`; drop the previous set."""
        if not self.enabled:
            return
        labels = (
            self._model(model), self._version(model_version), self._version(adapter),
            self._version(policy_version),
        )  # fmt: skip
        previous, self._info_labels = self._info_labels, labels
        if previous is not None and previous != labels:
            if exposition.multiprocess():
                self.model_info.labels(*previous).set(0)  # removal is not supported there
            else:
                self.model_info.remove(*previous)
        self.model_info.labels(*labels).set(1)

    def set_evaluation(
        self,
        *,
        adapter: str,
        results: Mapping[str, float] | Mapping[str, Mapping[str, float]],
        decision: str,
        timestamp: float,
    ) -> None:
        """Publish the evaluation-gate report of the adapter in service.

        `results` maps a metric (e.g. "harmful_refusal_rate") to a value, or to {language: value}.
        """
        if not self.enabled:
            return
        name = self._version(adapter)
        for metric, value in results.items():
            per_language = value if isinstance(value, Mapping) else {"all": value}
            for language, number in per_language.items():
                lang = "all" if language == "all" else self._language(language)
                self.evaluation.labels(name, self._code(metric), lang).set(float(number))
        self.evaluation_time.labels(name, decision if decision else "unknown").set(timestamp)

    # -- exposition ---------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The body and content type of `GET /metrics`; all workers' values in multiprocess mode."""
        return exposition.render(self.registry) if self.enabled else (b"", exposition.CONTENT_TYPE_LATEST)

    def metric_names(self) -> frozenset[str]:
        """Every series name this object exports (with `_total`, `_bucket`, ... suffixes)."""
        return exposition.metric_names(self.registry)
