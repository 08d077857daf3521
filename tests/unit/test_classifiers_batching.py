from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from classifiers.batching import Coalescer


class SlowUpper:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> list[str]:
        time.sleep(0.02)
        with self.lock:
            self.calls.append(list(texts))
        return [t.upper() for t in texts]


def test_concurrent_calls_share_batches_and_get_their_own_results() -> None:
    fn = SlowUpper()
    co = Coalescer(fn, max_items=64)
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda i: co([f"a{i}", f"b{i}"]), range(48)))
    finally:
        co.close()
    assert results == [[f"A{i}", f"B{i}"] for i in range(48)]
    assert co.batches == len(fn.calls) < 48  # merged
    assert max(len(c) for c in fn.calls) > 2


def test_batches_respect_max_items_roughly() -> None:
    fn = SlowUpper()
    co = Coalescer(fn, max_items=4)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: co([str(i)]), range(32)))
    co.close()
    assert max(len(c) for c in fn.calls) <= 4


def test_errors_reach_every_caller_and_worker_survives() -> None:
    def boom(texts: list[str]) -> list[str]:
        if "bad" in texts:
            raise ValueError("bad input")
        return texts

    co = Coalescer(boom, max_items=8)
    with pytest.raises(ValueError, match="bad input"):
        co(["bad"])
    assert co(["fine"]) == ["fine"]
    co.close()
    with pytest.raises(RuntimeError, match="closed"):
        co(["late"])


def test_empty_input_needs_no_worker() -> None:
    co: Coalescer[str] = Coalescer(lambda t: t, max_items=8)
    assert co([]) == []
    assert co.batches == 0
