"""Named steering requests -> vectors, from the configured stores and the vectors railguard ships."""

from __future__ import annotations

import logging

from gateway.backends.base import SteeringSpec
from gateway.errors import InvalidRequestError
from gateway.settings import LocalModelConfig
from steering.types import SteeringVector
from steering.vectors import SHIPPED_DIR, VectorNotFoundError, VectorStore

__all__ = ["StoreResolver"]

log = logging.getLogger(__name__)


class StoreResolver:
    """`SteeringSpec(vector=NAME, scale=X)` -> the stored vector's layers at X times its measured scale."""

    def __init__(self, store: VectorStore, model_name: str) -> None:
        self._store = store
        self._model_name = model_name

    @classmethod
    def from_config(cls, config: LocalModelConfig) -> StoreResolver:
        directories = [d for d in (config.vectors_dir,) if d is not None]
        if config.shipped_vectors:
            directories.append(SHIPPED_DIR)
        return cls(VectorStore(directories, config.vectors), config.name)

    def names(self) -> list[str]:
        return self._store.names()

    def __call__(self, spec: SteeringSpec) -> tuple[SteeringVector, ...]:
        try:
            stored = self._store.load(spec.vector)
        except VectorNotFoundError:
            raise InvalidRequestError(
                f"no steering vector is named {spec.vector!r}",
                param="railguard.steering",
                code="steering_vector_not_found",
            ) from None
        except (OSError, ValueError, KeyError) as exc:
            log.exception("steering vector %r cannot be read", spec.vector)
            raise InvalidRequestError(
                f"steering vector {spec.vector!r} cannot be read: {type(exc).__name__}",
                param="railguard.steering",
            ) from exc
        if stored.model and stored.model != self._model_name:
            log.debug("vector %r was made on %s, serving %s", spec.vector, stored.model, self._model_name)
        return stored.steering(spec.scale)
