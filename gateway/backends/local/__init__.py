"""The `local` backend: a transformers model in this process, batched on one worker thread.

Importing this package does not import torch or transformers; they load when the model does.
"""

from gateway.backends.local.backend import LocalBackend
from gateway.backends.local.convert import ensure_model, prepare
from gateway.backends.local.params import LogitsProcessor, RowSpec, SamplingParams, SteeringVector
from gateway.backends.local.plan import SteeringResolver

__all__ = [
    "LocalBackend",
    "LogitsProcessor",
    "RowSpec",
    "SamplingParams",
    "SteeringResolver",
    "SteeringVector",
    "ensure_model",
    "prepare",
]
