"""Fuzzing from the OpenAPI document: schemathesis generates request bodies for `/v1/chat/completions`
and `/v1/moderations` from the schemas served at `/openapi.json`, half that fit them (positive) and half
that break them (negative), against a real `railguard serve` in front of the stub upstream. Whatever the
body: never a 5xx, every error in OpenAI's shape, every stream ends with `[DONE]`, no traceback in the
server's log. The review API (`/v1/review/...`) is fuzzed the same way, with an admin's key (every
route open to it), its path parameters, query and bodies generated too.

CI runs 400 cases of each, the same ones each time; `RAILGUARD_FUZZ_CASES=10000` runs that many, new
ones each run (docs/reliability.md has the figures).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.servers import gateway

pytestmark = pytest.mark.integration

CASES = int(os.environ.get("RAILGUARD_FUZZ_CASES", "400"))
OPERATIONS = ("/v1/chat/completions", "/v1/moderations")
# A served model, so that generated bodies also reach the input guard, the upstream and the stream.
SERVED = {"/v1/chat/completions": "stub-model", "/v1/moderations": "omni-moderation-latest"}
ADMIN_KEY = "fuzz-admin-key-0123456789"


@schemathesis.serializer("application/jsonl")
def _jsonl(ctx: Any, value: Any) -> bytes:
    """The review import's body: a generated string as it is, anything else as one JSON line."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else json.dumps(value).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, stub_url: str) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    config = tmp / "railguard.yaml"
    settings = {
        "upstream": {"url": stub_url, "models": ["stub-model"]},
        "classifiers": {"enabled": False},
        "review": {"reviewers": {"fuzz-admin": {"api_key": ADMIN_KEY, "role": "admin"}}, "gold_every": 0},
    }
    config.write_text(yaml.safe_dump(settings))
    with gateway(config, cache_dir=tmp) as url:
        yield url, tmp / f"gateway-{url.rsplit(':', 1)[1]}.log"


def _check(path: str, response: schemathesis.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and isinstance(error["type"], str), error
        assert error["param"] is None or isinstance(error["param"], str), error
        assert error["code"] is None or isinstance(error["code"], str), error
    elif response.headers["content-type"][0].startswith("text/event-stream"):
        assert not response.stream_cut_short
        assert response.text.endswith("data: [DONE]\n\n"), response.text[-300:]
    elif path.startswith("/v1/review/"):
        assert response.headers["content-type"][0].startswith(("application/json", "application/jsonl"))
    else:
        assert "choices" in response.json() if path == OPERATIONS[0] else "results" in response.json()


def _fuzz(op: Any, mode: GenerationMode, cases: int, session: requests.Session, tally: Counter[Any]) -> None:
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize="RAILGUARD_FUZZ_CASES" not in os.environ,  # CI: the same cases every run
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode), served=st.booleans())
    def run(case: Any, served: bool) -> None:
        if op.path.startswith("/v1/review/"):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {ADMIN_KEY}"}
        elif served and isinstance(case.body, dict):
            case.body["model"] = SERVED[op.path]
        response = case.call(session=session, timeout=30)
        tally[(op.path, mode.value, response.status_code)] += 1
        _check(op.path, response)

    run()


def _operations(gateway_url: str, chosen: Any) -> list[Any]:
    # read whole streams (schemathesis stops after 20 events by default) to see each end with [DONE]
    config = schemathesis.config.SchemathesisConfig.from_dict({"max-stream-events": 100_000})
    schema = schemathesis.openapi.from_url(gateway_url + "/openapi.json", config=config)
    return [op for op in (r.ok() for r in schema.get_all_operations()) if chosen(op.path)]


def _fuzz_all(operations: list[Any]) -> Counter[tuple[str, str, int]]:
    """(path, mode, status) counts of about CASES cases, shared among the operations and both modes."""
    tally: Counter[tuple[str, str, int]] = Counter()
    session = requests.Session()
    runs = [(op, mode) for op in operations for mode in GenerationMode]
    for op, mode in runs:
        _fuzz(op, mode, max(1, CASES // len(runs)), session, tally)
    total = sum(tally.values())
    print(f"\n{total} cases, 5xx: {sum(n for (_, _, s), n in tally.items() if s >= 500)}")
    for key, n in sorted(tally.items()):
        print(*key, n)
    assert total >= CASES * 0.9  # hypothesis ran (about) as many as asked
    return tally


def test_generated_bodies_never_get_a_5xx_and_every_error_is_openais(served: tuple[str, Path]) -> None:
    gateway_url, log = served
    operations = _operations(gateway_url, lambda path: path in OPERATIONS)
    assert sorted(op.path for op in operations) == sorted(OPERATIONS)
    tally = _fuzz_all(operations)
    assert any(s == 200 for (_, _, s) in tally), tally  # some reached the model, not only the validator
    assert "Traceback" not in log.read_text()


def test_generated_review_requests_never_get_a_5xx_and_every_error_is_openais(
    served: tuple[str, Path],
) -> None:
    gateway_url, log = served
    operations = _operations(gateway_url, lambda path: path.startswith("/v1/review/"))
    assert len(operations) == 12
    tally = _fuzz_all(operations)
    assert {s for (_, _, s) in tally} >= {200, 400, 404}, tally  # bodies got past the validators too
    assert "Traceback" not in log.read_text()
