"""A measured full run of the loop on this machine, written into docs/retraining.md.

1. A gateway on the embedded default with the full default guard (policy + classifiers), its records in
   the embedded store, in a run directory of its own (its registry too: nothing else is promoted);
2. `railguard data replay`: harmful prompts of the training sets and our benign contrasts through it;
3. `railguard train nightly` on what the guard flagged: AI labels, data, SFT, DPO, the evaluation of the
   served adapter and the candidate (the model's own answers, guard off: held-out HarmBench test,
   MultiJail, XSTest, IFEval, perplexity and KL on held-out ordinary text), the gate, promotion or not;
4. the before/after table, wall time per stage and peak memory, between the markers in
   docs/retraining.md.

    .venv/bin/python bench/nightly.py --run-dir ~/nightly-run [--harmful 200 --benign 150 ...]

Rerun with the same --run-dir to resume (the replay is skipped once done; the job resumes by stage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "retraining.md"
BEGIN, END = "<!-- nightly-run:begin -->", "<!-- nightly-run:end -->"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--harmful", type=int, default=200)
    parser.add_argument("--benign", type=int, default=150)
    parser.add_argument("--label-limit", type=int, default=200)
    parser.add_argument("--sft-max-steps", type=int, default=60)
    parser.add_argument("--dpo-max-steps", type=int, default=40)
    parser.add_argument("--eval-limit", type=int, default=48)
    parser.add_argument("--ifeval-limit", type=int, default=60)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/retraining.md")
    parser.add_argument("--report-only", action="store_true",
                        help="write the section again from the run's last finished job")  # fmt: skip
    args = parser.parse_args()
    if args.report_only:
        return report_only(args)

    import yaml

    from evaluation.serve import gateway_process
    from gateway.settings import Settings
    from trainer.config import NightlyConfig
    from trainer.nightly import Nightly
    from trainer.replay import replay, replay_prompts

    run = args.run_dir.expanduser().resolve()
    run.mkdir(parents=True, exist_ok=True)
    shared = Path(os.environ.get("RAILGUARD_CACHE_DIR", Path.home() / ".cache" / "railguard"))
    for name in ("models", "classifiers"):  # converted model and built classifiers, reused
        (shared / name).mkdir(parents=True, exist_ok=True)
        if not (run / name).exists():
            (run / name).symlink_to(shared / name)
    settings_file = run / "railguard.yaml"
    settings_file.write_text(yaml.safe_dump({"cache_dir": str(run)}), encoding="utf-8")
    started = time.perf_counter()
    replayed = run / "replay.json"
    if not replayed.exists():
        prompts = replay_prompts(args.data_dir, args.harmful, args.benign)
        with gateway_process({"cache_dir": str(run)}, run / "gateway.log") as url:
            t0 = time.perf_counter()
            counts = asyncio.run(replay(url, "gemma-3-270m", prompts, max_tokens=64))
        replayed.write_text(json.dumps({"counts": counts, "wall_s": round(time.perf_counter() - t0, 1)}))
    replay_result = json.loads(replayed.read_text())
    print(f"replay: {replay_result}", file=sys.stderr)
    config = NightlyConfig(
        settings=settings_file, data_dir=args.data_dir, label_limit=args.label_limit,
        sft_max_steps=args.sft_max_steps, dpo_max_steps=args.dpo_max_steps, eval_limit=args.eval_limit,
        ifeval_limit=args.ifeval_limit, max_tokens=args.max_tokens,
    )  # fmt: skip
    t0 = time.perf_counter()
    summary = Nightly(config, Settings.load(settings_file)).run()
    nightly_s = time.perf_counter() - t0
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    (run / "peak-rss-mb.txt").write_text(f"{max(peak / 1024, _earlier_peak(run)):.0f}\n", encoding="utf-8")
    total_s = time.perf_counter() - started
    print(f"nightly invocation {nightly_s:.0f} s, total {total_s:.0f} s", file=sys.stderr)
    return write(run, summary, replay_result, args)


def _earlier_peak(run: Path) -> float:
    path = run / "peak-rss-mb.txt"
    return float(path.read_text()) if path.is_file() else 0.0


def write(run: Path, summary: dict[str, Any], replayed: dict[str, Any], args: Any) -> int:
    table = markdown(summary, replayed, _earlier_peak(run), args)
    (run / "nightly-run.md").write_text(table, encoding="utf-8")
    print(table)
    if not args.no_doc:
        text = DOC.read_text(encoding="utf-8")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}", encoding="utf-8")
    return 0


def report_only(args: Any) -> int:
    run = args.run_dir.expanduser().resolve()
    finished = sorted((run / "nightly" / "runs").glob("*/state.json"))
    if not finished or not (run / "replay.json").is_file():
        print(f"no finished nightly job in {run}", file=sys.stderr)
        return 2
    summary = json.loads(finished[-1].read_text(encoding="utf-8"))
    return write(run, summary, json.loads((run / "replay.json").read_text()), args)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def markdown(summary: dict[str, Any], replayed: dict[str, Any], peak_mb: float, args: Any) -> str:
    stages = summary["stages"]
    command = (
        f"`.venv/bin/python bench/nightly.py --run-dir RUN --harmful {args.harmful} --benign {args.benign}"
        f" --label-limit {args.label_limit} --sft-max-steps {args.sft_max_steps}"
        f" --dpo-max-steps {args.dpo_max_steps} --eval-limit {args.eval_limit}"
        f" --ifeval-limit {args.ifeval_limit}`"
    )
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on this 2-core CPU machine with {command}.",
        "",
        f"Replayed through the gateway (full default guard): {json.dumps(replayed['counts'])} "
        f"({replayed['wall_s']:.0f} s). Outcome: **{summary.get('outcome')}**.",
        "",
    ]
    evaluation = stages.get("evaluate")
    if evaluation:
        lines += _table(evaluation)
    gate = stages.get("gate")
    if gate:
        reasons = ": " + "; ".join(gate["reasons"]) if gate["reasons"] else ""
        lines += [f"Gate: {'passed' if gate['passed'] else 'failed'}{reasons}.", ""]
    data = stages.get("data", {})
    labels = {k: v for k, v in stages.get("label", {}).items() if k != "wall_s"}
    lines.append(
        f"Data: {json.dumps(data.get('counts'))}, labels {json.dumps(data.get('provenance'))}; "
        f"AI labelling: {json.dumps(labels)}."
    )
    walls = ", ".join(f"{name} {r.get('wall_s', 0):.0f} s" for name, r in stages.items())
    total = sum(r.get("wall_s", 0) for r in stages.values())
    lines += [
        "",
        f"Wall time of the nightly job: {total / 60:.1f} min, the sum of its stages ({walls}; a stage "
        f"resumed after an interruption counts its finishing pass); peak RSS of the largest process "
        f"(the job, which trains in-process, or a gateway it started) {peak_mb:.0f} MB.",
    ]
    return "\n".join(lines) + "\n"


def _table(evaluation: dict[str, Any]) -> list[str]:
    head = evaluation["headline"]
    rows = ["| the model's own answers (guard off) | served adapter | candidate |", "|---|---|---|"]
    for suite in sorted(head["serving"]):
        for metric in ("harmful_compliance", "over_refusal"):
            if metric in head["serving"][suite]:
                before, after = head["serving"][suite][metric], head["candidate"][suite].get(metric)
                rows.append(f"| {suite}: {metric.replace('_', ' ')} | {_pct(before)} | {_pct(after)} |")
    quality = evaluation.get("quality") or {}
    ifeval = quality.get("ifeval") or {}
    if ifeval:
        rate = {name: r["k"] / r["n"] if r["n"] else None for name, r in ifeval.items()}
        label = f"IFEval prompt-level strict ({ifeval['serving']['n']} prompts)"
        rows.append(f"| {label} | {_pct(rate['serving'])} | {_pct(rate['candidate'])} |")
    if "perplexity" in quality:
        ppl = quality["perplexity"]
        label = f"perplexity on {quality['texts']} held-out AlpacaEval answers"
        kl = f"KL {quality['kl_per_token']:.4f} nats/token"
        rows.append(f"| {label} | {ppl['serving']:.2f} | {ppl['candidate']:.2f} ({kl}) |")
    return [*rows, ""]


if __name__ == "__main__":
    raise SystemExit(main())
