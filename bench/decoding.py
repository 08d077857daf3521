"""Decoding speed of the local model: unconstrained vs constrained (JSON schema, regex) vs steered,
the tuned default (adapter merged) vs the untuned base vs the same adapter unmerged (PEFT layers),
and the compile time of a constraint, cold and cached.

    .venv/bin/python bench/decoding.py [--tokens 64] [--runs 3] [--threads 2]

Runs the embedded gemma-3-270m in-process through `LocalBackend` (batch 1, greedy), interleaving
the variants so that noise from other work on the machine hits them alike; prints medians with
min-max, and the share of CPU this process got (a busy machine shows well under 100 %).
Decode speed is measured from the first streamed token to the last, so prefill is not counted.
Steering is measured twice: the shipped conditional vector on a harmless prompt (gate shut) and
the same vector forced on at every step.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},  # unbounded: max_tokens closes them (see docs/steering.md)
        "summary": {"type": "string"},
    },
    "required": ["title", "summary"],
    "additionalProperties": False,
}
NO_STOP = {"1": -100, "106": -100}  # unconstrained and steered rows run to max_tokens


def variants(tokens: int) -> dict[str, dict[str, Any]]:
    from gateway.backends.base import SteeringSpec

    rf = {"type": "json_schema", "json_schema": {"name": "doc", "schema": SCHEMA, "strict": True}}
    return {
        "unconstrained": {"logit_bias": NO_STOP},
        # The tuned default merges its adapter into the weights; the base and an unmerged copy of the
        # same adapter (PEFT's LoRA layers at every step) run beside it on the same backend.
        "untuned base (gemma-3-270m-base)": {"logit_bias": NO_STOP, "_model": "gemma-3-270m-base"},
        "tuned adapter unmerged (PEFT layers)": {"logit_bias": NO_STOP, "_model": "assistant-unmerged"},
        "json_schema": {"response_format": rf},
        "regex": {"railguard": {"regex": f"[A-Za-z ,.]{{16,{tokens * 8}}}"}},
        # The shipped vector is conditional: on this harmless prompt its gate stays shut (the cost
        # is the unsteered pass that reads the condition, before the first token). "forced" is the
        # same vector without its condition, added at every step.
        "steered (refusal, gate shut)": {"logit_bias": NO_STOP, "_steering": (SteeringSpec("refusal", 1.0),)},
        "steered (refusal, forced on)": {
            "logit_bias": NO_STOP,
            "_steering": (SteeringSpec("refusal-forced", 1.0),),
        },
    }


def forced_vector(directory: Path) -> Path:
    """The shipped `refusal` vector without its condition, stored as `refusal-forced`."""
    from dataclasses import replace

    from steering.vectors import SHIPPED_DIR, VectorStore

    vector = VectorStore([SHIPPED_DIR]).load("refusal")
    replace(vector.unconditional(), name="refusal-forced").save(directory)
    return directory


async def decode_rate(backend: Any, fields: dict[str, Any], tokens: int) -> float:
    from gateway.backends.local.testing import make_generation

    fields = dict(fields)
    steering = fields.pop("_steering", ())
    model = fields.pop("_model", "gemma-3-270m")
    gen = make_generation(
        "Write a short article about rivers and the towns along them.",
        model=model,
        steering=steering,
        temperature=0,
        max_tokens=tokens,
        stream=True,
        stream_options={"include_usage": True},
        **fields,
    )
    first = last = 0.0
    produced = 0
    async for chunk in await backend.open_stream(gen):
        now = time.perf_counter()
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            first = first or now
            last = now
        if chunk.get("usage"):
            produced = chunk["usage"]["completion_tokens"]
    return (produced - 1) / (last - first) if last > first else float("nan")


def compile_times(backend: Any, runs: int) -> tuple[list[float], list[float]]:
    from steering.constrain import ConstraintCompiler, ConstraintSpec

    cold, cached = [], []
    for run in range(runs):
        compiler = ConstraintCompiler(backend.compiler.vocab)
        compiler.warm()  # the vocabulary is built once per model at load; not part of a compile
        schema = {**SCHEMA, "title": f"run {run}"}
        spec = ConstraintSpec.json_schema(schema)
        started = time.perf_counter()
        compiler.compile(spec)
        cold.append(time.perf_counter() - started)
        started = time.perf_counter()
        compiler.compile(ConstraintSpec.json_schema(schema))
        cached.append(time.perf_counter() - started)
    return cold, cached


def summary(values: list[float], unit: str = "", digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


async def main(args: argparse.Namespace) -> None:
    from gateway.backends.local import LocalBackend
    from gateway.settings import SHIPPED_ADAPTER, LocalModelConfig

    cache = Path(os.environ.get("RAILGUARD_CACHE_DIR", Path.home() / ".cache" / "railguard"))
    vectors = forced_vector(Path(tempfile.mkdtemp(prefix="railguard-bench-")))
    config = LocalModelConfig(
        threads=args.threads,
        batch_wait_ms=0,
        vectors_dir=vectors,
        adapters={"assistant-unmerged": SHIPPED_ADAPTER},
    )
    backend = LocalBackend(config, cache)
    await backend.start()
    while backend.compiler is None or backend.engine is None:
        await asyncio.sleep(0.1)
    chosen = variants(args.tokens)
    await decode_rate(backend, chosen["json_schema"], 32)  # warm-up: first compile, first batch
    rates: dict[str, list[float]] = {name: [] for name in chosen}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(args.runs):
        for name, fields in chosen.items():
            rates[name].append(await decode_rate(backend, fields, args.tokens))
    share = (time.process_time() - cpu0) / (time.perf_counter() - wall0) / args.threads
    cold, cached = compile_times(backend, args.runs)
    await backend.aclose()
    base = statistics.median(rates["unconstrained"])
    print(
        f"gemma-3-270m (tuned, merged) bf16, batch 1, greedy, {args.tokens} tokens, {args.runs} runs, "
        f"{args.threads} threads"
    )
    print(f"CPU share this process got while decoding: {share:.0%}\n")
    print("| decoding | tokens/s, median (min-max) | vs unconstrained |")
    print("|---|---|---|")
    for name, values in rates.items():
        change = (statistics.median(values) / base - 1) * 100
        print(f"| {name} | {summary(values)} | {change:+.1f} % |")
    print("\n| constraint compile (JSON schema, 262k vocabulary) | ms, median (min-max) |")
    print("|---|---|")
    print(f"| cold | {summary([c * 1000 for c in cold], digits=1)} |")
    print(f"| cached | {summary([c * 1000 for c in cached], digits=3)} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
