"""LoRA deltas on the encoder's linear layers (Hu et al. 2021), trained by
:mod:`classifiers.training.finetune` and written as ``lora.safetensors`` beside the heads:
``<module>.lora_A`` (``[r, in]``) and ``<module>.lora_B`` (``[out, r]``) per linear layer, with ``r``
and ``alpha`` in the metadata (~1.3 MB for multilingual-e5-small at r=8, in fp16). The build merges
them into the weights (:func:`classifiers.export.lora.merge`), so serving pays nothing for them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["LoRALinear", "attach", "save"]


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
