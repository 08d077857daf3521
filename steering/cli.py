"""`railguard steer`: extract, evaluate, list and convert steering vectors.

    railguard steer extract refusal [--layers 5-9] [--scales 0.5,1,2] [--out DIR]
    railguard steer eval refusal [--scale 1] [--harmful FILE] [--harmless FILE]
    railguard steer list [--dir DIR]
    railguard steer export refusal out.gguf     /   railguard steer import in.gguf NAME

`eval` needs a refusal detector: this package imports nothing of the project, so `railguard steer
eval` runs through the composition root (`railguard/cli.py`), which passes railguard's own
(`main(argv, is_refusal=...)`).
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

    p = sub.add_parser("extract", help="make a vector per candidate layer, then pick layer and scale")
    p.add_argument("name")
    p.add_argument(
        "--method",
        choices=("learned", "completion", "prompt"),
        default="learned",
        help="learned: optimise the vector for refusals; completion/prompt: difference of means",
    )
    p.add_argument("--layers", default="6", help="candidates: '6' one layer, '5-9' those together")
    p.add_argument("--scales", default="0.5,0.75,1")
    p.add_argument("--steps", type=int, default=60, help="optimisation steps (learned)")
    p.add_argument("--lr", type=float, default=0.15, help="Adam learning rate (learned)")
    p.add_argument(
        "--condition",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="steer only prompts that read as harmful (CAST); --no-condition steers every prompt",
    )
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
    p.add_argument("--harmful-where", type=_where, help="COLUMN=VALUE: keep only those rows of --harmful")
    p.add_argument("--harmless-where", type=_where, help="COLUMN=VALUE: keep only those rows of --harmless")
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
    p.add_argument(
        "--drop-condition", action="store_true", help="export a conditional vector unconditionally"
    )
    p.add_argument("--dir", type=Path, default=None)
    p.set_defaults(func=_export)

    p = sub.add_parser("import", help="store a GGUF control vector (llama.cpp, repeng) under a name")
    p.add_argument("path", type=Path)
    p.add_argument("name")
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(func=_import)
    return parser


def _load_model(args: argparse.Namespace, dtype: str | None = None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = args.model or default_model_dir()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model at {path}: run `railguard prepare` first, or pass --model")
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=getattr(torch, dtype or args.dtype), local_files_only=True
    )
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def _where(spec: str) -> tuple[str, str]:
    column, sep, value = spec.partition("=")
    if not sep or not column:
        raise argparse.ArgumentTypeError(f"{spec!r} is not COLUMN=VALUE")
    return column, value


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
    from steering.prompts import shipped
    from steering.vectors import SHIPPED_DIR, StoredVector

    harmful, harmless, ordinary = shipped("harmful"), shipped("harmless"), shipped("ordinary")
    candidates = _candidates(args.layers)
    started = time.perf_counter()
    if args.method == "learned":
        import torch

        model, tokenizer = _load_model(args, dtype="float32")  # gradients in fp32, then serve in bf16
        directions = _learned_directions(model, tokenizer, sorted({i for c in candidates for i in c}), args)
        model = model.to(getattr(torch, args.dtype))
    else:
        model, tokenizer = _load_model(args)
        directions = _mean_directions(model, tokenizer, args.method, harmful.tune, harmless.tune)
    print(f"made {len(directions)} layers in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    condition = None
    if args.condition:
        from steering.condition import fit_condition

        fit = fit_condition(model, tokenizer, harmful.tune, harmless.tune)
        condition = fit.condition
        print(f"condition: {fit.summary()}", file=sys.stderr)
    sets = {
        "harmful": harmful.tune[: args.tune_prompts],
        "harmless": harmless.tune[: args.tune_prompts],
        "ordinary": ordinary.tune,
        "is_refusal": is_refusal,
        "max_new_tokens": args.max_new_tokens,
    }
    scales = [float(s) for s in args.scales.split(",")]
    from steering.evaluate import choose, sweep

    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    results = sweep(model, tokenizer, directions, candidates, scales, condition=condition, log=log, **sets)

    chosen = choose(results) or max(results[1:], key=lambda m: m.harmful_refusal)
    vector = StoredVector(
        name=args.name,
        model=(args.model or default_model_dir()).name,
        directions=directions,
        layers=chosen.layers,
        scale=chosen.scale,
        positions="all",
        method=_method(args),
        evaluation={
            "sweep_on_tuning_prompts": [m.as_dict() for m in results],
            "chosen": chosen.as_dict(),
            **({"condition": fit.summary()} if condition is not None else {}),
        },
        condition=condition,
    )
    if not args.all_layers:
        vector = vector.only_steered_layers()
    path = vector.save(args.out or SHIPPED_DIR)
    print(_table(results, chosen))
    print(f"saved {path}")
    return 0


def _method(args: argparse.Namespace) -> dict[str, Any]:
    prompts = "steering/data harmful.txt + harmless.txt (tuning split)"
    kinds = {
        "learned": {
            "kind": "learned (gradient descent on the vector alone, model frozen)",
            "objective": "likelihood of refusals on the harmful prompts",
            "targets": list(REFUSALS),
            "steps": args.steps,
            "lr": args.lr,
        },
        "completion": {
            "kind": "difference of means (completion)",
            "positive": "refusals",
            "negative": "compliance",
            "positions_read": 4,
        },
        "prompt": {
            "kind": "difference of means (prompt)",
            "positive": "harmful prompts",
            "negative": "harmless prompts",
            "positions_read": 1,
        },
    }
    condition = {"condition": "difference of means, harmful minus harmless prompts, last prompt token"}
    return {
        **kinds[args.method],
        "prompts": prompts,
        "dtype": args.dtype,
        **(condition if args.condition else {}),
    }


def _learned_directions(model: Any, tokenizer: Any, layers: list[int], args: argparse.Namespace) -> Any:
    from steering.optimize import Example, OptimizeConfig, optimize_vector
    from steering.prompts import chat_prompt, shipped

    harmful = shipped("harmful").tune
    positive = [
        Example(chat_prompt(tokenizer, p), REFUSALS[i % len(REFUSALS)]) for i, p in enumerate(harmful)
    ]
    config = OptimizeConfig(steps=args.steps, lr=args.lr)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    return {
        layer: optimize_vector(model, tokenizer, layer, positive, config=config, log=log) for layer in layers
    }


def _mean_directions(model: Any, tokenizer: Any, method: str, harmful: Any, harmless: Any) -> Any:
    from steering.extract import difference_of_means
    from steering.prompts import chat_prompt

    if method == "prompt":
        return difference_of_means(model, tokenizer, harmful, harmless)
    prompts = [*harmful, *harmless]
    pairs = [(p, REFUSALS[i % len(REFUSALS)], COMPLIANCE[i % len(COMPLIANCE)]) for i, p in enumerate(prompts)]
    return _completion_directions(model, tokenizer, pairs, chat_prompt)


def _completion_directions(
    model: Any, tokenizer: Any, pairs: list[tuple[str, str, str]], chat_prompt: Any
) -> Any:
    """Mean over the answers' last tokens: prompts answered with refusals minus with compliance."""
    from steering.extract import mean_activations

    means = []
    for side in (1, 2):
        answers = {p[0]: p[side] for p in pairs}
        texts = [chat_prompt(tokenizer, p) + answers[p] for p in answers]
        means.append(mean_activations(model, tokenizer, texts, positions=4, batch_size=16, formatted=True))
    return {layer: (means[0][layer] - means[1][layer]).contiguous() for layer in range(means[0].shape[0])}


def _table(results: Sequence[Any], chosen: Any = None, labels: Sequence[str] = ()) -> str:
    base = results[0]
    lines = [
        "| vector | harmful refusal | harmless refusal | perplexity |",
        "|---|---|---|---|",
    ]
    for i, m in enumerate(results):
        name = "none" if not m.layers else f"layers {','.join(map(str, m.layers))} x {m.scale:g}"
        if i < len(labels) and m.layers:
            name = f"{labels[i]}: {name}"
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
            "eval needs the refusal detector: run it as `railguard steer ...` (railguard/cli.py passes it)"
        )
    from steering.evaluate import measure
    from steering.prompts import read_prompts, shipped

    stored = _store(args.dir).load(args.name)
    model, tokenizer = _load_model(args)

    def held_out(path: Path | None, name: str) -> list[str]:
        prompts = read_prompts(path, getattr(args, f"{name}_where")) if path else shipped(name)
        chosen = (
            list(prompts.held_out or prompts.tune) if path is None else list(prompts.tune + prompts.held_out)
        )
        return chosen[: args.limit] if args.limit else chosen

    sets = {
        "harmful": held_out(args.harmful, "harmful"),
        "harmless": held_out(args.harmless, "harmless"),
        "ordinary": list(shipped("ordinary").held_out),
        "is_refusal": is_refusal,
        "max_new_tokens": args.max_new_tokens,
    }
    base = measure(model, tokenizer, (), **sets)
    rows = [
        base,
        measure(model, tokenizer, stored.steering(args.scale), scale=stored.scale * args.scale, **sets),
    ]
    if stored.condition is not None:  # what the condition saves: the same vector on every prompt
        forced = stored.unconditional().steering(args.scale)
        rows.append(measure(model, tokenizer, forced, scale=stored.scale * args.scale, **sets))
    labels = [
        "none",
        f"{args.name}" + (" (conditional)" if stored.condition is not None else ""),
        f"{args.name} on every prompt",
    ]
    if args.json:
        report = {"vector": args.name, "baseline": base.as_dict(), "steered": rows[1].as_dict()}
        if len(rows) > 2:
            report["unconditional"] = rows[2].as_dict()
        print(json.dumps(report))
    else:
        print(f"vector {args.name}: {len(sets['harmful'])} harmful, {len(sets['harmless'])} harmless prompts")
        print(_table(rows, labels=labels))
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

    vector = _store(args.dir).load(args.name)
    print(write_control_vector(vector, args.path, drop_condition=args.drop_condition))
    return 0


def _import(args: argparse.Namespace, is_refusal: IsRefusal | None) -> int:
    from steering.gguf import read_control_vector
    from steering.vectors import SHIPPED_DIR

    vector = read_control_vector(args.path, name=args.name)
    print(vector.save(args.out or SHIPPED_DIR))
    return 0
