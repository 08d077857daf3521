"""The trained heads: a small MLP over the sentence embedding, one sigmoid output per learned category.

Stored as ``heads.npz`` (``w0, b0, w1, b1, ...`` and ``names``) so the runtime applies them with numpy;
training writes the same file from torch (:mod:`classifiers.training.fit`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["Calibration", "Heads"]

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Heads:
    names: tuple[str, ...]
    weights: tuple[Array, ...]
    biases: tuple[Array, ...]

    @classmethod
    def load(cls, path: Path) -> Heads:
        with np.load(path, allow_pickle=False) as data:
            n = sum(1 for k in data.files if k.startswith("w"))
            weights = tuple(data[f"w{i}"].astype(np.float32) for i in range(n))
            biases = tuple(data[f"b{i}"].astype(np.float32) for i in range(n))
            names = tuple(str(x) for x in data["names"])
        if weights[-1].shape[1] != len(names):
            raise ValueError(f"{path}: {weights[-1].shape[1]} outputs for {len(names)} names")
        return cls(names, weights, biases)

    def save(self, path: Path) -> None:
        arrays: dict[str, npt.NDArray[np.generic]] = {"names": np.array(self.names)}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"w{i}"], arrays[f"b{i}"] = w.astype(np.float32), b.astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]

    @property
    def input_dim(self) -> int:
        return int(self.weights[0].shape[0])

    def __call__(self, embeddings: Array) -> Array:
        """Probabilities ``[n, len(names)]`` for embeddings ``[n, input_dim]``."""
        x = embeddings.astype(np.float32, copy=False)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            if i < last:
                x = np.maximum(x, 0.0)
        out: Array = (1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))).astype(np.float32)
        return out


@dataclass(frozen=True)
class Calibration:
    """Per-head thresholds picked on the validation split (training data only) for one encoder."""

    encoder: str
    precision: str
    max_tokens: int
    thresholds: dict[str, float]
    info: dict[str, object]

    @classmethod
    def load(cls, path: Path) -> Calibration:
        data = json.loads(path.read_text())
        return cls(
            encoder=str(data["encoder"]),
            precision=str(data["precision"]),
            max_tokens=int(data["max_tokens"]),
            thresholds={str(k): float(v) for k, v in data["thresholds"].items()},
            info=dict(data.get("info", {})),
        )

    def save(self, path: Path) -> None:
        payload = {
            "encoder": self.encoder,
            "precision": self.precision,
            "max_tokens": self.max_tokens,
            "thresholds": self.thresholds,
            "info": self.info,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
