"""`railguard eval suites|run|report|compare|refusal-agreement`: the safety evaluation harness.

    railguard eval suites                                      # what can be run
    railguard eval run xstest redteam --target http://127.0.0.1:8080/v1 --model gemma-3-270m \\
        --out runs/today [--limit 50] [--temperature 0 --temperature 0.7] [--label "gateway on"]
    railguard eval report runs/today [--previous runs/yesterday]  # report.html, report.md, summary.json
    railguard eval compare runs/yesterday runs/today [--margin 0.02]   # exit 1 on a regression
    railguard eval refusal-agreement [--gcg]                    # the refusal judge: XSTest, our dev set
    railguard eval headline [--limit 40]                        # gateway on vs off: docs/evaluation.md
    railguard eval garak [--cap 20] [--targets ...]             # garak's probes, on vs off: the same doc

A run is resumable: the same command on the same --out skips every answer already there.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]


def add_commands(sub: Any) -> None:
    sub.add_parser("suites", help="list the evaluation suites")
    r = sub.add_parser("run", help="run suites against an OpenAI-compatible endpoint (resumable)")
    r.add_argument("suites", nargs="+")
    r.add_argument("--target", required=True, help="base URL, e.g. http://127.0.0.1:8080/v1")
    r.add_argument("--model", required=True)
    r.add_argument("--api-key", default="unused")
    r.add_argument("--out", type=Path, required=True, help="the run directory")
    r.add_argument("--label", default="", help='what the target is, e.g. "gateway on"')
    r.add_argument("--temperature", type=float, action="append", help="repeat for a matrix (default 0)")
    r.add_argument("--max-tokens", type=int, default=256)
    r.add_argument("--limit", type=int, help="at most N items per suite, spread over it")
    r.add_argument("--concurrency", type=int, default=4)
    r.add_argument("--harm-judge", action="store_true", help="also judge answers with the harm classifiers")
    r.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p = sub.add_parser("report", help="summarise a run: report.html, report.md, summary.json in it")
    p.add_argument("run", type=Path)
    p.add_argument("--previous", type=Path, help="an earlier run to show beside it")
    c = sub.add_parser("compare", help="regressions of B against A with 95 %% intervals; exit 1 if any")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--margin", type=float, default=0.0, help="ignore worsening below this (rate points)")
    h = sub.add_parser("headline", help="gateway on vs off, embedded and stub upstream: docs/evaluation.md")
    from evaluation.headline import add_arguments

    add_arguments(h)
    g = sub.add_parser(
        "garak", help="garak's probes against railguard, gateway on vs off: docs/evaluation.md"
    )
    g.add_argument(
        "--targets",
        default=";".join(
            f"{kind}, gateway {state}" for kind in ("embedded", "stub upstream") for state in ("on", "off")
        ),
        help="';'-separated target labels (embedded or stub upstream, gateway on or off)",
    )
    g.add_argument(
        "--probes", default=None, help="comma-separated garak probes (default: evaluation.garak.PROBES)"
    )
    g.add_argument("--cap", type=int, default=20, help="at most N prompts per probe")
    g.add_argument("--max-tokens", type=int, default=150)
    g.add_argument("--out-dir", type=Path, default=Path.home() / ".cache" / "railguard" / "eval" / "garak")
    g.add_argument("--docs", type=Path, default=ROOT / "docs" / "evaluation.md", help="'' to write no doc")
    a = sub.add_parser(
        "refusal-agreement", help="the refusal judge against XSTest's human labels and on our dev set"
    )
    a.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    a.add_argument(
        "--gcg", action="store_true", help="add GCG's refusal prefixes (the judge before issue 25)"
    )


def dispatch(args: argparse.Namespace) -> int:
    from evaluation.runner import TargetError
    from evaluation.suites import SuiteError

    try:
        return int(_COMMANDS[args.suite](args))
    except (SuiteError, TargetError, FileNotFoundError) as exc:
        print(f"railguard eval: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("railguard eval: interrupted; the same command resumes where it stopped", file=sys.stderr)
        return 130


def _suites(args: argparse.Namespace) -> int:
    from evaluation.suites import SUITES

    for suite in SUITES.values():
        print(f"{suite.name:18} {suite.description}{'' if suite.needs_data else ' (in the repository)'}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from evaluation.runner import Target, harm_judge, run
    from evaluation.suites import load

    data = args.data_dir if args.data_dir.is_dir() else None
    items = load(args.suites, data, args.limit)
    target = Target(
        args.target, args.model, args.api_key, args.label, args.max_tokens, tuple(args.temperature or [0.0])
    )

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            print(f"\r{done}/{total} answers", end="" if done < total else "\n", file=sys.stderr, flush=True)

    harm = harm_judge() if args.harm_judge else None
    results = asyncio.run(
        run(items, target, args.out, concurrency=args.concurrency, progress=progress, harm=harm)
    )
    print(f"answers in {results}; `railguard eval report {args.out}` summarises them")
    return 0


def _summary(run_dir: Path) -> dict[str, Any]:
    from evaluation.report import summarise
    from evaluation.runner import read_results

    return summarise(*read_results(run_dir))


def _report(args: argparse.Namespace) -> int:
    from evaluation.report import markdown, to_html

    summary = _summary(args.run)
    previous = _summary(args.previous) if args.previous else None
    (args.run / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    (args.run / "report.md").write_text(markdown(summary), encoding="utf-8")
    (args.run / "report.html").write_text(to_html(summary, previous), encoding="utf-8")
    print(markdown(summary))
    print(f"wrote {args.run / 'report.html'}, report.md and summary.json")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from evaluation.report import regressions

    found = regressions(_summary(args.a), _summary(args.b), args.margin)
    for change in found:
        print(f"REGRESSION {change}")
    if not found:
        print(f"no regression of {args.b} against {args.a} beyond {args.margin:g} (95 % intervals)")
    return 1 if found else 0


def _agreement(args: argparse.Namespace) -> int:
    from evaluation.judge import ROUND2_SET, RefusalJudge, dev_set_accuracy, xstest_agreement

    judge = RefusalJudge(gcg=args.gcg)
    result = {
        "xstest": xstest_agreement(args.data_dir, judge),
        "dev_set": dev_set_accuracy(judge=judge),
        "dev_set_held_out": dev_set_accuracy(judge=judge, half=1),
        "round2": dev_set_accuracy(ROUND2_SET, judge=judge),
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


def _garak(args: argparse.Namespace) -> int:
    import time

    from evaluation.garak import (
        PROBES,
        GarakError,
        evaluate,
        garak_version,
        markdown,
        now_date,
        write_section,
    )

    labels = [t.strip() for t in args.targets.split(";") if t.strip()]
    probes = [p.strip() for p in (args.probes or ",".join(PROBES)).split(",") if p.strip()]
    if not labels or not probes or args.cap < 1:
        print(
            "railguard eval garak: name at least one target and one probe, and a --cap of 1 or more",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    try:
        results = evaluate(labels, probes, args.out_dir, cap=args.cap, max_tokens=args.max_tokens)
        version = garak_version()
    except (GarakError, ValueError, RuntimeError) as exc:
        print(f"railguard eval garak: {exc}", file=sys.stderr)
        return 2
    argv = sys.argv[2:] if sys.argv[1:2] == ["eval"] else []
    settings = {
        "command": "railguard eval " + " ".join(argv or ["garak"]),
        "date": now_date(),
        "wall_time_min": (time.perf_counter() - started) / 60,
        "garak": version,
        "cap": args.cap,
        "max_tokens": args.max_tokens,
    }
    table = markdown(results, settings)
    (args.out_dir / "garak.md").write_text(table, encoding="utf-8")
    if str(args.docs):
        write_section(args.docs, table)
        print(f"wrote {args.docs}")
    summary = {t: [o.__dict__ for o in outcomes] for t, outcomes in results.items()}
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0


def _headline(args: argparse.Namespace) -> int:
    from evaluation.headline import evaluate

    args.argv = sys.argv[2:] if sys.argv[1:2] == ["eval"] else None
    return evaluate(args)


_COMMANDS = {
    "headline": _headline,
    "garak": _garak,
    "suites": _suites,
    "run": _run,
    "report": _report,
    "compare": _compare,
    "refusal-agreement": _agreement,
}
