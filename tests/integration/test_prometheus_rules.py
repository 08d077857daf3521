"""promtool on the shipped Prometheus files: rules check, rule unit tests, configuration check."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: run scripts/ensure-packages.sh")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_rules_check() -> None:
    result = promtool("check", "rules", *map(str, sorted((PROMETHEUS / "rules").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests() -> None:
    result = promtool("test", "rules", *map(str, sorted((PROMETHEUS / "tests").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_cover_every_alert() -> None:
    rules = yaml.safe_load((PROMETHEUS / "rules" / "railguard.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tested = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested |= {t["alertname"] for t in case.get("alert_rule_test", []) if t["exp_alerts"]}
    assert alerts == tested, f"alerts never shown firing: {sorted(alerts - tested)}"


def test_a_broken_rule_fails_the_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum(rate(x[5m])\n")
    assert promtool("check", "rules", str(bad)).returncode != 0


@pytest.mark.parametrize("source", ["compose", "kubernetes"])
def test_prometheus_configs_check(tmp_path: Path, source: str) -> None:
    if source == "compose":
        text = (PROMETHEUS / "prometheus.yml").read_text()
    else:
        manifest = yaml.safe_load((ROOT / "deploy/kubernetes/prometheus.yaml").read_text())
        text = manifest["data"]["prometheus.yml"]
    config = yaml.safe_load(text)
    for job in config["scrape_configs"]:
        # Debian's Prometheus is built without Kubernetes discovery: check the rest of the job.
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["10.0.0.1:8080"]}]
    rules = tmp_path / "rules"
    shutil.copytree(PROMETHEUS / "rules", rules)
    config["rule_files"] = [str(rules / "*.yml")]  # where the container mounts them
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 19 rules found" in result.stdout
