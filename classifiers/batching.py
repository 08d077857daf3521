"""Coalesce concurrent calls into shared batches: one worker thread drains a queue; and the batches
of windows an ONNX call takes (sorted by length, padded).

A caller's texts wait only while the batch before them runs: the worker takes everything queued
(up to ``max_items``) as soon as it is free, so a lone caller pays no extra wait.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["Coalescer", "by_length", "padded"]

Ids = npt.NDArray[np.int64]

T = TypeVar("T")


@dataclass
class _Job(Generic[T]):
    texts: Sequence[str]
    done: threading.Event = field(default_factory=threading.Event)
    result: list[T] | None = None
    error: BaseException | None = None


class Coalescer(Generic[T]):
    """Runs ``fn(texts) -> results`` (one result per text) for many threads, merged into batches."""

    def __init__(self, fn: Callable[[list[str]], list[T]], max_items: int, name: str = "coalescer"):
        self._fn = fn
        self._max_items = max_items
        self._name = name
        self._queue: queue.SimpleQueue[_Job[T] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0  # number of fn calls so far (tests and metrics read it)

    def __call__(self, texts: Sequence[str]) -> list[T]:
        if not texts:
            return []
        job: _Job[T] = _Job(texts)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            size = len(first.texts)
            stop = False
            while size < self._max_items:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
                size += len(nxt.texts)
            self._run(jobs)
            if stop:
                return

    def _run(self, jobs: list[_Job[T]]) -> None:
        texts = [t for job in jobs for t in job.texts]
        try:
            results = self._fn(texts)
            self.batches += 1
            pos = 0
            for job in jobs:
                job.result = results[pos : pos + len(job.texts)]
                pos += len(job.texts)
        except Exception as exc:  # handed to every caller of this batch
            for job in jobs:
                job.error = exc
        for job in jobs:
            job.done.set()


def by_length(lengths: Sequence[int], size: int) -> Iterator[list[int]]:
    """Indices in batches of ``size``, sorted by length (little padding)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for start in range(0, len(order), size):
        yield order[start : start + size]


def padded(windows: Sequence[Sequence[int]], idx: Sequence[int], pad: int) -> tuple[Ids, Ids]:
    """``windows[idx]`` as token ids padded on the right with ``pad``, and their attention mask."""
    width = max(len(windows[k]) for k in idx)
    ids = np.full((len(idx), width), pad, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    for row, k in enumerate(idx):
        ids[row, : len(windows[k])] = windows[k]
        mask[row, : len(windows[k])] = 1
    return ids, mask
