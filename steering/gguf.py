"""The GGUF control-vector format of llama.cpp (`--control-vector`) and repeng (`export_gguf`).

Architecture `controlvector`, keys `controlvector.model_hint` and `controlvector.layer_count`, one
float32 tensor `direction.<i>` per layer, added to the output of decoder layer `i` (0-based, as in
our hooks). llama.cpp refuses `direction.0`, so a vector on layer 0 cannot be written.

The format has no scale: we write each direction multiplied by the stored scale, so llama.cpp at
strength 1 reproduces our measured setting, and a vector read back has scale 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from steering.vectors import StoredVector

__all__ = ["read_control_vector", "write_control_vector"]

ARCH = "controlvector"


def write_control_vector(vector: StoredVector, path: Path, *, drop_condition: bool = False) -> Path:
    """Only the layers the vector steers: llama.cpp applies every direction the file holds.

    The format has no conditions: a conditional vector is written only with `drop_condition`, and
    llama.cpp then applies it to every prompt.
    """
    import gguf

    if vector.condition is not None and not drop_condition:
        raise ValueError(
            f"vector {vector.name!r} is conditional and GGUF control vectors are not: "
            "export it with --drop-condition to apply it to every prompt"
        )
    if 0 in vector.layers:
        raise ValueError("llama.cpp control vectors cannot steer layer 0")
    directions = {layer: vector.directions[layer] for layer in vector.layers}
    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_string(f"{ARCH}.model_hint", vector.model)
    writer.add_uint32(f"{ARCH}.layer_count", len(directions))
    for layer, direction in sorted(directions.items()):
        data = (direction.detach().float() * vector.scale).numpy()
        writer.add_tensor(f"direction.{layer}", data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def read_control_vector(path: Path, *, name: str | None = None) -> StoredVector:
    """A GGUF control vector as a stored vector that steers every layer it holds (as llama.cpp does)."""
    import gguf
    import torch

    from steering.vectors import StoredVector

    reader = gguf.GGUFReader(str(path))
    arch = reader.fields.get("general.architecture")
    if arch is None or arch.contents() != ARCH:
        raise ValueError(f"{path} is not a GGUF control vector")
    hint = reader.fields.get(f"{ARCH}.model_hint")
    directions = {}
    for tensor in reader.tensors:
        prefix, _, index = tensor.name.partition(".")
        if prefix != "direction" or not index.isdigit() or int(index) == 0:
            raise ValueError(f"{path}: unexpected tensor {tensor.name!r}")
        directions[int(index)] = torch.tensor(tensor.data.astype("float32").reshape(-1))
    if not directions:
        raise ValueError(f"{path} holds no directions")
    return StoredVector(
        name=name or path.stem,
        model=str(hint.contents()) if hint is not None else "",
        directions=directions,
        layers=tuple(sorted(directions)),
        scale=1.0,
        method={"format": "gguf", "source": path.name},
    )
