from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import stub_upstream

DATA = Path(__file__).parent / "data"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def test_policy_path() -> Path:
    return DATA / "policy.yaml"


@pytest.fixture(scope="session")
def stub_url() -> Iterator[str]:
    """A real stub upstream process (the stand-in for a remote vLLM), shared by the session."""
    with stub_upstream() as url:
        yield url
