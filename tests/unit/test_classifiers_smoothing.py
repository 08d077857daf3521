"""SmoothQuant on a tiny random BERT whose hidden states carry one outlier channel (as real encoders'
do): smoothing keeps the function, and makes its int8 export closer to fp32 than the plain one."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import BertConfig, BertModel

from classifiers.export.encoder import export_module, quantize
from classifiers.export.smoothing import calibration_texts, smooth
from tests.models import mean_pooled_bert


def outlier_bert() -> Any:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
    )
    model = BertModel(config).eval()
    with torch.no_grad():  # channel 3 of every LayerNorm's output is 40x the others
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight[3] = 40.0
    return mean_pooled_bert(model)


def windows(n: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[1, *rng.integers(5, 120, size=int(rng.integers(4, 24))).tolist(), 2] for _ in range(n)]


def run(path: Path, batch: list[list[int]]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = []
    for w in batch:
        ids = np.array([w], dtype=np.int64)
        out.append(session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0])
    return np.stack(out)


def test_smoothing_keeps_the_function() -> None:
    plain = outlier_bert()
    smoothed = smooth(copy.deepcopy(plain), windows(32, seed=0))
    linears = [m for m in smoothed.modules() if type(m).__name__ == "_SmoothedLinear"]
    assert len(linears) == 2 * 6 + 1  # q, k, v, attention out, intermediate, output per layer; pooler
    ids = torch.tensor([[1, 7, 9, 30, 2], [1, 8, 2, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(smoothed(ids, mask), plain(ids, mask), atol=1e-5, rtol=1e-4)


def test_smoothed_int8_is_closer_to_fp32(tmp_path: Path) -> None:
    plain = outlier_bert()
    smoothed = smooth(copy.deepcopy(plain), windows(64, seed=0))
    for name, module in (("plain", plain), ("smoothed", smoothed)):
        export_module(module, tmp_path / f"{name}.fp32.onnx")
        quantize(tmp_path / f"{name}.fp32.onnx", tmp_path / f"{name}.int8.onnx")
    held_out = windows(40, seed=1)  # not the calibration windows
    reference = run(tmp_path / "plain.fp32.onnx", held_out)
    np.testing.assert_allclose(run(tmp_path / "smoothed.fp32.onnx", held_out), reference, atol=1e-4)
    plain_gap = 1 - (run(tmp_path / "plain.int8.onnx", held_out) * reference).sum(1)
    smoothed_gap = 1 - (run(tmp_path / "smoothed.int8.onnx", held_out) * reference).sum(1)
    assert smoothed_gap.mean() < plain_gap.mean() / 2, (smoothed_gap.mean(), plain_gap.mean())


def test_calibration_texts_are_a_fixed_mixed_sample() -> None:
    texts = calibration_texts()
    assert len(texts) == 256 and texts == calibration_texts()
    assert len(set(texts)) > 250
    assert any(not t.isascii() for t in texts) and any(t.isascii() for t in texts)  # several scripts


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_extreme_alphas_still_keep_the_function(alpha: float) -> None:
    plain = outlier_bert()
    smoothed = smooth(copy.deepcopy(plain), windows(8, seed=2), alpha=alpha)
    ids = torch.tensor([[1, 11, 12, 2]])
    with torch.no_grad():
        torch.testing.assert_close(smoothed(ids, torch.ones_like(ids)), plain(ids, torch.ones_like(ids)))
