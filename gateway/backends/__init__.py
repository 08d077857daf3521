"""Backends: where completions come from. `base` holds the Protocol; each backend is one module."""

from gateway.backends.base import Backend, Generation, ModelCard, SteeringSpec

__all__ = ["Backend", "Generation", "ModelCard", "SteeringSpec"]
