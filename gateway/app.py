"""The app factory: `create_app(settings)` builds every service once and hangs them on `app.state`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from gateway.auth import Authenticator, ConcurrencyLimiter
from gateway.backends.base import Backend
from gateway.backends.models import ModelRouter
from gateway.chat.recording import Recorder
from gateway.chat.router import router as chat_router
from gateway.chat.serving import ChatService
from gateway.drain import Drain
from gateway.guards.base import Guard
from gateway.guards.classifier import ClassifierGuard
from gateway.guards.runner import GuardRunner
from gateway.moderations.router import router as moderations_router
from gateway.moderations.serving import ModerationService
from gateway.openapi import install_openapi
from gateway.policy import Policy, PolicyEngine, Stage, load_policy
from gateway.ratelimit import Buckets, LocalBuckets, RateLimiter
from gateway.review.routes import router as review_router
from gateway.review.service import ReviewService
from gateway.routes import install_error_handlers, router
from gateway.settings import Settings
from gateway.sinks import SQLiteSink
from gateway.sinks.base import Sink, SinkEvents
from gateway.slow_clients import BodyReadTimeout
from gateway.telemetry import Telemetry, Tracing

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    chat: ChatService
    models: ModelRouter
    auth: Authenticator
    limiter: ConcurrencyLimiter
    telemetry: Telemetry
    moderations: ModerationService
    rate_limits: RateLimiter
    review: ReviewService | None = None
    drain: Drain = field(default_factory=lambda: Drain(0.0))


def build_backends(settings: Settings) -> list[Backend]:
    backends: list[Backend] = []
    if settings.upstream is not None:
        from gateway.backends.upstream import UpstreamBackend

        backends.append(UpstreamBackend(settings.upstream))
    if settings.local is not None:
        from gateway.backends.local import LocalBackend  # imports torch only when configured

        pointer = settings.registry_dir / "serving" / f"{settings.local.name}.json"
        backends.append(LocalBackend(settings.local, settings.cache_dir, serving_pointer=pointer))
    return backends


def build_sink(settings: Settings, events: SinkEvents) -> Sink:
    flagged_only = settings.sink.record == "flagged"
    if settings.sink_kind == "redis":
        from gateway.sinks.redis import RedisStreamSink

        assert settings.redis_url is not None  # the settings check it
        return RedisStreamSink(
            settings.redis_url,
            stream=settings.sink.stream,
            spool_path=settings.spool_path,
            maxlen=settings.sink.maxlen,
            flagged_only=flagged_only,
            sample_unflagged=settings.sink.sample_unflagged,
            queue_size=settings.sink.queue_size,
            events=events,
        )
    return SQLiteSink(settings.sink_path, flagged_only=flagged_only, events=events)


def build_rate_limiter(settings: Settings, telemetry: Telemetry) -> RateLimiter:
    """Buckets in this process, or in Redis when `redis_url` is set and some tenant has a limit."""
    buckets: Buckets = LocalBuckets()
    limited = any(t.requests_per_minute or t.tokens_per_minute for t in settings.tenants.values())
    if settings.redis_url and limited:
        from gateway.ratelimit.redis import RedisBuckets

        buckets = RedisBuckets(settings.redis_url, fallback=buckets, on_fallback=telemetry.ratelimit_fallback)
    return RateLimiter(settings, buckets)


def build_classifier_guard(settings: Settings) -> ClassifierGuard | None:
    """The ML guard, with the options `Settings.classifier_options` resolves."""
    config = settings.classifiers
    if not config.enabled:
        return None
    return ClassifierGuard(settings.classifier_options, [Stage(s) for s in config.stages])


def _language_detector() -> Callable[[str, str], str]:
    from classifiers.language import detect

    return detect


def create_app(
    settings: Settings,
    *,
    backends: list[Backend] | None = None,
    sink: Sink | None = None,
    registry: CollectorRegistry | None = None,
    guards: list[Guard] | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """The gateway. `backends`, `sink` and `guards` replace what the settings would build (tests)."""
    policy = load_policy(settings.policy_file)
    engine = PolicyEngine(policy)
    backends = backends if backends is not None else build_backends(settings)
    auth = Authenticator(settings)
    telemetry = Telemetry(
        registry,
        enabled=settings.metrics,
        tenants=[*settings.tenants, *auth.tenants(), "default"],
        categories=_policy_categories(policy),
    )
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="railguard-guard")
    classifier = build_classifier_guard(settings) if guards is None else None
    runner = GuardRunner(
        guards if guards is not None else [classifier] if classifier else [],
        executor=executor,
        timeout_s=settings.classifiers.timeout_s,
        telemetry=telemetry,
    )
    record_sink = sink or build_sink(settings, telemetry)
    models = ModelRouter(backends)
    telemetry.initialise(
        ["rules", *(g.name for g in runner.guards)], [c.id for c in models.cards() if c.backend == "upstream"]
    )
    detect = _language_detector() if classifier and settings.classifiers.detect_language else None
    spans = tracing or Tracing(
        settings.tracing.enabled,
        service_name=settings.tracing.service_name,
        endpoint=settings.tracing.endpoint,
    )
    recorder = Recorder(
        telemetry, record_sink, policy_version=engine.version, guard_versions=lambda: runner.versions
    )
    chat = ChatService(
        models,
        engine,
        runner,
        recorder,
        detect_language=detect,
        tracing=spans,
        during_call=settings.input_guard == "during_call",
    )

    # no reviewers, no queue: nothing polls the records for people who cannot log in (with a keys file,
    # `railguard keys create --role reviewer` may add one at any time)
    reviewers = settings.review.reviewers or settings.keys_path.exists()
    review = ReviewService(settings, telemetry) if settings.review.enabled and reviewers else None
    rate_limits = build_rate_limiter(settings, telemetry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if review is not None:
            await review.start()
        if classifier is not None:
            await classifier.start()
        for backend in backends:
            await backend.start()
        _publish_versions(telemetry, models, policy.version)
        try:
            yield
        finally:
            if review is not None:
                await review.aclose()
            for backend in backends:
                await backend.aclose()
            record_sink.close()
            await rate_limits.aclose()
            if classifier is not None:
                classifier.close()
            executor.shutdown(wait=False, cancel_futures=True)
            spans.shutdown()

    app = FastAPI(title="railguard", lifespan=lifespan, docs_url=None, redoc_url=None)
    moderations = ModerationService(classifier, executor)
    app.state.services = Services(
        settings,
        chat,
        models,
        auth,
        ConcurrencyLimiter(settings),
        telemetry,
        moderations,
        rate_limits,
        review,
        Drain(settings.drain_s),
    )
    app.add_middleware(BodyReadTimeout, timeout_s=settings.limits.body_read_timeout_s)
    install_error_handlers(app)
    app.include_router(chat_router)
    app.include_router(moderations_router)
    app.include_router(router)
    app.include_router(review_router)
    install_openapi(app)
    return app


def _policy_categories(policy: Policy) -> list[str]:
    names = set(policy.categories) | {r.category for r in policy.rules}
    for overlay in (*policy.languages.values(), *policy.tenants.values()):
        names |= set(overlay.categories) | {r.category for r in overlay.rules}
    return sorted(names | {"guard_failure"})


def _publish_versions(telemetry: Telemetry, models: ModelRouter, policy_version: str) -> None:
    cards = models.cards()
    telemetry.set_versions(
        model=cards[0].id if cards else "none",
        model_version=cards[0].backend if cards else "none",
        adapter=None,
        policy_version=policy_version,
    )
