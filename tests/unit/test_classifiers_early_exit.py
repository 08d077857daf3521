"""Early exits on a tiny random BERT: the encoder split at its exits composes to the whole (in torch, in
ONNX fp32 and after SmoothQuant in int8), each exit's embedding is its block's pooled output, texts an
exit's heads are sure of never run the blocks after it, and the settings and trained parts that cannot
work together are refused."""

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

from classifiers.built import BuiltArtifacts
from classifiers.cascade import Cascade, fuse
from classifiers.config import ClassifiersConfig, FusedEncoder
from classifiers.decision import logit
from classifiers.early_exit import EarlyExit, ExitEncoder, ExitHeads, ExitStage, files_digest, heads_digest
from classifiers.export.encoder import export_module, quantize
from classifiers.export.exit_parts import export_parts, split_module
from classifiers.export.smoothing import smooth
from classifiers.heads import Calibration, Heads
from classifiers.windows import max_by_owner
from tests.models import mean_pooled_bert

LAYERS = (1, 2)  # of the tiny encoder's 4 blocks: parts 1, 2 and 3-4
PARTS = ("a", "b", "c")
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


def pooled_at(module: Any, ids: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
    states = module.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    weights = mask.unsqueeze(-1).float()
    return torch.nn.functional.normalize((states[layer] * weights).sum(1) / weights.sum(1), dim=1)


def test_the_parts_compose_to_the_whole_and_each_exit_is_its_blocks_output() -> None:
    module = tiny_encoder()
    first, middle, last = split_module(module, LAYERS)
    ids, mask = padded(windows(6, seed=0))
    with torch.no_grad():
        at1, hidden = first(ids, mask)
        at2, hidden = middle(hidden, mask)
        torch.testing.assert_close(last(hidden, mask), module(ids, mask), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(at1, pooled_at(module, ids, mask, 1), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(at2, pooled_at(module, ids, mask, 2), atol=1e-6, rtol=1e-5)
        assert len(split_module(module, (3,))) == 2
    for layers in ((4,), (2, 1), (1, 1), ()):
        with pytest.raises(ValueError, match="must rise strictly inside the encoder's 4 blocks"):
            split_module(module, layers)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder whole and in parts, fp32 and (smoothed) int8, as the build writes them."""
    out = tmp_path_factory.mktemp("exit")
    module = tiny_encoder()
    export_module(module, out / "whole.fp32.onnx")
    export_parts(module, LAYERS, [out / f"{p}.fp32.onnx" for p in PARTS])
    smoothed = smooth(copy.deepcopy(module), windows(32, seed=3))
    export_module(smoothed, out / "whole.smoothed.onnx")
    export_parts(smoothed, LAYERS, [out / f"{p}.smoothed.onnx" for p in PARTS])
    for name in ("whole", *PARTS):
        quantize(out / f"{name}.smoothed.onnx", out / f"{name}.int8.onnx")
    with pytest.raises(ValueError, match="3 parts, 2 paths"):
        export_parts(module, LAYERS, [out / "x.onnx", out / "y.onnx"])
    return out


def whole(path: Path, batch: list[list[int]]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = []
    for w in batch:
        ids = np.array([w], dtype=np.int64)
        rows.append(session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0])
    return np.stack(rows)


def parts(exported: Path, precision: str, batch_size: int) -> ExitEncoder:
    paths = [exported / f"{p}.{precision}.onnx" for p in PARTS]
    return ExitEncoder(paths, threads=1, batch_size=batch_size, pad_id=0)


@pytest.mark.parametrize(("precision", "batch_size"), [("fp32", 1), ("fp32", 4), ("int8", 1)])
def test_onnx_parts_give_the_whole_encoders_embedding(
    exported: Path, precision: str, batch_size: int
) -> None:
    batch = windows(9, seed=1)
    encoder = parts(exported, precision, batch_size)
    assert encoder.exits == 2
    embedding, hidden = encoder.first(batch)
    assert embedding.shape == (9, 32) and [len(h) for h in hidden] == [len(w) for w in batch]
    at2, hidden2 = encoder.next(1, hidden)
    assert hidden2 is not None and [len(h) for h in hidden2] == [len(w) for w in batch]
    np.testing.assert_array_equal(encoder.embed(batch, 1), at2)
    # int8 quantizes every MatMul input as the whole does: the parts compose to the same numbers (one
    # window at a time, as serving runs int8: batched, dynamic int8 scales depend on the batch)
    everything = whole(exported / f"whole.{precision}.onnx", batch)
    last, none = encoder.next(2, hidden2)
    assert none is None
    np.testing.assert_allclose(last, everything, atol=1e-5)
    np.testing.assert_allclose(encoder.embed(batch, 2), everything, atol=1e-5)
    alone = np.stack([encoder.first([w])[0][0] for w in batch])
    np.testing.assert_allclose(embedding, alone, atol=1e-5 if precision == "fp32" and batch_size > 1 else 0)
    if precision == "fp32":
        with torch.no_grad():
            ids, mask = padded(batch)
            expected = pooled_at(tiny_encoder(), ids, mask, 2).numpy()
        np.testing.assert_allclose(at2, expected, atol=1e-5)


def random_heads(dim: int, seed: int, bias: float = 0.0) -> Heads:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((dim, len(NAMES))) * 4).astype(np.float32)
    return Heads(NAMES, (w,), (np.full(len(NAMES), bias, dtype=np.float32),))


def unsure_half(probs: np.ndarray) -> tuple[dict[str, float], float]:
    """Thresholds (each head's median) and a margin that leave about half the texts near one."""
    thresholds = dict(zip(NAMES, np.median(probs, axis=0).tolist(), strict=True))
    distance = np.abs(logit(probs) - logit(np.median(probs, axis=0))).min(axis=1)
    return thresholds, float(np.median(distance))


def test_only_unsure_texts_run_the_blocks_after_an_exit(exported: Path) -> None:
    batch = windows(16, seed=2)
    owners = [i // 2 for i in range(len(batch))]  # 8 texts of 2 windows each
    encoder = parts(exported, "fp32", 4)
    heads1, heads2, full = random_heads(32, seed=0), random_heads(32, seed=3), random_heads(32, seed=1)
    final = {"unsafe": 0.6, "jailbreak": 0.4}
    at1 = max_by_owner(heads1(encoder.embed(batch, 0)), owners, 8)
    at2 = max_by_owner(heads2(encoder.embed(batch, 1)), owners, 8)
    own2, margin2 = unsure_half(at2)
    cascade2 = Cascade.of(NAMES, own2, final, margin2)
    own1, margin1 = unsure_half(at1)
    cascade1 = Cascade.of(NAMES, own1, final, margin1, average=False)
    calibration = Calibration("tiny+exit2", "fp32", 256, final, {})
    stages = (
        ExitStage(1, heads1, calibration, cascade1, ()),
        ExitStage(2, heads2, calibration, cascade2, ()),
    )
    early = EarlyExit(encoder, ExitHeads(stages))
    probs, escalated = early.probabilities(batch, owners, 8, full)

    # the chain computed for every text: the full heads, the exit after block 2 in front, then block 1's
    everything = max_by_owner(full(whole(exported / "whole.fp32.onnx", batch)), owners, 8)
    after2, past2 = fuse(at2, everything.__getitem__, cascade2)
    expected, past1 = fuse(at1, after2.__getitem__, cascade1)
    assert 0 < past1.sum() < 8 and 0 < (past1 & past2).sum() < past1.sum()
    np.testing.assert_array_equal(escalated, past1)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # average=False: what block 1's exit escalates keeps what the later stages give, unaveraged
    np.testing.assert_allclose(probs[past1], after2[past1], atol=1e-5)

    calls: list[tuple[int, int]] = []
    real_next = encoder.next

    def counting(part: int, hidden: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray] | None]:
        calls.append((part, len(hidden)))
        return real_next(part, hidden)

    encoder.next = counting  # type: ignore[method-assign]
    early.probabilities(batch, owners, 8, full)
    # each unsure text's two windows, nothing else: past block 1, then past block 2 as well
    assert calls == [(1, 2 * int(past1.sum())), (2, 2 * int((past1 & past2).sum()))]
    assert (early.trained.exits, early.trained.margins) == ("+exit1+exit2", f"{margin1:g},{margin2:g}")


def test_settings_that_cannot_work_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="has no exit heads"):
        ClassifiersConfig(encoder="minilm-l6", early_exit=True)
    with pytest.raises(ValidationError, match="cannot both be set"):
        ClassifiersConfig(early_exit=True, fuse=FusedEncoder(encoder="gemma-probe"))
    assert ClassifiersConfig(fuse=FusedEncoder(encoder="gemma-probe")).exit_layers == ()
    assert ClassifiersConfig(early_exit=False).exit_layers == ()
    assert ClassifiersConfig(encoder="minilm-l6").exit_layers == ()
    shipped = ClassifiersConfig()
    assert shipped.exit_layers == (3, 6) and shipped.uses_early_exit
    bare = ClassifiersConfig(artifacts_dir=tmp_path)  # heads of one's own, no exit heads beside them
    assert bare.exit_layers == (3, 6) and not bare.uses_early_exit
    assert ClassifiersConfig(artifacts_dir=tmp_path, early_exit=True).uses_early_exit  # required


def trained_exits(tmp_path: Path) -> tuple[ClassifiersConfig, BuiltArtifacts, Heads]:
    """Exit heads after blocks 3 and 6 as train-exit writes them, for a build named e5-small-1-v2."""
    full = random_heads(32, seed=1)
    full.save(tmp_path / "heads.npz")
    built = tmp_path / "cache" / "e5-small-1-v2"  # what matters: the build's name
    artifacts = BuiltArtifacts(
        built,
        *(built / n for n in ("tokenizer.json", "encoder.json", "encoder.fp32.onnx", "encoder.int8.onnx")),
        smoothing_peaks=built / "smoothing-peaks.safetensors",
        heads=tmp_path / "heads.npz",
        calibration=tmp_path / "calibration.json",
        lora=tmp_path / "lora.safetensors",
        exit_layers=(3, 6),
    )
    config = ClassifiersConfig(artifacts_dir=tmp_path)
    info: dict[str, Any] = {"full_heads": heads_digest(tmp_path / "heads.npz")}
    for layer, margin in ((6, 1.5), (3, 4.0)):  # the deepest first, as train-exit writes them
        heads, own, mean = config.exit_files(layer)
        random_heads(32, seed=layer).save(heads)
        name = f"e5-small-1-v2+exit{layer}"
        Calibration(name, "int8", 256, {"unsafe": 0.4}, {}).save(own)
        Calibration(name, "int8", 256, {"unsafe": 0.5}, {"cascade": {"margin": margin}, **info}).save(mean)
        info = {"next": files_digest(config.exit_files(layer))}
    return config, artifacts, full


def test_exit_heads_load_only_with_what_they_were_calibrated_for(tmp_path: Path) -> None:
    config, artifacts, full = trained_exits(tmp_path)
    loaded = ExitHeads.load(config, artifacts, full)
    assert [(s.layer, s.cascade.margin, s.cascade.average) for s in loaded.stages] == [
        (3, 4.0, False),
        (6, 1.5, True),
    ]
    assert loaded.stages[0].heads.names == NAMES and len(loaded.files) == 6
    assert (loaded.exits, loaded.margins) == ("+exit3+exit6", "4,1.5")

    exit6 = tmp_path / "calibration+exit6.json"
    data = json.loads(exit6.read_text())
    data["thresholds"]["unsafe"] = 0.55  # the exit after block 6 recalibrated since block 3's was
    exit6.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"calibration\+exit3.json was calibrated in front of other exit"):
        ExitHeads.load(config, artifacts, full)
    config, artifacts, full = trained_exits(tmp_path)
    random_heads(32, seed=5).save(tmp_path / "heads.npz")  # the full heads retrained since
    with pytest.raises(ValueError, match=r"other full heads .* train-exit --keep-heads"):
        ExitHeads.load(config, artifacts, full)
    config, artifacts, full = trained_exits(tmp_path)
    own3 = tmp_path / "exit3" / "calibration.json"
    data = json.loads(own3.read_text())
    data["encoder"] = "e5-small-2-v2+exit3"  # another build of the encoder
    own3.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="calibrated for e5-small-2-v2\\+exit3, not e5-small-1-v2\\+exit3"):
        ExitHeads.load(config, artifacts, full)
    (tmp_path / "exit3" / "heads.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"block 3 .*`railguard classifiers train-exit`"):
        ExitHeads.load(config, artifacts, full)
    assert not config.uses_early_exit  # unless required: an exit's part missing, the full encoder serves


def test_the_build_makes_the_parts_of_the_serving_precision_only(tmp_path: Path) -> None:
    from classifiers.built import artifact_paths

    shipped = artifact_paths(ClassifiersConfig(cache_dir=tmp_path))
    assert [p.name for p in shipped.exit_parts] == [
        "blocks1-3.int8-smooth0.8-u8.onnx",
        "blocks4-6.int8-smooth0.8-u8.onnx",
        "blocks7-last.int8-smooth0.8-u8.onnx",
    ]
    fp32 = artifact_paths(ClassifiersConfig(cache_dir=tmp_path, precision="fp32"))
    assert [p.name for p in fp32.exit_parts] == [
        "blocks1-3.fp32.onnx",
        "blocks4-6.fp32.onnx",
        "blocks7-last.fp32.onnx",
    ]
    assert shipped.exit_parts_at("fp32") == fp32.exit_parts
    assert artifact_paths(ClassifiersConfig(cache_dir=tmp_path, early_exit=False)).exit_parts == ()
    # heads of one's own without exit heads: nothing to build for an exit that will not serve
    assert artifact_paths(ClassifiersConfig(cache_dir=tmp_path, artifacts_dir=tmp_path)).exit_parts == ()
