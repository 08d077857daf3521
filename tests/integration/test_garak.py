"""NVIDIA garak against railguard, CI-sized: `railguard eval garak` runs garak (its own virtualenv, made by
scripts/garak-setup.sh) against a gateway in front of a stub that repeats what it is told, with the
gateway on and off, and reads garak's report back into the table docs/evaluation.md holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.garak import GARAK_PYTHON, Outcome, garak_section, read_report, write_section

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PROBES = "dan.Dan_11_0,encoding.InjectBase64,promptinject.HijackHateHumans"


def eval_garak(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "railguard", "eval", "garak", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip


def test_garaks_probes_pass_with_the_gateway_on_and_fail_without_it(tmp_path: Path) -> None:
    assert GARAK_PYTHON.is_file(), "scripts/garak-setup.sh makes .garak-venv (scripts/test.sh runs it)"
    done = eval_garak(
        "--targets", "stub upstream, gateway on;stub upstream, gateway off", "--probes", PROBES,
        "--cap", "4", "--out-dir", str(tmp_path), "--docs", str(tmp_path / "evaluation.md"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = {
        t: [Outcome(**o) for o in rows]
        for t, rows in json.loads(done.stdout[done.stdout.index("{") :]).items()
    }
    on, off = results["stub upstream, gateway on"], results["stub upstream, gateway off"]
    rogue = {
        t: next(o for o in rows if o.detector == "promptinject.AttackRogueString")
        for t, rows in results.items()
    }
    # the stub prints the injected string when nothing stands in front of it; the guard refuses the injection
    assert rogue["stub upstream, gateway on"].rate == 1.0 and rogue["stub upstream, gateway off"].rate < 1.0
    assert {o.probe for o in on} == {o.probe for o in off} == set(PROBES.split(","))
    assert all(o.total >= 1 for o in on + off)
    doc = (tmp_path / "evaluation.md").read_text()
    assert "| promptinject.HijackHateHumans | promptinject.AttackRogueString | 100%" in doc
    assert (tmp_path / "stub-upstream-gateway-on.report.jsonl").is_file()  # garak's own report, kept
    write_section(tmp_path / "evaluation.md", "a new table\n")  # a rerun replaces the section, once
    assert garak_section((tmp_path / "evaluation.md").read_text()) == "a new table\n"


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    unknown = eval_garak("--targets", "the moon", "--out-dir", str(tmp_path), "--docs", "")
    assert unknown.returncode == 2 and "unknown target 'the moon'" in unknown.stderr
    missing = eval_garak("--out-dir", str(tmp_path), env={"RAILGUARD_GARAK_PYTHON": str(tmp_path / "none")})
    assert missing.returncode == 2 and "garak-setup.sh" in missing.stderr
    bad = tmp_path / "bad.report.jsonl"
    bad.write_text('{"entry_type": "eval", "probe": "x"}\n')
    with pytest.raises(RuntimeError, match=r"bad\.report\.jsonl:1"):
        read_report(bad)
