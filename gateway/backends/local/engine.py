"""The batched decoding loop of the local backend, on one dedicated worker thread.

Static batching: the worker takes up to `max_batch` waiting rows (waiting at most `batch_wait_s` for
the batch to fill, and only rows for the same LoRA adapter), left-pads them, prefills them in one
forward pass with explicit `position_ids`, then decodes them together one token per step with the KV
cache. Rows finish independently (stop token, stop string, `max_tokens`, or their client going
away); a finished row leaves the batch at once, so the KV cache, mask and steering deltas shrink
with it and a cancelled request stops costing compute at the next step. Requests that arrive while a
batch runs wait for the next batch.

The event loop never runs torch: `submit` returns a `Ticket` whose events the worker posts with
`loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from gateway.backends.local.hooks import BatchSteering
from gateway.backends.local.params import FinishReason, RowEvent, RowSpec
from gateway.backends.local.sampling import make_generator, next_token
from gateway.backends.local.text import TextStream
from gateway.errors import RailguardError, ServiceUnavailableError

__all__ = ["Engine", "EngineStats", "Ticket"]

log = logging.getLogger(__name__)


@dataclass
class EngineStats:
    """Counters for tests and metrics; written by the worker thread only."""

    batches: int = 0
    forward_calls: int = 0
    decode_row_steps: int = 0  # rows carried by decode forward passes, summed over passes
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1024))


class Ticket:
    """One submitted request: an async stream of its rows' `RowEvent`s, and `cancel()`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rows: int) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[RowEvent | BaseException] = asyncio.Queue()
        self._open_rows = rows
        self.cancelled = False  # set on the loop, read by the worker at its next step

    def cancel(self) -> None:
        self.cancelled = True

    async def events(self) -> AsyncIterator[RowEvent]:
        """Every row's events, in the order produced, until each row has finished."""
        try:
            while self._open_rows > 0:
                item = await self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item.finish_reason is not None:
                    self._open_rows -= 1
                yield item
        finally:
            if self._open_rows > 0:
                self.cancel()

    def post(self, item: RowEvent | BaseException) -> None:
        """Called by the worker thread."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancelled = True


class _Row:
    def __init__(self, spec: RowSpec, ticket: Ticket, tokenizer: Any) -> None:
        self.spec = spec
        self.ticket = ticket
        self.generated: list[int] = []
        self.text = TextStream(tokenizer, spec.sampling.stop)
        self.generator = make_generator(spec.sampling.seed)


class Engine:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch: int,
        batch_wait_s: float,
        stop_token_ids: Iterable[int],
        peft: bool = False,
        base: Any | None = None,
        base_id: str | None = None,
    ) -> None:
        """`model` serves rows without an adapter. With `base` (the untuned weights, when `model` has
        an adapter merged in), rows for `base_id` and for LoRA adapters (`peft`: `base`, or else
        `model`, is a PeftModel holding them) run on it."""
        self._model = model
        self._base = base
        self._base_id = base_id
        self._active = model
        self._tokenizer = tokenizer
        self._max_batch = max_batch
        self._batch_wait_s = batch_wait_s
        self._stop_ids = frozenset(stop_token_ids)
        self._pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self._peft = peft
        self._pending: deque[_Row] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._retiring = False  # no new work expected: stop once everything queued has run
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.stats = EngineStats()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="railguard-local-engine", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker after its current step; waiting requests fail with 503."""
        with self._cond:
            self._closing = True
            pending, self._pending = list(self._pending), deque()
            self._cond.notify_all()
        for ticket in {id(r.ticket): r.ticket for r in pending}.values():
            ticket.post(ServiceUnavailableError("the local model is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout)

    def retire(self) -> None:
        """Let everything queued or running finish, then stop (a newer engine took over: hot reload)."""
        with self._cond:
            self._retiring = True
            self._cond.notify_all()

    def submit(self, rows: Sequence[RowSpec]) -> Ticket:
        """Queue the rows of one request (call on the event loop)."""
        ticket = Ticket(asyncio.get_running_loop(), len(rows))
        with self._cond:
            if self._closing or self._stopped:
                raise ServiceUnavailableError(
                    "the local model is shutting down or being replaced", headers={"Retry-After": "1"}
                )
            self._pending.extend(_Row(spec, ticket, self._tokenizer) for spec in rows)
            self._cond.notify_all()
        return ticket

    def _work(self) -> None:
        while (batch := self._collect()) is not None:
            if not batch:
                continue
            try:
                self._run(batch)
            except Exception as exc:
                log.exception("local generation failed")
                error = RailguardError(f"local generation failed: {type(exc).__name__}")
                for ticket in {id(r.ticket): r.ticket for r in batch}.values():
                    ticket.post(error)

    def _collect(self) -> list[_Row] | None:
        """Block until rows wait, give the batch `batch_wait_s` to fill, take one adapter's rows."""
        with self._cond:
            while not self._closing and not self._pending:
                if self._retiring:
                    self._stopped = True
                    return None
                self._cond.wait()
            if self._closing:
                return None
            adapter = self._pending[0].spec.adapter
            deadline = time.monotonic() + self._batch_wait_s
            while not self._closing:
                ready = sum(1 for r in self._pending if r.spec.adapter == adapter)
                remaining = deadline - time.monotonic()
                if ready >= self._max_batch or remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch: list[_Row] = []
            rest: deque[_Row] = deque()
            for row in self._pending:
                if row.ticket.cancelled:
                    continue
                fits = row.spec.adapter == adapter and len(batch) < self._max_batch
                (batch if fits else rest).append(row)
            self._pending = rest
            return batch

    def _run(self, rows: list[_Row]) -> None:
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(rows))
        hidden = int(self._model.config.get_text_config().hidden_size)
        steering = BatchSteering([r.spec.steering for r in rows], hidden, self._model.dtype)
        with (
            torch.inference_mode(),
            self._select(rows[0].spec.adapter) as model,
            steering.attach(model),
        ):
            self._active = model
            self._decode(rows, steering)

    def _decode(self, rows: list[_Row], steering: BatchSteering) -> None:
        logits, mask, positions, cache = self._prefill(rows, steering)
        steering.generating()
        while True:
            tokens, keep = self._step(rows, logits)
            if self._closing:
                for row in rows:
                    row.ticket.post(ServiceUnavailableError("the local model is shutting down"))
                return
            if not keep:
                return
            if len(keep) < len(rows):
                index = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
                steering.select(index)
                rows = [rows[i] for i in keep]
                tokens = [tokens[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            positions = positions + 1
            out = self._active(
                input_ids=torch.tensor(tokens, dtype=torch.long).unsqueeze(1),
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
            )
            self.stats.forward_calls += 1
            self.stats.decode_row_steps += len(rows)
            logits = out.logits[:, -1, :].float()
            cache = out.cache

    def _prefill(
        self, rows: list[_Row], steering: BatchSteering
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        width = max(len(r.spec.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            prompt = row.spec.prompt_ids
            ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[i, width - len(prompt) :] = 1
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids}
        steering.read(lambda: self._active(**inputs, use_cache=False, logits_to_keep=1))  # conditional only
        out = self._active(**inputs, use_cache=True, logits_to_keep=1)
        self.stats.forward_calls += 1
        return out.logits[:, -1, :].float(), mask, position_ids[:, -1:], out.cache

    def _step(self, rows: list[_Row], logits: torch.Tensor) -> tuple[list[int], list[int]]:
        """Pick and report each row's next token; return the tokens and the rows still running."""
        tokens: list[int] = []
        keep: list[int] = []
        for i, row in enumerate(rows):
            token = self._pad_id
            if not row.ticket.cancelled:
                spec = row.spec
                token = next_token(logits[i], row.generated, spec.sampling, spec.processors, row.generator)
                if self._advance(row, token) is None:
                    keep.append(i)
            tokens.append(token)
        return tokens, keep

    def _advance(self, row: _Row, token: int) -> FinishReason | None:
        row.generated.append(token)
        finish: FinishReason | None = None
        delta = ""
        if token in self._stop_ids:
            finish = "stop"
        else:
            delta = row.text.push(token)
            if row.text.stopped:
                finish = "stop"
            elif len(row.generated) >= row.spec.sampling.max_tokens:
                finish = "length"
        if finish is not None:
            delta += row.text.finish()
            if row.text.stopped:  # a stop string completed by the final flush
                finish = "stop"
        if delta or finish is not None:
            row.ticket.post(RowEvent(row.spec.index, delta, len(row.generated), finish))
        return finish

    @contextmanager
    def _select(self, adapter: str | None) -> Iterator[Any]:
        """The weights a batch runs on: `model` (adapter None), the untuned base (`base_id`), or a
        LoRA adapter of the PeftModel that holds them."""
        if adapter is None and (self._base is not None or not self._peft):
            yield self._model
            return
        target = self._base if self._base is not None else self._model
        if adapter is None or adapter == self._base_id:
            if self._peft:
                with target.disable_adapter():
                    yield target
            else:
                yield target
            return
        if not self._peft:
            raise ValueError(f"adapter {adapter!r} requested from a model without adapters")
        target.set_adapter(adapter)
        yield target
