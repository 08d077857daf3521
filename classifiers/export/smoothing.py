"""SmoothQuant for the int8 export: move activation outliers into the weights before quantizing.

Dynamic int8 quantizes each MatMul's input with one scale for the whole tensor. A transformer's
activations have a few channels tens of times larger than the rest (e5-small's FFN outputs reach 33
where the median channel peaks at 2), so one scale leaves the ordinary channels a handful of levels.
SmoothQuant (Xiao et al., 2023) rescales each input channel ``j`` of a linear layer by
``s_j = max|x_j|^alpha / max|W_j|^(1 - alpha)``: the layer computes ``(x / s) @ (s * W)``, the same
function, with flatter activations and slightly rougher weights (which per-channel quantization
absorbs). Post-LayerNorm encoders (BERT) cannot fold ``1 / s`` into the norm, whose output is also the
residual, so it stays an explicit multiply before each MatMul (with the extra quantizations of Q, K and
V's now separate inputs, ~5 % of the int8 encoder's time).

The channel maxima come from the fp32 model on the repository's own seed texts (training data, shipped
in the package), so a build needs nothing from ``../shared``. ``alpha`` was chosen by measurement
(docs/classifiers.md, "Why this design").

torch is imported inside the functions, which only the build calls.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from classifiers.encoder import SMOOTHING_ALPHA as ALPHA  # part of the int8 files' name
from classifiers.training.seed import read_seed  # the shipped seed texts (training data) calibrate it

__all__ = ["ALPHA", "calibration_texts", "channel_peaks", "load_peaks", "save_peaks", "smooth", "smooth_with"]


def calibration_texts(n: int = 256, seed: int = 0) -> list[str]:
    """A fixed sample of the seed examples (every language and label), the same on every machine."""
    texts = [example.text for example in read_seed()]
    random.Random(seed).shuffle(texts)
    return texts[:n]


def smooth(module: Any, windows: Iterable[Sequence[int]], alpha: float = ALPHA) -> Any:
    """Rewrite every ``nn.Linear`` of ``module`` (called as ``module(input_ids, attention_mask)``) in
    place as its smoothed equivalent, from the channel maxima seen on ``windows`` (one at a time, so
    padding never counts). Returns the module."""
    return smooth_with(module, channel_peaks(module, windows), alpha)


def channel_peaks(module: Any, windows: Iterable[Sequence[int]]) -> dict[str, Any]:
    """Each ``nn.Linear``'s largest absolute input per channel over ``windows``, by module name.

    They are fp32 sums whose last bits depend on the kernels torch picks (its thread count among
    them), so a build keeps them (`save_peaks`): every int8 file of one build directory is smoothed
    with the same scales, and its parts compose exactly."""
    import torch

    linears = {name: m for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)}
    peaks = {name: torch.zeros(m.in_features) for name, m in linears.items()}

    def recorder(name: str) -> Any:
        def hook(_: Any, args: tuple[Any, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(0).float()
            peaks[name] = torch.maximum(peaks[name], x)

        return hook

    hooks = [m.register_forward_pre_hook(recorder(name)) for name, m in linears.items()]
    try:
        with torch.inference_mode():
            for window in windows:
                ids = torch.tensor([list(window)], dtype=torch.int64)
                module(ids, torch.ones_like(ids))
    finally:
        for hook in hooks:
            hook.remove()
    return peaks


def smooth_with(module: Any, peaks: Mapping[str, Any], alpha: float = ALPHA) -> Any:
    """:func:`smooth` from channel maxima measured before (:func:`channel_peaks`)."""
    import torch

    linears = {name: m for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)}
    if set(peaks) != set(linears):
        raise ValueError("the channel maxima are not this module's: its linear layers differ")
    modules = dict(module.named_modules())
    for name, linear in linears.items():
        weight_peak = linear.weight.detach().abs().amax(0).float().clamp(min=1e-5)
        scale = (peaks[name].clamp(min=1e-5) ** alpha / weight_peak ** (1 - alpha)).clamp(min=1e-3)
        parent, _, attr = name.rpartition(".")
        setattr(modules[parent], attr, smoothed_linear(linear, scale))
    return module


def save_peaks(peaks: Mapping[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({name: t.contiguous() for name, t in peaks.items()}, str(tmp))
    tmp.replace(path)


def load_peaks(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return dict(load_file(str(path)))


@functools.cache
def _smoothed_linear_class() -> Any:
    import torch

    class _SmoothedLinear(torch.nn.Module):
        """``linear(x)`` computed as ``(x * (1 / s)) @ (s * W)^T + b``."""

        def __init__(self, linear: Any, scale: Any) -> None:
            super().__init__()
            self.register_buffer("inverse", (1.0 / scale).to(linear.weight.dtype))
            self.linear = torch.nn.Linear(
                linear.in_features, linear.out_features, bias=linear.bias is not None
            )
            with torch.no_grad():
                self.linear.weight.copy_(linear.weight * scale.to(linear.weight.dtype)[None, :])
                if linear.bias is not None:
                    self.linear.bias.copy_(linear.bias)

        def forward(self, x: Any) -> Any:
            return self.linear(x * self.inverse)

    return _SmoothedLinear


def smoothed_linear(linear: Any, scale: Any) -> Any:
    """``linear`` as a module computing ``(x * (1 / scale)) @ (scale * W)^T + b``."""
    return _smoothed_linear_class()(linear, scale)
