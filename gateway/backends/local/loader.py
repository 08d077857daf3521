"""Load a saved transformers checkpoint (and its LoRA adapters) for the engine. Local files only."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classifiers.torchlock import MODEL_BUILD_LOCK
from gateway.settings import LocalModelConfig

__all__ = ["LoadedModel", "adapter_version", "check_adapter", "load_model", "stop_token_ids"]

_END_OF_TURN = "<end_of_turn>"


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # the weights served as the configured `name` (its adapter merged in, if it has one)
    tokenizer: Any
    stop_token_ids: frozenset[int]
    peft: bool  # the model holding the extra LoRA adapters (`base`, or else `model`) is a PeftModel
    base: Any | None = None  # the untuned weights, when `model` has an adapter merged in
    base_id: str | None = None
    # Sampling defaults of the merged adapter (its generation.json), for requests that set none
    defaults: dict[str, float] = field(default_factory=dict)


def load_model(path: Path, config: LocalModelConfig) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.threads is not None:
        torch.set_num_threads(config.threads)  # process-wide in torch: set once, at load
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)

    def weights() -> Any:
        # from_pretrained sets torch's default dtype process-wide while it builds: the classifiers' build
        # in another thread must not run meanwhile (classifiers/torchlock.py)
        with MODEL_BUILD_LOCK:
            model = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=getattr(torch, config.dtype), local_files_only=True
            )
        model.eval()  # type: ignore[no-untyped-call]
        return model

    stops = stop_token_ids(tokenizer)
    merged = config.merged_adapter
    if merged is None:
        model = weights()
        if config.adapters:
            model = _with_adapters(model, config.adapters)
        return LoadedModel(model, tokenizer, stops, peft=bool(config.adapters))
    tuned = merge_adapter(weights(), merged)
    defaults = generation_defaults(merged)
    if config.served_base is None and not config.adapters:
        return LoadedModel(tuned, tokenizer, stops, peft=False, defaults=defaults)
    base = weights()
    _share_embeddings(base, tuned)  # LoRA leaves the 168M-parameter embedding as it was
    if config.adapters:
        base = _with_adapters(base, config.adapters)
    peft = bool(config.adapters)
    return LoadedModel(
        tuned, tokenizer, stops, peft, base=base, base_id=config.served_base, defaults=defaults
    )


def generation_defaults(adapter: Path) -> dict[str, float]:
    """`frequency_penalty` / `presence_penalty` from the adapter's generation.json, if it has one: like
    a model's generation_config.json, the defaults measured for it travel with it."""
    path = adapter / "generation.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {k: float(raw[k]) for k in ("frequency_penalty", "presence_penalty") if k in raw}
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a JSON object of sampling defaults: {exc}") from None


def merge_adapter(model: Any, adapter: Path) -> Any:
    """`model` with the LoRA adapter at `adapter` folded into its weights: as fast as the base.

    A missing or unreadable adapter is a clear error, raised before anything is served."""
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no LoRA adapter at {adapter} (adapter_config.json is missing)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        peft_model = PeftModel.from_pretrained(model, str(adapter), local_files_only=True)
    merged = peft_model.merge_and_unload()
    merged.eval()
    return merged


def _share_embeddings(target: Any, source: Any) -> None:
    embedding = source.get_input_embeddings()
    if target.get_input_embeddings().weight.shape != embedding.weight.shape:
        return
    target.set_input_embeddings(embedding)
    if getattr(target.config, "tie_word_embeddings", False):
        target.get_output_embeddings().weight = embedding.weight


def _with_adapters(model: Any, adapters: dict[str, Path]) -> Any:
    """One PeftModel holding every adapter under its served id; the engine picks one per batch."""
    from peft import PeftModel

    (first_id, first_path), *others = adapters.items()
    with warnings.catch_warnings():
        # peft 0.21 reads a property that transformers 5 deprecates; nothing for us to change.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        model = PeftModel.from_pretrained(
            model, str(first_path), adapter_name=first_id, local_files_only=True
        )
        for adapter_id, adapter_path in others:
            model.load_adapter(str(adapter_path), adapter_name=adapter_id, local_files_only=True)
    model.eval()
    return model


def stop_token_ids(tokenizer: Any) -> frozenset[int]:
    """EOS and Gemma's `<end_of_turn>`, when the vocabulary has them."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    end_of_turn = tokenizer.convert_tokens_to_ids(_END_OF_TURN)
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.add(end_of_turn)
    return frozenset(ids)


def adapter_version(path: Path) -> str:
    """``<directory name>@<first 12 hex of the sha256 of its weights>``: names exactly which trained
    adapter answered (two trainings into one directory differ); ``@missing`` when there are no weights."""
    weights = path / "adapter_model.safetensors"
    try:
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    except OSError:
        digest = "missing"
    name = path.name.removesuffix(f"@{digest}")  # a registry copy is already named by its digest
    return f"{name}@{digest}"


def check_adapter(path: Path) -> None:
    """A LoRA adapter directory whose files are whole: its config parses and every tensor of its
    weights reads and is finite. A corrupt or missing adapter is refused before it is merged."""
    import math

    from safetensors import safe_open

    config = path / "adapter_config.json"
    weights = path / "adapter_model.safetensors"
    if not config.is_file() or not weights.is_file():
        raise FileNotFoundError(
            f"{path} is not a LoRA adapter (adapter_config.json and adapter_model.safetensors)"
        )
    try:
        json.loads(config.read_text(encoding="utf-8"))
        with safe_open(str(weights), framework="pt") as f:
            names = list(f.keys())
            for name in names:
                total = float(f.get_tensor(name).float().abs().sum())
                if not math.isfinite(total):
                    raise ValueError(f"tensor {name} is not finite")
    except Exception as exc:  # safetensors raises its own error type for a damaged header
        raise ValueError(f"{path} holds a corrupt adapter: {exc}") from None
    if not names:
        raise ValueError(f"{path} holds a corrupt adapter: no tensors")
