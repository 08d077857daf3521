"""The soak's figures and verdict, its two plots, and its section of docs/reliability.md.

PASS needs all four: no errors (anything but a 200, 429s and timeouts included), no record lost, the
gateway's RSS in the last minute (median of the samples) at most 5 % above minute 2's (after the
warm-up; minute 1 when the run is one minute long), and p99 per minute flat: the worst minute's p99 at
most twice the median of the minutes' p99s.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
LATENCY_PNG = ROOT / "docs" / "img" / "soak-latency.png"
RSS_PNG = ROOT / "docs" / "img" / "soak-rss.png"
BEGIN, END = "<!-- SOAK:BEGIN -->", "<!-- SOAK:END -->"
FLAT_FACTOR = 2.0
RSS_GROWTH_MAX_PCT = 5.0


def rss_growth(samples: list[dict[str, float]], minutes: int) -> dict[str, float]:
    """Median RSS of the last minute against minute 2's, in MiB and %."""
    baseline_minute = 2 if minutes >= 2 else 1

    def median_in(minute: int) -> float:
        rss = [s["rss_mb"] for s in samples if 60 * (minute - 1) <= s["t_s"] <= 60 * minute]
        return statistics.median(rss) if rss else float("nan")

    base, end = median_in(baseline_minute), median_in(minutes)
    return {
        "baseline_minute": baseline_minute,
        "baseline_mb": base,
        "end_mb": end,
        "growth_pct": (end - base) / base * 100,
        "first_mb": samples[0]["rss_mb"],
        "peak_mb": max(s["rss_mb"] for s in samples),
    }


def p99_flatness(minutes: list[dict[str, Any]]) -> dict[str, Any]:
    p99 = [m["p99_ms"] for m in minutes if m["p99_ms"] is not None]
    if not p99:
        return {"min_ms": None, "median_ms": None, "max_ms": None, "ratio": None, "flat": False}
    median = statistics.median(p99)
    return {
        "min_ms": min(p99),
        "median_ms": median,
        "max_ms": max(p99),
        "ratio": max(p99) / median,
        "flat": max(p99) <= FLAT_FACTOR * median and len(p99) == len(minutes),
    }


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    checks = {
        "errors == 0": report["load"]["errors"] == 0,
        "records lost == 0": report["records"]["lost"] == 0,
        f"RSS growth <= {RSS_GROWTH_MAX_PCT:g} %": report["rss"]["growth_pct"] <= RSS_GROWTH_MAX_PCT,
        f"p99 per minute flat (max <= {FLAT_FACTOR:g} x median)": report["p99"]["flat"],
    }
    return {"pass": all(checks.values()), "checks": checks}


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def markdown(report: dict[str, Any], plots: bool) -> str:
    """The table of one run, its verdict, and the command that made it."""
    meta, cap, load, rec, rss, p99 = (
        report[k] for k in ("meta", "capacity", "load", "records", "rss", "p99")
    )
    minutes = report["minutes"]
    p50 = [m["p50_ms"] for m in minutes if m["p50_ms"] is not None]
    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(load["statuses"].items()))
    actions = ", ".join(f"{k}: {v:,}" for k, v in sorted(load["actions"].items()))
    check = verdict(report)
    failed = [name for name, ok in check["checks"].items() if not ok]
    helpers = "the stub, the client" + (" and redis-server" if rec["sink"] == "redis" else "")
    pinning = f"the gateway pinned to CPU 0; {helpers} to CPU 1" if meta["pinned"] else "nothing pinned"
    lines = [
        f"Run of {meta['date']} on {meta['cpu_model']} ({meta['cpus']} CPUs; {pinning}); records to the "
        f"{rec['sink']} sink, every record (`record: all`).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| capacity (closed loop, {cap['concurrency']} connections, {cap['seconds']:g} s) | "
        f"{cap['rps']:.1f} req/s (gateway {cap['cpu']['gateway']:.2f} cores, others "
        f"{cap['cpu']['foreign']:.2f}) |",
        f"| rate held ({load['fraction'] * 100:g} % of capacity, {load['arrivals']} arrivals) | "
        f"{load['rate']:.1f} req/s (achieved {load['achieved_rate']:.1f}) |",
        f"| minutes | {load['minutes']:g} |",
        f"| requests sent | {load['sent']:,} |",
        f"| answered 200 (guard actions) | {load['statuses'].get('200', 0):,} ({actions}) |",
        f"| **errors** (anything but 200) | **{load['errors']:,}** ({statuses}) |",
        f"| **records lost** (answered, not in the store after the gateway's clean stop) | "
        f"**{rec['lost']:,}** of {rec['answered']:,} |",
        f"| records not yet stored {rec['settle_s']:g} s after the last answer (gateway running) | "
        f"{rec['late']:,} |",
        f"| p50 per minute, median (ms) | {_ms(statistics.median(p50) if p50 else None)} |",
        f"| **p99 per minute**, min / median / max (ms) | {_ms(p99['min_ms'])} / {_ms(p99['median_ms'])} / "
        f"**{_ms(p99['max_ms'])}** (max ÷ median {p99['ratio'] or 0:.2f}) |",
        f"| gateway RSS, minute {rss['baseline_minute']} median → last minute median (MiB) | "
        f"{rss['baseline_mb']:.1f} → {rss['end_mb']:.1f} |",
        f"| **RSS growth** | **{rss['growth_pct']:+.2f} %** (peak {rss['peak_mb']:.1f} MiB) |",
        f"| gateway CPU, mean over the load (cores) | {report['cpu']['gateway']:.2f} |",
        f"| CPU used by other processes, mean (cores) | {report['cpu']['foreign']:.2f} |",
        "",
        f"**Verdict: {'PASS' if check['pass'] else 'FAIL'}**"
        + (f" (failed: {'; '.join(failed)})" if failed else "")
        + " — errors 0, records lost 0, RSS growth ≤ 5 %, p99 per minute flat (max ≤ 2 × median).",
        "",
        "```bash",
        meta["command"],
        "```",
    ]
    if plots:
        lines += [
            "",
            f"![p50 and p99 per minute](img/{LATENCY_PNG.name})",
            f"![Gateway RSS over the run](img/{RSS_PNG.name})",
        ]
    return "\n".join(lines)


def plot(report: dict[str, Any], latency_png: Path, rss_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    minutes = report["minutes"]
    x = [m["minute"] for m in minutes]
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    ax.plot(x, [m["p50_ms"] for m in minutes], marker="o", label="p50")
    ax.plot(x, [m["p99_ms"] for m in minutes], marker="o", label="p99")
    median = report["p99"]["median_ms"]
    if median is not None:
        ax.axhline(FLAT_FACTOR * median, color="grey", linestyle="--", label="2 × median p99")
    ax.set(xlabel="minute", ylabel="latency (ms)", ylim=(0, None))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Soak: latency per minute at {report['load']['rate']:.0f} req/s")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    latency_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(latency_png)
    plt.close(fig)

    samples = report["rss_samples"]
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    rss = report["rss"]
    ax.plot([s["t_s"] / 60 for s in samples], [s["rss_mb"] for s in samples], label="RSS")
    limit = rss["baseline_mb"] * (1 + RSS_GROWTH_MAX_PCT / 100)
    ax.axhline(limit, color="grey", linestyle="--", label=f"minute {rss['baseline_minute']} median + 5 %")
    ax.legend(loc="lower right")
    ax.set(xlabel="minute", ylabel="gateway RSS (MiB)", ylim=(0, max(limit, rss["peak_mb"]) * 1.15))
    ax.set_title(f"Soak: gateway RSS (growth {rss['growth_pct']:+.2f} %)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(rss_png)
    plt.close(fig)


def write_docs(report: dict[str, Any], doc: Path = DOC) -> None:
    """The plots under docs/img/ and the run's table between the SOAK markers of the doc."""
    plot(report, LATENCY_PNG, RSS_PNG)
    text = doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise RuntimeError(f"{doc} has no {BEGIN} ... {END} section")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{markdown(report, plots=True)}\n{END}{tail}", encoding="utf-8")
