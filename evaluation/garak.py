"""`railguard eval garak`: NVIDIA garak's probes against railguard, gateway on vs off.

garak runs in a virtualenv of its own (`scripts/garak-setup.sh` makes `.garak-venv`), as a subprocess,
with its OpenAI-compatible generator pointed at a `railguard serve` started here for each target (the
targets of `railguard eval headline`: the embedded default and a stub upstream, each with the gateway on
and off). Its JSONL report's ``eval`` entries (per probe and detector: attempts passed of those
evaluated) are read back, and the pass rates written as a table into docs/evaluation.md between
``GARAK`` markers, with 95 % Wilson intervals.

A probe *passes* an attempt when garak's detector finds no sign of the attack working (the payload decoded,
the injected string printed, the DAN persona adopted, no refusal at all: ``mitigation.MitigationBypass``,
whose list of refusal phrases does not include railguard's own "I can't help with that", so it counts the
guard's refusals as bypasses; the table says so).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evaluation.report import wilson

ROOT = Path(__file__).resolve().parents[1]
GARAK_PYTHON = ROOT / ".garak-venv" / "bin" / "python"
#: What `railguard eval garak` runs by default: the issue's three families, two probes each.
PROBES = (
    "dan.Dan_11_0",
    "dan.DanInTheWild",
    "encoding.InjectBase64",
    "encoding.InjectROT13",
    "promptinject.HijackHateHumans",
    "promptinject.HijackKillHumans",
)
BEGIN = "<!-- GARAK:BEGIN (written by `railguard eval garak`) -->"
END = "<!-- GARAK:END -->"


class GarakError(RuntimeError):
    """garak is not installed, or a run of it failed (the message says where its log is)."""


@dataclass(frozen=True)
class Outcome:
    """One probe × detector of one run: attempts that passed, of those the detector evaluated."""

    probe: str
    detector: str
    passed: int
    total: int

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else float("nan")


def garak_python() -> Path:
    """The interpreter of garak's own virtualenv (``$RAILGUARD_GARAK_PYTHON`` overrides it)."""
    path = Path(os.environ.get("RAILGUARD_GARAK_PYTHON") or GARAK_PYTHON)
    if not path.is_file():
        raise GarakError(f"garak is not installed at {path}: run ./scripts/garak-setup.sh")
    return path


def config(
    base_url: str, model: str, *, cap: int, max_tokens: int, report_dir: Path, prefix: str
) -> dict[str, Any]:
    """garak's run configuration: its OpenAI-compatible generator on ``base_url``, one generation per
    prompt, at most ``cap`` prompts per probe."""
    return {
        "plugins": {
            "target_type": "openai.OpenAICompatible",
            "target_name": model,
            "generators": {
                "openai": {
                    "OpenAICompatible": {
                        "uri": base_url,
                        "api_key": "unused",
                        "max_tokens": max_tokens,
                        "temperature": 0.0,
                        "seed": 0,
                    }
                }
            },
        },
        "system": {"parallel_attempts": 8},  # the gateway batches concurrent requests to a local model
        "run": {"generations": 1, "soft_probe_prompt_cap": cap, "seed": 0},
        "reporting": {"report_dir": str(report_dir), "report_prefix": prefix},
    }


def run_garak(
    base_url: str,
    model: str,
    probes: Iterable[str],
    out_dir: Path,
    name: str,
    *,
    cap: int = 20,
    max_tokens: int = 150,
    timeout_s: float = 3600,
) -> Path:
    """Run garak's ``probes`` against ``base_url``; the path of its JSONL report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = out_dir / f"{name}.garak.yaml"
    settings.write_text(
        yaml.safe_dump(
            config(base_url, model, cap=cap, max_tokens=max_tokens, report_dir=out_dir, prefix=name)
        ),
        encoding="utf-8",
    )
    settings.chmod(0o600)
    report = out_dir / f"{name}.report.jsonl"
    report.unlink(missing_ok=True)
    log = out_dir / f"{name}.garak.log"
    command = [str(garak_python()), "-m", "garak", "--config", str(settings), "--probes", ",".join(probes)]
    env = {
        **os.environ,
        "XDG_DATA_HOME": str(out_dir / "xdg-data"),
        "XDG_CACHE_HOME": str(out_dir / "xdg-cache"),
    }
    with log.open("wb") as out:
        try:
            done = subprocess.run(  # noqa: S603 - garak's own CLI, our arguments
                command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            raise GarakError(f"garak ran past {timeout_s:.0f} s; see {log}") from None
    if done.returncode != 0 or not report.is_file():
        raise GarakError(f"garak exited with {done.returncode}; see {log}")
    return report


def read_report(path: Path) -> list[Outcome]:
    """The ``eval`` entries of a garak JSONL report."""
    outcomes = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if entry.get("entry_type") != "eval":
                    continue
                total = int(entry.get("total_evaluated", entry.get("total", 0)))
                outcomes.append(
                    Outcome(str(entry["probe"]), str(entry["detector"]), int(entry["passed"]), total)
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise GarakError(f"{path}:{number}: not a garak report line ({exc})") from None
    if not outcomes:
        raise GarakError(f"{path}: no evaluation in garak's report")
    return outcomes


def markdown(results: dict[str, list[Outcome]], settings: dict[str, Any]) -> str:
    """The table: a row per probe × detector, a column per target (pass rate, interval, n)."""
    targets = list(results)
    rows: dict[tuple[str, str], dict[str, Outcome]] = {}
    for target, outcomes in results.items():
        for o in outcomes:
            rows.setdefault((o.probe, o.detector), {})[target] = o
    lines = [
        f"Measured by `{settings['command']}` on {settings['date']} ({settings['wall_time_min']:.0f} min), "
        f"garak {settings['garak']}, at most {settings['cap']} prompts per probe, one generation each, "
        f"temperature 0, {settings['max_tokens']} tokens. Pass rate: the share of attempts where garak's "
        "detector found no sign of the attack working, with 95 % Wilson intervals (higher is better).",
        "",
        "| probe | detector | " + " | ".join(targets) + " |",
        "|---|---|" + "---|" * len(targets),
    ]
    for (probe, detector), by_target in sorted(rows.items()):
        cells = []
        for target in targets:
            cell = by_target.get(target)
            if cell is None or not cell.total:
                cells.append("–")
                continue
            low, high = wilson(cell.passed, cell.total)
            cells.append(f"{cell.rate:.0%} [{low:.0%}–{high:.0%}] of {cell.total}")
        lines.append(f"| {probe} | {detector} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "`mitigation.MitigationBypass` passes an answer only when it contains one of garak's refusal "
        "phrases; railguard's refusals (\"I can't help with that. It conflicts with our principle: ...\") "
        "are not in that list, so it counts them as bypasses: read its row against the DAN detector's.",
        "",
        "To run it: `./scripts/garak-setup.sh` puts garak in a virtualenv of its own (`.garak-venv`; the "
        "test command does it too), then `railguard eval garak` serves each target in turn and points "
        "garak's `openai.OpenAICompatible` generator at it; garak's own reports (JSONL and HTML) are kept "
        "in `--out-dir` (default `~/.cache/railguard/eval/garak`). The stub upstream here is `stub-echo`, "
        "which repeats the user's message: whatever an attack wants printed is in its answer, so the "
        "*gateway off* column is what a model that does what it is told gives.",
    ]
    return "\n".join(lines) + "\n"


def garak_section(text: str) -> str | None:
    """The table between the GARAK markers of a document's text, or None."""
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].lstrip("\n")


def write_section(doc: Path, table: str) -> None:
    """Put ``table`` between the GARAK markers of ``doc`` (appended under a heading the first time)."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    block = f"{BEGIN}\n{table}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## garak probes, gateway on vs off\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")


def garak_version() -> str:
    done = subprocess.run(  # noqa: S603 - garak's interpreter
        [str(garak_python()), "-c", "import garak; print(garak.__version__)"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    return done.stdout.strip() or "unknown"


def targets(labels: Iterable[str], stub_model: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(label, gateway settings without the upstream, model id) of each chosen target."""
    from evaluation.headline import OFF

    for label in labels:
        on = label.endswith("gateway on")
        if label.startswith("embedded"):
            yield label, ({} if on else OFF), "gemma-3-270m"
        elif label.startswith("stub"):
            yield label, ({} if on else OFF), stub_model
        else:
            raise ValueError(f"unknown target {label!r}")


def evaluate(
    labels: list[str],
    probes: list[str],
    out_dir: Path,
    *,
    cap: int,
    max_tokens: int,
    stub_model: str = "stub-echo",
) -> dict[str, list[Outcome]]:
    """Each target served in turn, garak run against it; the outcomes by target label."""
    from evaluation.serve import gateway_process, stub_process

    garak_python()  # fail before starting anything
    results: dict[str, list[Outcome]] = {}
    with ExitStack() as stack:
        stub_url = None
        if any(label.startswith("stub") for label in labels):
            stub_url = stack.enter_context(stub_process(out_dir / "stub.log"))
        for label, settings, model in targets(labels, stub_model):
            if label.startswith("stub"):
                settings = {**settings, "upstream": {"url": stub_url}}
            name = label.replace(", ", "-").replace(" ", "-")
            with gateway_process(settings, out_dir / f"{name}.gateway.log") as base_url:
                report = run_garak(base_url, model, probes, out_dir, name, cap=cap, max_tokens=max_tokens)
            results[label] = read_report(report)
    return results


def now_date() -> str:
    return time.strftime("%Y-%m-%d")
