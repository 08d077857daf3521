"""LoRA deltas on the encoder's linear layers (Hu et al. 2021).

`railguard classifiers train --finetune` trains them (`classifiers/finetune.py`) and writes
`lora.safetensors` next to the heads: `<module>.lora_A` (`[r, in]`) and `<module>.lora_B`
(`[out, r]`) per linear layer, with `r` and `alpha` in the metadata (~1.3 MB for multilingual-e5-small
at r=8, in fp16). `build` merges them into the weights before the ONNX export (`W += alpha/r * B @ A`),
so serving pays nothing for them (and never imports this module, which needs torch).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["LoRALinear", "attach", "merge", "save"]


def _torch() -> Any:
    import torch

    return torch


class LoRALinear(_torch().nn.Module):  # type: ignore[misc]
    """`base(x) + alpha/r * x @ A.T @ B.T`; B starts at zero, so training starts from the base model."""

    def __init__(self, base: Any, r: int, alpha: float) -> None:
        torch = _torch()
        super().__init__()
        self.base = base
        self.scale = alpha / r
        self.lora_A = torch.nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, r))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: Any) -> Any:
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale


def attach(
    model: Any, r: int = 8, alpha: float = 16.0, under: str = "encoder.layer."
) -> dict[str, LoRALinear]:
    """Wrap every `nn.Linear` whose name starts with `under`; freeze everything else."""
    torch = _torch()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    targets = [
        name
        for name, module in model.named_modules()
        if name.startswith(under) and isinstance(module, torch.nn.Linear)
    ]
    wrapped = {}
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        wrapped[name] = LoRALinear(getattr(parent, child), r, alpha)
        setattr(parent, child, wrapped[name])
    return wrapped


def save(modules: dict[str, LoRALinear], path: Path, r: int, alpha: float) -> Path:
    from safetensors.torch import save_file

    tensors = {}
    for name, module in modules.items():
        tensors[f"{name}.lora_A"] = module.lora_A.detach().half().contiguous()
        tensors[f"{name}.lora_B"] = module.lora_B.detach().half().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"r": str(r), "alpha": str(alpha), "format": "railguard-lora/1"})
    tmp.replace(path)
    return path


def merge(model: Any, path: Path) -> int:
    """Add the deltas of `path` into `model`'s weights in place; returns how many layers changed."""
    from safetensors import safe_open

    torch = _torch()
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
