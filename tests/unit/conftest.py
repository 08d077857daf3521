"""Fixtures of the unit tests: the review store on each backend (a SQLite file, a real `redis-server`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.review_stores import Stores
from tests.servers import redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `redis-server` for the session, started on first use; tests keep apart by key prefix."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Review stores on the SQLite file of ``tmp_path``, then on a key prefix of their own in Redis."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    stores = Stores(request.param, tmp_path, url)
    yield stores
    for store in stores.opened:
        store.close()
