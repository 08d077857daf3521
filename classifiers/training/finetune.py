"""``railguard classifiers train --finetune``: LoRA deltas on the encoder, trained with the heads.

A frozen sentence encoder puts "kill a Python process" next to "kill a person" (docs/classifiers.md:
XSTest flags 42 % of its safe prompts). Fine-tuning moves the embedding itself. To stay cheap on a
CPU and small to ship, only LoRA deltas (r=8 on every linear layer of the transformer, ~660k
parameters) and a temporary MLP head are trained, on each training text's first 256-token window, with the
masked multi-label loss of the heads. The deltas are written to ``lora.safetensors``; ``build``
merges them into the ONNX export, and the usual heads + calibration are then trained on the merged
encoder's embeddings (:func:`classifiers.training.train.train`), so what ships is what was calibrated.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifiers.built import artifact_paths
from classifiers.config import ClassifiersConfig
from classifiers.export import build
from classifiers.taxonomy import LEARNED
from classifiers.training.manifest import load_training, split, with_sources
from classifiers.training.seed import Example

__all__ = ["FinetuneOptions", "finetune"]


@dataclass(frozen=True, slots=True)
class FinetuneOptions:
    epochs: int = 2
    batch_size: int = 32
    max_tokens: int = 256  # the serving window: long prompts train as they are scored
    lr: float = 3e-4
    head_lr: float = 1e-3
    rank: int = 8
    alpha: float = 16.0
    val_fraction: float = 0.2
    seed: int = 0
    extra_sources: tuple[str, ...] = ()  # optional manifest sources (`--with-source`)


def _batches(lengths: list[int], size: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar length (little padding), in random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[j : j + size] for j in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def finetune(
    config: ClassifiersConfig,
    data_dir: Path | None,
    options: FinetuneOptions | None = None,
    *,
    log: Any = print,
) -> Path:
    """Train the LoRA deltas from the base encoder; returns the path of ``lora.safetensors``."""
    import torch

    from classifiers.export.encoder import load_torch
    from classifiers.training.fit import label_matrix, masked_loss, positive_weights
    from classifiers.training.lora import attach, save
    from classifiers.windows import TextWindows

    options = options or FinetuneOptions()
    started = time.perf_counter()
    torch.manual_seed(options.seed)
    rng = random.Random(options.seed)
    built = build(config)
    tokenizer = TextWindows(built.directory, options.max_tokens, config.max_windows)
    examples: list[Example] = load_training(data_dir, with_sources(options.extra_sources))
    train_set, _ = split(examples, options.val_fraction)  # the same split the heads use: validation unseen
    ids = tokenizer.first_windows([e.text for e in train_set])
    y, known = (torch.from_numpy(a) for a in label_matrix(train_set))
    log(f"fine-tuning on {len(train_set)} texts, {options.epochs} epochs")

    encoder = load_torch(config.encoder, config.encoder_source)
    modules = attach(encoder.model, options.rank, options.alpha)
    hidden = int(encoder.model.config.hidden_size)
    head = torch.nn.Sequential(
        torch.nn.Linear(hidden, 256),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(256, len(LEARNED)),
    )
    lora_params = [p for m in modules.values() for p in (m.lora_A, m.lora_B)]
    optimizer = torch.optim.AdamW(
        [{"params": lora_params, "lr": options.lr}, {"params": head.parameters(), "lr": options.head_lr}],
        weight_decay=0.01,
    )
    plan = [_batches([len(w) for w in ids], options.batch_size, rng) for _ in range(options.epochs)]
    total = sum(len(p) for p in plan)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=positive_weights(y, known), reduction="none")
    pad = tokenizer.pad_id
    encoder.train()
    step = 0
    for epoch, batches in enumerate(plan):
        running = 0.0
        for batch in batches:
            width = max(len(ids[i]) for i in batch)
            x = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                x[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            loss = masked_loss(loss_fn, head(encoder(x, mask)), y[batch], known[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            running += float(loss.detach())
            if step % 25 == 0:
                elapsed = time.perf_counter() - started
                log(f"  epoch {epoch + 1} step {step}/{total}: loss {running / 25:.4f} ({elapsed:.0f}s)")
                running = 0.0
    path = save(modules, artifact_paths(config).lora, options.rank, options.alpha)
    log(f"LoRA deltas -> {path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.0f}s)")
    return path
