"""`railguard data replay`: traffic for a measured run of the loop, from training data only.

Harmful requests of two training sets (AdvBench's behaviours, StrongREJECT's prompts; `SPLITS.md`:
train) and our own benign prompts that sound harmful (`classifiers/seed/*contrast*.tsv`, the kind a
guard over-refuses) go through a gateway as ordinary chat requests, so the guard decides on each as it
would on real traffic and the flagged ones reach the records, the review queue and the nightly job.
Evaluation-only sets are never replayed. Prints how many requests each action got.
"""

from __future__ import annotations

import asyncio
import csv
import random
from collections import Counter
from pathlib import Path

__all__ = ["replay", "replay_prompts"]

SEED_DIR = Path(__file__).resolve().parents[1] / "classifiers" / "seed"


def _harmful(data_dir: Path) -> list[str]:
    texts = []
    with (data_dir / "advbench" / "harmful_behaviors.csv").open(encoding="utf-8", newline="") as f:
        texts += [row["goal"] for row in csv.DictReader(f)]
    with (data_dir / "strongreject" / "strongreject_dataset.csv").open(encoding="utf-8", newline="") as f:
        texts += [row["forbidden_prompt"] for row in csv.DictReader(f)]
    return list(dict.fromkeys(t.strip() for t in texts if t.strip()))


def _benign_contrasts() -> list[str]:
    texts = []
    for path in sorted(SEED_DIR.glob("*contrast*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            kind, _, text = line.partition("\t")
            if kind == "benign" and text.strip():
                texts.append(text.strip())
    return list(dict.fromkeys(texts))


def replay_prompts(data_dir: Path, harmful: int, benign: int, seed: int = 0) -> list[tuple[str, str]]:
    """``[(kind, prompt)]``: ``harmful`` and ``benign`` prompts drawn by ``seed``, interleaved."""
    rng = random.Random(seed)
    bad, good = _harmful(data_dir), _benign_contrasts()
    rng.shuffle(bad)
    rng.shuffle(good)
    chosen = [("harmful", t) for t in bad[:harmful]] + [("benign", t) for t in good[:benign]]
    rng.shuffle(chosen)
    return chosen


async def replay(
    target: str, model: str, prompts: list[tuple[str, str]], *, concurrency: int = 4, api_key: str = "unused",
    max_tokens: int = 64,
) -> dict[str, dict[str, int]]:  # fmt: skip
    """Send each prompt once; ``{kind: {action: count}}`` from the gateway's `x-railguard-action`."""
    import openai

    counts: dict[str, Counter[str]] = {"harmful": Counter(), "benign": Counter()}
    gate = asyncio.Semaphore(concurrency)
    async with openai.AsyncOpenAI(base_url=target, api_key=api_key, max_retries=2, timeout=600) as client:

        async def one(kind: str, text: str) -> None:
            async with gate:
                try:
                    raw = await client.chat.completions.with_raw_response.create(
                        model=model, messages=[{"role": "user", "content": text}], temperature=0,
                        max_tokens=max_tokens,
                    )  # fmt: skip
                    counts[kind][raw.headers.get("x-railguard-action", "unknown")] += 1
                except openai.APIStatusError as exc:
                    counts[kind][f"http {exc.status_code}"] += 1

        await asyncio.gather(*(one(kind, text) for kind, text in prompts))
    return {kind: dict(c) for kind, c in counts.items()}
