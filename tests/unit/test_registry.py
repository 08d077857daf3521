"""The adapter registry: versions by content, lineage, promotion (checked), rollback, events, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from trainer.registry import Registry, RegistryError
from trainer.registry_cli import main


def adapter(directory: Path, seed: int) -> Path:
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    generator = torch.Generator().manual_seed(seed)
    save_file(
        {"lora_A.weight": torch.randn(4, 8, generator=generator)},
        str(directory / "adapter_model.safetensors"),
    )
    return directory


def test_register_promote_rollback_and_the_serving_pointer(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    first = registry.register(adapter(tmp_path / "a1", 1), name="assistant", dataset="sha256:aa", steps=10)
    again = registry.register(tmp_path / "a1", name="assistant")
    assert again.version == first.version and first.version.startswith("assistant@")
    second = registry.register(adapter(tmp_path / "a2", 2), name="assistant", parent=first.version, steps=20)
    assert registry.diff(first.version, second.version) == {
        "dataset": {"a": "sha256:aa", "b": None},
        "steps": {"a": 10, "b": 20},
    }
    assert registry.serving("m") is None
    registry.promote(first.version, model="m", actor="ann", reason="baseline")
    registry.promote(second.version, model="m", actor="ann", reason="gate passed")
    pointer = json.loads((tmp_path / "registry/serving/m.json").read_text())
    assert pointer["version"] == second.version and Path(pointer["adapter"]).is_dir()
    back = registry.rollback(model="m", actor="bob", reason="over-refusal up")
    assert back.version == first.version and registry.serving("m") == first.version
    assert registry.get(second.version).status == "rolled back"
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback(model="m", actor="bob", reason="again")
    events = [(e["event"], e["actor"]) for e in registry.events()]
    assert events == [("promoted", "ann"), ("promoted", "ann"), ("rolled back to", "bob")]


def test_a_corrupt_adapter_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    good = registry.register(adapter(tmp_path / "a1", 1), name="assistant")
    registry.promote(good.version, model="m", actor="ann", reason="ok")
    broken = adapter(tmp_path / "a2", 2)
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(RegistryError, match="corrupt"):
        registry.register(broken, name="assistant")
    second = registry.register(adapter(tmp_path / "a3", 3), name="assistant")
    (second.path / "adapter_model.safetensors").write_bytes(b"garbage")  # damaged after registering
    with pytest.raises(RegistryError, match="cannot be promoted"):
        registry.promote(second.version, model="m", actor="ann", reason="try")
    assert registry.serving("m") == good.version
    with pytest.raises(RegistryError, match="no version"):
        registry.promote("assistant@nope", model="m", actor="ann", reason="x")


def test_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = ["--registry", str(tmp_path / "registry")]
    assert main([*root, "register", str(adapter(tmp_path / "a1", 1)), "--name", "assistant"]) == 0
    version = capsys.readouterr().out.strip()
    assert main([*root, "promote", version, "--reason", "first", "--model", "m"]) == 0
    assert main([*root, "list"]) == 0
    assert f"serving m: {version}" in capsys.readouterr().out
    assert main([*root, "rollback", "--reason", "x", "--model", "m"]) == 2
    assert "no earlier version" in capsys.readouterr().err
    assert main([*root, "register", str(tmp_path / "missing"), "--name", "a"]) == 2
    assert "not a LoRA adapter" in capsys.readouterr().err
