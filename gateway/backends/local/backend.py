"""`LocalBackend`: the `Backend` Protocol over an in-process transformers model and its batching
engine.

`start()` loads on a background thread and returns at once; until the model is ready every request
is answered with 503. Requests are validated and tokenized off the event loop, then decoded by the
engine's worker thread together with whatever else is waiting (see `engine.py`).

Each row gets its own processors (logit_bias, banned phrases, then the request's constraint, whose
compiled form is cached across requests) and its own steering vectors, resolved by name from the
configured vector stores and the shipped ones (`vectors.py`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.backends.base import Generation, ModelCard
from gateway.backends.local.convert import ensure_model
from gateway.backends.local.loader import LoadedModel, adapter_version, check_adapter, load_model
from gateway.backends.local.params import LogitsProcessor, SamplingParams
from gateway.backends.local.plan import (
    Plan,
    SteeringResolver,
    check_supported,
    constraint_spec,
    plan_rows,
)
from gateway.backends.local.pointer import read_pointer, stamp
from gateway.backends.local.processors import (
    BannedSequences,
    LogitBias,
    Penalties,
    banned_phrase_sequences,
)
from gateway.backends.local.responses import collect_completion, stream_chunks
from gateway.backends.local.vectors import StoreResolver
from gateway.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from gateway.protocol import ChatCompletion, ChatCompletionChunk, Envelope
from gateway.settings import LocalModelConfig
from steering.constrain import ConstraintError, ConstraintSpec

if TYPE_CHECKING:
    from gateway.backends.local.engine import Engine
    from steering.constrain import ConstraintCompiler

__all__ = ["LocalBackend"]

log = logging.getLogger(__name__)


class LocalBackend:
    name = "local"

    def __init__(
        self,
        config: LocalModelConfig,
        cache_dir: Path,
        *,
        resolve_steering: SteeringResolver | None = None,
        loader: Callable[[], LoadedModel] | None = None,
        serving_pointer: Path | None = None,
        poll_s: float = 1.0,
    ) -> None:
        """`loader` replaces "convert if needed, then load from disk" (tests pass a tiny model);
        `resolve_steering` replaces the vector stores of `config` (`StoreResolver`). `serving_pointer`
        is the registry's file naming the adapter promoted for `config.name` (`railguard registry
        promote`): read at start and watched, so a promotion or rollback is served without a restart."""
        self._pointer = serving_pointer
        self._pointer_seen: tuple[float, int] | None = None
        self._poll_s = poll_s
        self._cache_dir = cache_dir
        self.reload_error: str | None = None
        if serving_pointer is not None:
            self._pointer_seen = stamp(serving_pointer)
            try:
                pointed = read_pointer(serving_pointer, config.name)
                if pointed is not None:
                    check_adapter(pointed)
                    config = config.model_copy(update={"adapter": pointed})
            except Exception as exc:  # serve the configured adapter rather than nothing
                self.reload_error = f"{type(exc).__name__}: {exc}"
                log.error("the promoted adapter cannot be served, serving the configured one: %s", exc)
        self._config = config
        self._loader = loader or (lambda: load_model(ensure_model(config, cache_dir), config))
        self._watcher: asyncio.Task[None] | None = None
        self._resolve_steering = resolve_steering or StoreResolver.from_config(config)
        self._compiler: ConstraintCompiler | None = None
        self._banned_cache: dict[tuple[str, ...], LogitsProcessor] = {}
        self._created = int(time.time())
        self._cards = self._model_cards()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loaded: LoadedModel | None = None
        self._engine: Engine | None = None
        self._error: BaseException | None = None
        self._closed = False

    async def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name="railguard-local-load", daemon=True)
            self._thread.start()
        if self._pointer is not None and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="railguard-local-registry-watch")

    async def _watch(self) -> None:
        """Poll the serving pointer; a changed one loads its adapter beside the engine in service and
        swaps it in between batches (requests in flight finish on the old one)."""
        assert self._pointer is not None
        while True:
            await asyncio.sleep(self._poll_s)
            current = stamp(self._pointer)
            if current is None or current == self._pointer_seen or self._engine is None:
                continue
            self._pointer_seen = current
            try:
                adapter = read_pointer(self._pointer, self._config.name)
                if adapter is not None and adapter != self._config.merged_adapter:
                    await asyncio.to_thread(self._reload, adapter)
            except Exception as exc:  # a bad promotion: keep serving what is loaded, say why
                self.reload_error = f"{type(exc).__name__}: {exc}"
                log.error("adapter reload failed, still serving %s: %s", self._config.merged_adapter, exc)

    def _reload(self, adapter: Path) -> None:
        started = time.perf_counter()
        check_adapter(adapter)
        config = self._config.model_copy(update={"adapter": adapter})
        loaded = load_model(ensure_model(config, self._cache_dir), config)
        engine = _engine(loaded, config)
        engine.start()
        with self._lock:
            if self._closed:
                engine.close()
                return
            old, self._engine, self._loaded = self._engine, engine, loaded
            self._config = config
            self._cards = self._model_cards()
        if old is not None:
            old.retire()
        self.reload_error = None
        log.info(
            "now serving adapter %s as %s (loaded in %.1f s)",
            adapter,
            config.name,
            time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        with self._lock:
            self._closed = True
            engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.to_thread(engine.close)

    def models(self) -> list[ModelCard]:
        return self._cards

    def _model_cards(self) -> list[ModelCard]:
        config = self._config
        merged = config.merged_adapter
        ids: dict[str, str | None] = {config.name: adapter_version(merged) if merged else None}
        if config.served_base:
            ids[config.served_base] = None
        ids.update({i: adapter_version(path) for i, path in config.adapters.items()})
        return [
            ModelCard(
                i,
                owned_by="railguard",
                created=self._created,
                backend=self.name,
                adapter=a,
                max_tokens=config.max_context_tokens,  # prompt and completion share it (plan_rows)
            )
            for i, a in ids.items()
        ]

    async def ready(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Engine | None:
        return self._engine

    @property
    def compiler(self) -> ConstraintCompiler | None:
        return self._compiler

    async def complete(self, generation: Generation) -> ChatCompletion:
        engine, plan = await self._prepare(generation)
        ticket = engine.submit(plan.rows)
        try:
            return await collect_completion(
                ticket.events(), _envelope(generation), len(plan.rows), plan.prompt_tokens
            )
        finally:
            ticket.cancel()  # a no-op once every row has finished

    async def open_stream(self, generation: Generation) -> AsyncIterator[ChatCompletionChunk]:
        engine, plan = await self._prepare(generation)
        options = generation.request.stream_options
        include_usage = options is not None and options.include_usage
        return self._stream(engine, plan, _envelope(generation), include_usage)

    async def _stream(
        self, engine: Engine, plan: Plan, envelope: Envelope, include_usage: bool
    ) -> AsyncIterator[ChatCompletionChunk]:
        ticket = engine.submit(plan.rows)  # on first iteration: a stream never read costs nothing
        try:
            chunks = stream_chunks(
                ticket.events(), envelope, len(plan.rows), plan.prompt_tokens, include_usage
            )
            async for chunk in chunks:
                yield chunk
        finally:
            ticket.cancel()

    async def _prepare(self, generation: Generation) -> tuple[Engine, Plan]:
        request = generation.request
        check_supported(request)  # a 400 is final: say it even while the model loads
        adapter = self._adapter_for(request.model)
        engine, loaded = self._require_ready()
        plan = await asyncio.to_thread(self._plan, generation, loaded, adapter)
        _check_steering(plan, loaded.model)
        return engine, plan

    def _plan(
        self,
        generation: Generation,
        loaded: LoadedModel,
        adapter: str | None,
    ) -> Plan:
        """Off the event loop: tokenize, resolve steering, build processors (constraints cached)."""
        processors = self._processors(generation, loaded)
        plan = plan_rows(
            generation,
            loaded.tokenizer,
            self._config,
            adapter=adapter,
            processors=processors,
            resolve_steering=self._resolve_steering,
        )
        spec = constraint_spec(generation.request)
        if spec is None:
            return plan
        rows = tuple(
            replace(row, processors=(*row.processors, self._constraint(spec, row.sampling)))
            for row in plan.rows
        )
        return replace(plan, rows=rows)

    def _constraint(self, spec: ConstraintSpec, sampling: SamplingParams) -> LogitsProcessor:
        compiler = self._compiler
        if compiler is None:
            raise ServiceUnavailableError("the local model is still loading", headers={"Retry-After": "5"})
        try:
            return compiler.processor(spec, sampling.max_tokens, greedy=sampling.greedy)
        except ConstraintError as exc:
            param = {"json_schema": "response_format", "regex": "railguard.regex"}.get(spec.kind)
            raise InvalidRequestError(str(exc), param=param or "railguard.choice") from exc

    def _require_ready(self) -> tuple[Engine, LoadedModel]:
        engine, loaded = self._engine, self._loaded
        if engine is not None and loaded is not None:
            return engine, loaded
        if self._error is not None:
            message = f"the local model failed to load: {type(self._error).__name__}"
        else:
            message = "the local model is still loading"
        raise ServiceUnavailableError(message, headers={"Retry-After": "5"})

    def _adapter_for(self, model: str) -> str | None:
        if model == self._config.name:
            return None
        if model in self._config.adapters or model == self._config.served_base:
            return model
        raise NotFoundError(f"the model {model!r} does not exist", param="model", code="model_not_found")

    def _processors(self, generation: Generation, loaded: LoadedModel) -> tuple[LogitsProcessor, ...]:
        processors: list[LogitsProcessor] = []
        request = generation.request
        defaults = loaded.defaults if request.model == self._config.name else {}
        frequency = request.frequency_penalty
        presence = request.presence_penalty
        frequency = defaults.get("frequency_penalty", 0.0) if frequency is None else frequency
        presence = defaults.get("presence_penalty", 0.0) if presence is None else presence
        if frequency or presence:
            processors.append(Penalties(frequency, presence))
        if generation.request.logit_bias:
            vocab_size = int(loaded.model.config.vocab_size)
            processors.append(LogitBias(generation.request.logit_bias, vocab_size))
        if generation.banned_phrases:
            processors.append(self._banned(generation.banned_phrases, loaded))
        return tuple(processors)

    def _banned(self, phrases: tuple[str, ...], loaded: LoadedModel) -> LogitsProcessor:
        """Built once per phrase list (the policy's rarely changes): ~0.1 s per phrase to index."""
        key = tuple(sorted(set(phrases)))
        with self._lock:
            processor = self._banned_cache.get(key)
        if processor is None:
            compiler = self._compiler
            if compiler is None:  # not possible once ready; kept for a loader without a compiler
                return BannedSequences(banned_phrase_sequences(loaded.tokenizer, phrases))
            from steering.banned import BannedPhrases

            processor = BannedPhrases(compiler.vocab, key)
            with self._lock:
                if len(self._banned_cache) >= 8:
                    self._banned_cache.clear()
                self._banned_cache[key] = processor
        return processor

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            loaded = self._loader()
            compiler = _compiler(loaded, self._config.constraint_cache_size)
            engine = _engine(loaded, self._config)
        except Exception as exc:
            log.exception("the local model failed to load")
            self._error = exc
            return
        with self._lock:
            if self._closed:
                return
            engine.start()
            self._loaded, self._compiler, self._engine = loaded, compiler, engine
        log.info("local model %s ready in %.1f s", self._config.name, time.perf_counter() - started)
        compiler.warm()  # the first constrained request need not pay for the vocabulary


def _engine(loaded: LoadedModel, config: LocalModelConfig) -> Engine:
    from gateway.backends.local.engine import Engine

    return Engine(
        loaded.model,
        loaded.tokenizer,
        max_batch=config.max_batch,
        batch_wait_s=config.batch_wait_ms / 1000,
        stop_token_ids=loaded.stop_token_ids,
        peft=loaded.peft,
        base=loaded.base,
        base_id=loaded.base_id,
    )


def _compiler(loaded: LoadedModel, cache_size: int) -> ConstraintCompiler:
    from steering.constrain import ConstraintCompiler
    from steering.vocabulary import TokenVocabulary

    logits_size = int(loaded.model.config.get_text_config().vocab_size)
    vocab = TokenVocabulary.from_tokenizer(loaded.tokenizer, loaded.stop_token_ids, logits_size)
    return ConstraintCompiler(vocab, cache_size=cache_size)


def _check_steering(plan: Plan, model: Any) -> None:
    """A bad vector must fail its own request, not the batch it would join."""
    config = model.config.get_text_config()
    for steer in plan.rows[0].steering if plan.rows else ():
        if not 0 <= steer.layer < config.num_hidden_layers:
            raise InvalidRequestError(
                f"steering layer {steer.layer} does not exist in this model",
                param="railguard.steering",
            )
        if tuple(steer.vector.shape) != (config.hidden_size,):
            raise InvalidRequestError(
                f"a steering vector for this model must have shape ({config.hidden_size},)",
                param="railguard.steering",
            )
        condition = steer.condition
        if condition is not None and not (
            0 <= condition.layer < config.num_hidden_layers
            and tuple(condition.direction.shape) == (config.hidden_size,)
        ):
            raise InvalidRequestError(
                f"the steering vector's condition (layer {condition.layer}) does not fit this model",
                param="railguard.steering",
            )


def _envelope(generation: Generation) -> Envelope:
    return Envelope(
        id=f"chatcmpl-{generation.request_id}",
        model=generation.request.model,
        created=int(time.time()),
    )
