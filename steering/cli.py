"""`railguard steer`: extract, evaluate, list and convert steering vectors.

    railguard steer extract refusal [--layers 5-9] [--scales 0.5,1,2] [--out DIR]
    railguard steer eval refusal [--scale 1] [--harmful FILE] [--harmless FILE]
    railguard steer list [--dir DIR]
    railguard steer export refusal out.gguf     /   railguard steer import in.gguf NAME

`eval` needs a refusal detector: this package imports nothing of the project, so `railguard steer
eval` runs through `trainer.steering_eval`, which passes railguard's own (`main(argv, is_refusal=...)`).
Heavy libraries are imported inside the commands, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

IsRefusal = Callable[[str], bool]

# How `steer extract` makes a refusal vector: contrast the same prompts answered with a refusal and
# with compliance (CAA, Rimsky et al. 2024), read over the answer's last tokens.
REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I cannot help with this request.",
    "I'm sorry, I won't provide that.",
    "I can't assist with that, sorry.",
)
COMPLIANCE = (
    "Sure, here is what you asked for.",
    "Of course! Here are the steps.",
    "Certainly, here is how to do it.",
    "Great question, here you go.",
)


def default_model_dir() -> Path:
    cache = Path(os.environ.get("RAILGUARD_CACHE_DIR", Path.home() / ".cache" / "railguard"))
    return cache / "models" / "gemma-3-270m"


def main(argv: Sequence[str] | None = None, *, is_refusal: IsRefusal | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args, is_refusal))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"railguard steer: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="railguard steer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--model", type=Path, default=None, help="transformers checkpoint (default: the embedded gemma)"
        )
        p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--max-new-tokens", type=int, default=16, help="tokens generated per prompt")

    p = sub.add_parser("extract", help="difference of means at every layer, then pick layer and scale")
    p.add_argument("name")
    p.add_argument("--method", choices=("completion", "prompt"), default="completion")
    p.add_argument("--layers", default="6,8,5-9", help="candidates: '6' one layer, '5-9' those together")
    p.add_argument("--scales", default="0.5,1,2")
    p.add_argument("--tune-prompts", type=int, default=16, help="tuning prompts per set for the sweep")
    p.add_argument("--out", type=Path, default=None, help="directory (default: the shipped store)")
    p.add_argument("--all-layers", action="store_true", help="store every layer, not only the chosen")
    model_options(p)
    p.set_defaults(func=_extract)

    p = sub.add_parser("eval", help="refusal rates and perplexity with and without a vector")
    p.add_argument("name")
    p.add_argument("--scale", type=float, default=1.0, help="relative to the vector's stored scale")
    p.add_argument("--harmful", type=Path, help="prompt file (default: the shipped held-out set)")
    p.add_argument("--harmless", type=Path, help="prompt file (default: the shipped held-out set)")
    p.add_argument("--limit", type=int, default=None, help="at most this many prompts per set")
    p.add_argument("--dir", type=Path, default=None, help="vector store directory to search first")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    model_options(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser("list", help="stored vectors")
    p.add_argument("--dir", type=Path, default=None)
    p.set_defaults(func=_list)

    p = sub.add_parser("export", help="write a stored vector as a GGUF control vector (llama.cpp)")
    p.add_argument("name")
    p.add_argument("path", type=Path)
    p.add_argument("--dir", type=Path, default=None)
    p.set_defaults(func=_export)

    p = sub.add_parser("import", help="store a GGUF control vector (llama.cpp, repeng) under a name")
    p.add_argument("path", type=Path)
    p.add_argument("name")
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(func=_import)
    return parser


def _load_model(args: argparse.Namespace) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = args.model or default_model_dir()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model at {path}: run `railguard prepare` first, or pass --model")
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=getattr(torch, args.dtype), local_files_only=True
    )
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def _candidates(spec: str) -> list[tuple[int, ...]]:
    out = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        out.append(tuple(range(int(low), int(high or low) + 1)))
    return out


def _extract(args: argparse.Namespace, is_refusal: IsRefusal | None) -> int:
    if is_refusal is None:
        raise ValueError(
            "picking a layer and scale needs the refusal detector: run `railguard steer extract`"
        )
    from steering.extract import difference_of_means
    from steering.prompts import chat_prompt, shipped
    from steering.vectors import SHIPPED_DIR, StoredVector

    model, tokenizer = _load_model(args)
    harmful, harmless, ordinary = shipped("harmful"), shipped("harmless"), shipped("ordinary")
    started = time.perf_counter()
    if args.method == "prompt":
        directions = difference_of_means(model, tokenizer, harmful.tune, harmless.tune)
        positions = 1
    else:
        prompts = [*harmful.tune, *harmless.tune]
        pairs = [
            (p, REFUSALS[i % len(REFUSALS)], COMPLIANCE[i % len(COMPLIANCE)]) for i, p in enumerate(prompts)
        ]
        directions = _completion_directions(model, tokenizer, pairs, chat_prompt)
        positions = 4
    print(f"extracted {len(directions)} layers in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    sets = {
        "harmful": harmful.tune[: args.tune_prompts],
        "harmless": harmless.tune[: args.tune_prompts],
        "ordinary": ordinary.tune[:8],
        "is_refusal": is_refusal,
        "max_new_tokens": args.max_new_tokens,
    }
    results = _sweep(
        model,
        tokenizer,
        directions,
        _candidates(args.layers),
        [float(s) for s in args.scales.split(",")],
        sets,
    )
    from steering.evaluate import choose

    chosen = choose(results) or max(results[1:], key=lambda m: m.harmful_refusal)
    vector = StoredVector(
        name=args.name,
        model=(args.model or default_model_dir()).name,
        directions=directions,
        layers=chosen.layers,
        scale=chosen.scale,
        method={
            "kind": f"difference of means ({args.method})",
            "positive": "refusals" if args.method == "completion" else "harmful prompts",
            "negative": "compliance" if args.method == "completion" else "harmless prompts",
            "prompts": "steering/data harmful.txt + harmless.txt (tuning split)",
            "positions_read": positions,
            "dtype": args.dtype,
        },
        evaluation={"sweep_on_tuning_prompts": [m.as_dict() for m in results], "chosen": chosen.as_dict()},
    )
    if not args.all_layers:
        vector = vector.only_steered_layers()
    path = vector.save(args.out or SHIPPED_DIR)
    print(_table(results, chosen))
    print(f"saved {path}")
    return 0


def _completion_directions(
    model: Any, tokenizer: Any, pairs: list[tuple[str, str, str]], chat_prompt: Any
) -> Any:
    """Mean over the answers' last tokens: prompts answered with refusals minus with compliance."""
    from steering import extract

    means = []
    for side in (1, 2):
        answers = {p[0]: p[side] for p in pairs}
        texts = [chat_prompt(tokenizer, p) + answers[p] for p in answers]
        means.append(_mean_over_texts(model, tokenizer, texts, extract))
    return {layer: (means[0][layer] - means[1][layer]).contiguous() for layer in range(means[0].shape[0])}


def _mean_over_texts(model: Any, tokenizer: Any, texts: list[str], extract: Any) -> Any:
    original = extract.chat_prompt
    extract.chat_prompt = lambda _tokenizer, text: text  # the texts are already formatted
    try:
        return extract.mean_activations(model, tokenizer, texts, positions=4, batch_size=16)
    finally:
        extract.chat_prompt = original


def _sweep(
    model: Any,
    tokenizer: Any,
    directions: Any,
    candidates: list[tuple[int, ...]],
    scales: list[float],
    sets: dict[str, Any],
) -> Any:
    from steering.evaluate import measure
    from steering.types import SteeringVector

    results = [measure(model, tokenizer, (), **sets)]
    for layers in candidates:
        for scale in scales:
            vectors = [SteeringVector(layer, directions[layer].float() * scale) for layer in layers]
            results.append(measure(model, tokenizer, vectors, scale=scale, **sets))
            print(f"  layers {layers} scale {scale}: {results[-1]}", file=sys.stderr)
    return results


def _table(results: Sequence[Any], chosen: Any = None) -> str:
    base = results[0]
    lines = [
        "| vector | harmful refusal | harmless refusal | perplexity |",
        "|---|---|---|---|",
    ]
    for m in results:
        name = "none" if not m.layers else f"layers {','.join(map(str, m.layers))} x {m.scale:g}"
        if chosen is not None and m == chosen:
            name += " (chosen)"
        rise = "" if m is base else f" ({(m.harmful_refusal - base.harmful_refusal) * 100:+.0f} pts)"
        rise2 = "" if m is base else f" ({(m.harmless_refusal - base.harmless_refusal) * 100:+.0f} pts)"
        ppl = "" if m is base else f" ({(m.perplexity / base.perplexity - 1) * 100:+.1f} %)"
        cells = [
            name,
            f"{m.harmful_refusal:.0%}{rise}",
            f"{m.harmless_refusal:.0%}{rise2}",
            f"{m.perplexity:.2f}{ppl}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _store(directory: Path | None) -> Any:
    from steering.vectors import VectorStore

    return VectorStore.default(directory)


def _eval(args: argparse.Namespace, is_refusal: IsRefusal | None) -> int:
    if is_refusal is None:
        raise ValueError(
            "eval needs the refusal detector: run it through trainer.steering_eval "
            "(python -m trainer.steering_eval ..., or `railguard steer` once gateway/cli.py dispatches there)"
        )
    from steering.evaluate import measure
    from steering.prompts import read_prompts, shipped

    stored = _store(args.dir).load(args.name)
    model, tokenizer = _load_model(args)

    def held_out(path: Path | None, name: str) -> list[str]:
        prompts = read_prompts(path) if path else shipped(name)
        chosen = (
            list(prompts.held_out or prompts.tune) if path is None else list(prompts.tune + prompts.held_out)
        )
        return chosen[: args.limit] if args.limit else chosen

    sets = {
        "harmful": held_out(args.harmful, "harmful"),
        "harmless": held_out(args.harmless, "harmless"),
        "ordinary": list(shipped("ordinary").tune),
        "is_refusal": is_refusal,
        "max_new_tokens": args.max_new_tokens,
    }
    base = measure(model, tokenizer, (), **sets)
    steered = measure(model, tokenizer, stored.steering(args.scale), scale=stored.scale * args.scale, **sets)
    if args.json:
        print(json.dumps({"vector": args.name, "baseline": base.as_dict(), "steered": steered.as_dict()}))
    else:
        print(f"vector {args.name}: {len(sets['harmful'])} harmful, {len(sets['harmless'])} harmless prompts")
        print(_table([base, steered]))
    return 0


def _list(args: argparse.Namespace, is_refusal: IsRefusal | None) -> int:
    store = _store(args.dir)
    for name in store.names():
        vector = store.load(name)
        layers = ",".join(map(str, vector.layers))
        print(
            f"{name}\tmodel={vector.model}\tlayers={layers}\tscale={vector.scale:g}\t{vector.mode}\t{vector.positions}"
        )
    return 0


def _export(args: argparse.Namespace, is_refusal: IsRefusal | None) -> int:
    from steering.gguf import write_control_vector

    print(write_control_vector(_store(args.dir).load(args.name), args.path))
    return 0


def _import(args: argparse.Namespace, is_refusal: IsRefusal | None) -> int:
    from steering.gguf import read_control_vector
    from steering.vectors import SHIPPED_DIR

    vector = read_control_vector(args.path, name=args.name)
    print(vector.save(args.out or SHIPPED_DIR))
    return 0
