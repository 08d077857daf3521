"""Per-row steering hooks: they live in `steering.hooks` (see there); re-exported for the engine."""

from steering.hooks import BatchSteering, decoder_layers

__all__ = ["BatchSteering", "decoder_layers"]
