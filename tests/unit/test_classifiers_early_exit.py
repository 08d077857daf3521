"""The early exit on a tiny random BERT: the encoder split at its exit block composes to the whole (in
torch, in ONNX fp32 and after SmoothQuant in int8), the exit embedding is the block's pooled output,
texts the exit heads are sure of never run the blocks after it, and the settings and trained parts
that cannot work together are refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from transformers import BertConfig, BertModel

from classifiers.build import BuiltArtifacts
from classifiers.cascade import Cascade, fuse
from classifiers.config import ClassifiersConfig, FusedEncoder
from classifiers.decision import logit
from classifiers.early_exit import (
    EarlyExit,
    ExitEncoder,
    ExitHeads,
    export_parts,
    heads_digest,
    split_module,
)
from classifiers.encoder import export_module, quantize
from classifiers.heads import Calibration, Heads
from classifiers.runtime import max_by_owner
from classifiers.smoothing import smooth
from tests.models import mean_pooled_bert

LAYER = 2
NAMES = ("unsafe", "jailbreak")


def tiny_encoder() -> Any:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64
    )
    return mean_pooled_bert(BertModel(config, add_pooling_layer=False).eval())


def windows(n: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[1, *rng.integers(5, 120, size=int(rng.integers(2, 30))).tolist(), 2] for _ in range(n)]


def padded(batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, batch))
    ids = torch.zeros((len(batch), width), dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for row, w in enumerate(batch):
        ids[row, : len(w)] = torch.tensor(w)
        mask[row, : len(w)] = 1
    return ids, mask


def test_the_parts_compose_to_the_whole_and_the_exit_is_the_blocks_output() -> None:
    module = tiny_encoder()
    first, rest = split_module(module, LAYER)
    ids, mask = padded(windows(6, seed=0))
    with torch.no_grad():
        embedding, hidden = first(ids, mask)
        torch.testing.assert_close(rest(hidden, mask), module(ids, mask), atol=1e-6, rtol=1e-5)
        states = module.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        weights = mask.unsqueeze(-1).float()
        pooled = torch.nn.functional.normalize((states[LAYER] * weights).sum(1) / weights.sum(1), dim=1)
        torch.testing.assert_close(embedding, pooled, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="inside the encoder's 4 blocks"):
        split_module(module, 4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder whole and in parts, fp32 and (smoothed) int8, as the build writes them."""
    out = tmp_path_factory.mktemp("exit")
    module = tiny_encoder()
    export_module(module, out / "whole.fp32.onnx")
    export_parts(module, LAYER, out / "first.fp32.onnx", out / "rest.fp32.onnx")
    smoothed = smooth(copy.deepcopy(module), windows(32, seed=3))
    export_module(smoothed, out / "whole.smoothed.onnx")
    export_parts(smoothed, LAYER, out / "first.smoothed.onnx", out / "rest.smoothed.onnx")
    for name in ("whole", "first", "rest"):
        quantize(out / f"{name}.smoothed.onnx", out / f"{name}.int8.onnx")
    return out


def whole(path: Path, batch: list[list[int]]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = []
    for w in batch:
        ids = np.array([w], dtype=np.int64)
        rows.append(session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0])
    return np.stack(rows)


@pytest.mark.parametrize(("precision", "batch_size"), [("fp32", 1), ("fp32", 4), ("int8", 1)])
def test_onnx_parts_give_the_whole_encoders_embedding(
    exported: Path, precision: str, batch_size: int
) -> None:
    batch = windows(9, seed=1)
    encoder = ExitEncoder(
        exported / f"first.{precision}.onnx",
        exported / f"rest.{precision}.onnx",
        threads=1,
        batch_size=batch_size,
        pad_id=0,
    )
    embedding, hidden = encoder.first(batch)
    assert embedding.shape == (9, 32) and [len(h) for h in hidden] == [len(w) for w in batch]
    # int8 quantizes every MatMul input as the whole does: the parts compose to the same numbers (one
    # window at a time, as serving runs int8: batched, dynamic int8 scales depend on the batch)
    np.testing.assert_allclose(
        encoder.rest(hidden), whole(exported / f"whole.{precision}.onnx", batch), atol=1e-5
    )
    alone = np.stack([encoder.first([w])[0][0] for w in batch])
    np.testing.assert_allclose(embedding, alone, atol=1e-5 if precision == "fp32" and batch_size > 1 else 0)


def random_heads(dim: int, seed: int, bias: float = 0.0) -> Heads:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((dim, len(NAMES))) * 4).astype(np.float32)
    return Heads(NAMES, (w,), (np.full(len(NAMES), bias, dtype=np.float32),))


def test_only_unsure_texts_run_the_blocks_after_the_exit(exported: Path) -> None:
    batch = windows(12, seed=2)
    owners = [i // 2 for i in range(len(batch))]  # 6 texts of 2 windows each
    encoder = ExitEncoder(
        exported / "first.fp32.onnx", exported / "rest.fp32.onnx", threads=1, batch_size=4, pad_id=0
    )
    exit_heads, full = random_heads(32, seed=0), random_heads(32, seed=1)
    first = max_by_owner(exit_heads(encoder.first(batch)[0]), owners, 6)
    # thresholds and a margin that leave half the texts near a threshold (unsure), half far from both
    thresholds = dict(zip(NAMES, np.median(first, axis=0).tolist(), strict=True))
    distance = np.abs(logit(first) - logit(np.median(first, axis=0))).min(axis=1)
    cascade = Cascade.of(NAMES, thresholds, {"unsafe": 0.6, "jailbreak": 0.4}, float(np.median(distance)))
    calibration = Calibration("tiny+exit2", "fp32", 256, {"unsafe": 0.6, "jailbreak": 0.4}, {})
    early = EarlyExit(encoder, ExitHeads(exit_heads, calibration, cascade, ()))
    probs, escalated = early.probabilities(batch, owners, 6, full)

    everything = max_by_owner(full(whole(exported / "whole.fp32.onnx", batch)), owners, 6)
    expected, mask = fuse(first, everything.__getitem__, cascade)
    assert 0 < escalated.sum() < 6
    np.testing.assert_array_equal(escalated, mask)
    np.testing.assert_allclose(probs, expected, atol=1e-5)

    calls: list[int] = []
    real_rest = encoder.rest

    def counting(hidden: list[np.ndarray]) -> np.ndarray:
        calls.append(len(hidden))
        return real_rest(hidden)

    encoder.rest = counting  # type: ignore[method-assign]
    early.probabilities(batch, owners, 6, full)
    assert calls == [2 * int(escalated.sum())]  # each unsure text's two windows, nothing else


def test_settings_that_cannot_work_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="has no exit heads"):
        ClassifiersConfig(encoder="minilm-l6", early_exit=True)
    with pytest.raises(ValidationError, match="cannot both be set"):
        ClassifiersConfig(early_exit=True, fuse=FusedEncoder(encoder="gemma-probe"))
    assert ClassifiersConfig(fuse=FusedEncoder(encoder="gemma-probe")).exit_layer is None
    assert ClassifiersConfig(early_exit=False).exit_layer is None
    assert ClassifiersConfig(encoder="minilm-l6").exit_layer is None
    assert ClassifiersConfig().exit_layer == 6 and ClassifiersConfig().uses_early_exit  # shipped
    bare = ClassifiersConfig(artifacts_dir=tmp_path)  # heads of one's own, no exit heads beside them
    assert bare.exit_layer == 6 and not bare.uses_early_exit
    assert ClassifiersConfig(artifacts_dir=tmp_path, early_exit=True).uses_early_exit  # required


def trained_exit(tmp_path: Path) -> tuple[ClassifiersConfig, BuiltArtifacts, Heads]:
    full = random_heads(32, seed=1)
    full.save(tmp_path / "heads.npz")
    built = tmp_path / "cache" / "e5-small-1-v2"  # what matters: the build's name
    artifacts = BuiltArtifacts(
        built,
        *(built / n for n in ("tokenizer.json", "encoder.json", "encoder.fp32.onnx", "encoder.int8.onnx")),
        heads=tmp_path / "heads.npz",
        calibration=tmp_path / "calibration.json",
        lora=tmp_path / "lora.safetensors",
        exit_layer=6,
    )
    random_heads(32, seed=0).save(tmp_path / "exit6" / "heads.npz")
    margin = {"cascade": {"margin": 1.5}, "full_heads": heads_digest(tmp_path / "heads.npz")}
    for path, info in (
        (tmp_path / "exit6" / "calibration.json", {}),
        (tmp_path / "calibration+exit6.json", margin),
    ):
        Calibration("e5-small-1-v2+exit6", "int8", 256, {"unsafe": 0.5}, info).save(path)
    return ClassifiersConfig(artifacts_dir=tmp_path), artifacts, full


def test_exit_heads_load_only_with_what_they_were_calibrated_for(tmp_path: Path) -> None:
    config, artifacts, full = trained_exit(tmp_path)
    loaded = ExitHeads.load(config, artifacts, full)
    assert loaded.cascade.margin == 1.5 and loaded.heads.names == NAMES
    assert len(loaded.files) == 3

    fused = tmp_path / "calibration+exit6.json"
    data = json.loads(fused.read_text())
    random_heads(32, seed=5).save(tmp_path / "heads.npz")  # the full heads retrained since
    with pytest.raises(ValueError, match=r"other full heads .* train-exit --keep-heads"):
        ExitHeads.load(config, artifacts, full)
    data["full_heads"] = heads_digest(tmp_path / "heads.npz")
    data["encoder"] = "e5-small-2-v2+exit6"  # another build of the encoder
    fused.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="calibrated for e5-small-2-v2\\+exit6, not e5-small-1-v2\\+exit6"):
        ExitHeads.load(config, artifacts, full)
    (tmp_path / "exit6" / "heads.npz").unlink()
    with pytest.raises(FileNotFoundError, match="railguard classifiers train-exit"):
        ExitHeads.load(config, artifacts, full)


def test_the_build_makes_the_parts_of_the_serving_precision_only(tmp_path: Path) -> None:
    from classifiers.build import artifact_paths

    shipped = artifact_paths(ClassifiersConfig(cache_dir=tmp_path))
    assert [p.name for p in shipped.exit_parts] == [
        "exit6-first.int8-smooth0.8.onnx",
        "exit6-rest.int8-smooth0.8.onnx",
    ]
    fp32 = artifact_paths(ClassifiersConfig(cache_dir=tmp_path, precision="fp32"))
    assert [p.name for p in fp32.exit_parts] == ["exit6-first.fp32.onnx", "exit6-rest.fp32.onnx"]
    assert artifact_paths(ClassifiersConfig(cache_dir=tmp_path, early_exit=False)).exit_parts == ()
    # heads of one's own without exit heads: nothing to build for an exit that will not serve
    assert artifact_paths(ClassifiersConfig(cache_dir=tmp_path, artifacts_dir=tmp_path)).exit_parts == ()
