"""The shipped LoRA deltas (``lora.safetensors``, :mod:`classifiers.training.lora`) merged into the
encoder's weights before the ONNX export (``W += alpha/r * B @ A``), so serving pays nothing for them
and never reads the file but to name the build (:func:`classifiers.encoder.encoder_key`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["merge"]


def merge(model: Any, path: Path) -> int:
    """Add the deltas of `path` into `model`'s weights in place; returns how many layers changed."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        scale = float(meta["alpha"]) / float(meta["r"])
        names = sorted({key.rsplit(".", 1)[0] for key in handle.keys()})  # noqa: SIM118
        with torch.no_grad():
            for name in names:
                a = handle.get_tensor(f"{name}.lora_A").float()
                b = handle.get_tensor(f"{name}.lora_B").float()
                linear = model.get_submodule(name)
                if tuple(linear.weight.shape) != (b.shape[0], a.shape[1]):
                    raise ValueError(f"{path}: {name} does not fit the encoder")
                linear.weight += (b @ a) * scale
    return len(names)
