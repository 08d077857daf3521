"""Load a saved transformers checkpoint (and its LoRA adapters) for the engine. Local files only."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.settings import LocalModelConfig

__all__ = ["LoadedModel", "load_model", "stop_token_ids"]

_END_OF_TURN = "<end_of_turn>"


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    stop_token_ids: frozenset[int]
    peft: bool  # the model is a PeftModel holding every configured adapter


def load_model(path: Path, config: LocalModelConfig) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.threads is not None:
        torch.set_num_threads(config.threads)  # process-wide in torch: set once, at load
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=getattr(torch, config.dtype), local_files_only=True
    )
    model.eval()  # type: ignore[no-untyped-call]
    if config.adapters:
        model = _with_adapters(model, config.adapters)
    return LoadedModel(model, tokenizer, stop_token_ids(tokenizer), peft=bool(config.adapters))


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
