"""Which backend serves a model id."""

from __future__ import annotations

from gateway.backends.base import Backend, ModelCard
from gateway.errors import NotFoundError

__all__ = ["ModelRouter"]


class ModelRouter:
    """Model id -> the backend that serves it."""

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends

    def cards(self) -> list[ModelCard]:
        return [card for backend in self.backends for card in backend.models()]

    def card(self, model: str) -> ModelCard:
        for card in self.cards():
            if card.id == model:
                return card
        raise NotFoundError(
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )

    def backend_for(self, model: str) -> Backend:
        for backend in self.backends:
            if any(card.id == model for card in backend.models()):
                return backend
        self.card(model)  # raises the 404
        raise AssertionError("unreachable")
