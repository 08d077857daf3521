"""What `GET /metrics` shows: a registry in Prometheus' text format, every worker's values added up in
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR` set before `prometheus_client` is imported)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE_LATEST", "metric_names", "multiprocess", "render"]


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The body and content type of `GET /metrics`; all workers' values in multiprocess mode."""
    if multiprocess():
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged), CONTENT_TYPE_LATEST
    return generate_latest(registry), CONTENT_TYPE_LATEST


def metric_names(registry: CollectorRegistry) -> frozenset[str]:
    """Every series name the registry exports (with `_total`, `_bucket`, ... suffixes)."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        kind = family.type
        if kind == "counter":
            names.add(family.name + "_total")
        elif kind == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return frozenset(names)
