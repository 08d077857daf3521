"""Stored steering vectors: a safetensors file of directions plus a JSON sidecar that says what they are.

`<name>.safetensors` holds one float32 tensor per layer, `layer.<i>` (shape `[hidden]`): a difference
of means, or a learned vector; and for a conditional vector (CAST) `condition.direction`.
`<name>.json` holds the model it was made on, the layers steered and the scale (chosen by
measurement), the positions it steers, the mode (add or ablate), the condition's layer and
threshold, how it was made and its evaluation.

A request's scale multiplies the stored scale: `{"vector": "refusal", "scale": 1}` is the measured
setting, `0.5` half of it, `-1` the opposite direction.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from steering.types import Condition, Mode, Positions, SteeringVector

if TYPE_CHECKING:
    import torch

__all__ = ["SHIPPED_DIR", "StoredVector", "VectorNotFoundError", "VectorStore"]

SHIPPED_DIR = Path(str(files("steering").joinpath("vectors")))
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class VectorNotFoundError(KeyError):
    """No stored vector has this name."""


@dataclass(frozen=True)
class StoredVector:
    name: str
    model: str
    directions: dict[int, torch.Tensor]
    layers: tuple[int, ...]  # the layers steered, each with its own direction
    scale: float = 1.0
    positions: Positions = "all"
    mode: Mode = "add"
    method: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    condition: Condition | None = None

    def __post_init__(self) -> None:
        missing = [layer for layer in self.layers if layer not in self.directions]
        if not self.layers or missing:
            raise ValueError(f"vector {self.name!r}: no direction stored for layers {missing or 'none'}")
        if self.condition is not None:
            if self.mode != "add":
                raise ValueError(f"vector {self.name!r}: only added vectors can be conditional")
            if tuple(self.condition.direction.shape) != (self.hidden_size,):
                raise ValueError(f"vector {self.name!r}: the condition's direction has the wrong size")

    @property
    def hidden_size(self) -> int:
        return int(self.directions[self.layers[0]].shape[0])

    def steering(self, scale: float = 1.0) -> tuple[SteeringVector, ...]:
        """The vectors to apply for a request asking for `scale` (relative to the stored scale)."""
        factor = self.scale * scale
        return tuple(
            SteeringVector(
                layer, self.directions[layer].float() * factor, self.positions, self.mode, self.condition
            )
            for layer in self.layers
        )

    def unconditional(self) -> StoredVector:
        """The same vector applied to every row (what a condition saves the others from)."""
        return replace(self, condition=None)

    def with_choice(self, layers: tuple[int, ...], scale: float, evaluation: dict[str, Any]) -> StoredVector:
        return replace(self, layers=layers, scale=scale, evaluation=evaluation)

    def only_steered_layers(self) -> StoredVector:
        return replace(self, directions={layer: self.directions[layer] for layer in self.layers})

    def sidecar(self) -> dict[str, Any]:
        meta = asdict(replace(self, condition=None))
        del meta["directions"]
        condition = self.condition
        meta["condition"] = (
            None if condition is None else {"layer": condition.layer, "threshold": condition.threshold}
        )
        meta["layers"] = list(self.layers)
        meta["stored_layers"] = sorted(self.directions)
        meta["hidden_size"] = self.hidden_size
        return meta

    def save(self, directory: Path) -> Path:
        from safetensors.torch import save_file

        check_name(self.name)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"layer.{i}": t.detach().float().contiguous() for i, t in self.directions.items()}
        if self.condition is not None:
            tensors["condition.direction"] = self.condition.direction.detach().float().contiguous()
        path = directory / f"{self.name}.safetensors"
        save_file(tensors, str(path), metadata={"format": "railguard-steering/1", "model": self.model})
        sidecar = json.dumps(self.sidecar(), indent=2, sort_keys=True) + "\n"
        (directory / f"{self.name}.json").write_text(sidecar, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> StoredVector:
        """From `<name>.safetensors` + `<name>.json`, or from a GGUF control vector."""
        if path.suffix == ".gguf":
            from steering.gguf import read_control_vector

            return read_control_vector(path)
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        directions = {int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("layer.")}
        condition = None
        if meta.get("condition"):
            if "condition.direction" not in tensors:
                raise ValueError(f"{path}: the sidecar names a condition the file does not hold")
            condition = Condition(
                int(meta["condition"]["layer"]),
                tensors["condition.direction"],
                float(meta["condition"]["threshold"]),
            )
        return cls(
            name=str(meta.get("name", path.stem)),
            model=str(meta.get("model", "")),
            directions=directions,
            layers=tuple(int(i) for i in meta["layers"]),
            scale=float(meta.get("scale", 1.0)),
            positions=cast(Positions, meta.get("positions", "all")),
            mode=cast(Mode, meta.get("mode", "add")),
            method=dict(meta.get("method", {})),
            evaluation=dict(meta.get("evaluation", {})),
            condition=condition,
        )


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a vector name (letters, digits, '_', '-', '.'; 64 at most)")


class VectorStore:
    """Vectors by name: explicit `{name: path}` first, then `<dir>/<name>.safetensors|.gguf` in order.

    Loaded vectors are kept: a name is read from disk once.
    """

    def __init__(self, directories: list[Path], named: dict[str, Path] | None = None) -> None:
        self._directories = directories
        self._named = dict(named or {})
        self._loaded: dict[str, StoredVector] = {}

    @classmethod
    def default(cls, extra: Path | None = None, named: dict[str, Path] | None = None) -> VectorStore:
        return cls([*([extra] if extra else []), SHIPPED_DIR], named)

    def names(self) -> list[str]:
        found = set(self._named)
        for directory in self._directories:
            if directory.is_dir():
                found |= {p.stem for p in directory.glob("*.safetensors")}
                found |= {p.stem for p in directory.glob("*.gguf")}
        return sorted(found)

    def path(self, name: str) -> Path:
        if name in self._named:
            return self._named[name]
        if _NAME.match(name):
            for directory in self._directories:
                for suffix in (".safetensors", ".gguf"):
                    candidate = directory / f"{name}{suffix}"
                    if candidate.is_file():
                        return candidate
        raise VectorNotFoundError(name)

    def load(self, name: str) -> StoredVector:
        vector = self._loaded.get(name)
        if vector is None:
            vector = StoredVector.load(self.path(name))
            self._loaded[name] = vector
        return vector
