"""`railguard train dpo`: the adapter in service improved on reviewed preference pairs with TRL's DPOTrainer.

The pairs (`prompt` / `chosen` / `rejected`, conversational, from `railguard data build`) are checked
before any model loads. The policy is the served adapter loaded trainable; the reference is a frozen
copy of the same weights, so the KL that β controls is measured against what users get today. The safety
system prompt is not in the pairs (the data builder leaves it out): it stays an inference-time input.
Checkpoints go to `run_dir`, a rerun resumes; the adapter and a summary go to `output_dir`.
"""

from __future__ import annotations

import json
import os
import resource
import time
import warnings
from pathlib import Path
from typing import Any

from trainer.config import DPOConfig
from trainer.datasets import DataError

__all__ = ["read_pairs", "train"]


def read_pairs(path: Path) -> list[dict[str, Any]]:
    """The preference pairs, each checked: a clear error with the line at fault."""
    if not path.is_file():
        raise DataError(f"{path} does not exist (railguard data build writes dpo.jsonl)")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
            for messages in (prompt, chosen, rejected):
                if not messages or not all(
                    isinstance(m.get("content"), str) and m.get("role") for m in messages
                ):
                    raise ValueError("each side is a list of {role, content} messages")
            if (
                prompt[-1]["role"] != "user"
                or chosen[0]["role"] != "assistant"
                or rejected[0]["role"] != "assistant"
            ):
                raise ValueError("the prompt ends with the user; chosen and rejected are the assistant's")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{path}:{number}: not a preference pair ({exc})") from None
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    if not pairs:
        raise DataError(f"{path} holds no preference pairs")
    return pairs


def train(config: DPOConfig) -> dict[str, Any]:
    with warnings.catch_warnings():  # TRL passes arguments transformers has deprecated
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return _train(config)


def _train(config: DPOConfig) -> dict[str, Any]:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    pairs = read_pairs(config.resolved(config.data))
    adapter = config.resolved(config.init_adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"init_adapter {adapter} holds no adapter")
    model_dir = _model_dir(config)

    import torch
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_utils import get_last_checkpoint
    from trl.trainer.dpo_config import DPOConfig as TRLConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    from trainer.chat import served_template

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    tokenizer.chat_template = served_template(tokenizer)

    def load() -> Any:
        return AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=torch.float32, local_files_only=True
        )

    policy = PeftModel.from_pretrained(load(), str(adapter), is_trainable=True)
    reference = PeftModel.from_pretrained(load(), str(adapter)).merge_and_unload().eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    run_dir = config.resolved_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = get_last_checkpoint(str(run_dir)) if config.resume else None  # type: ignore[no-untyped-call]
    args = TRLConfig(
        output_dir=str(run_dir),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        beta=config.beta,
        loss_type=[config.loss_type],
        max_length=config.max_length,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        dataloader_num_workers=0,
    )
    trainer: Any = DPOTrainer(
        model=policy,
        ref_model=reference,
        args=args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    output = config.resolved(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(output))
    history = [h for h in trainer.state.log_history if "loss" in h]
    summary = {
        "output_dir": str(output),
        "init_adapter": str(adapter),
        "pairs": len(pairs),
        "steps": int(trainer.state.global_step),
        "first_loss": float(history[0]["loss"]) if history else None,
        "last_loss": float(history[-1]["loss"]) if history else None,
        "reward_accuracy": float(history[-1].get("rewards/accuracies", 0.0)) if history else None,
        "beta": config.beta,
        "loss_type": config.loss_type,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "resumed_from": checkpoint,
    }
    (output / "run-summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (output / "training-log.json").write_text(
        json.dumps(trainer.state.log_history, indent=2), encoding="utf-8"
    )
    return summary


def _model_dir(config: DPOConfig) -> Path:
    if config.base_model is not None:
        if not config.base_model.is_dir():
            raise FileNotFoundError(f"base_model {config.base_model} is not a directory")
        return config.base_model
    from gateway.backends.local.convert import ensure_model
    from gateway.settings import LocalModelConfig

    return ensure_model(LocalModelConfig(), config.resolved(config.cache_dir))
