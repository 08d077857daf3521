"""Deployment files: Kubernetes manifests against the Kubernetes schemas (offline), compose."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.policy import load_policy
from gateway.settings import Settings
from trainer.config import NightlyConfig, SFTConfig, load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
K8S_VERSION = "1.30.0"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def all_documents() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for p in MANIFESTS for d in documents(p)}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_catches_a_misspelled_field() -> None:
    deployment = copy.deepcopy(all_documents()[("Deployment", "railguard-gateway")])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessprobe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_the_pieces_fit_together() -> None:
    docs = all_documents()
    deployment = docs[("Deployment", "railguard-gateway")]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    service = docs[("Service", "railguard-gateway")]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    port_names = {p["name"] for p in container["ports"]}
    assert all(p["targetPort"] in port_names for p in service["spec"]["ports"])
    hpa = docs[("HorizontalPodAutoscaler", "railguard-gateway")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    config_maps = {name for kind, name in docs if kind == "ConfigMap"}
    mounted = {v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v}
    assert mounted <= config_maps
    cron = docs[("CronJob", "railguard-retrain")]
    assert re.fullmatch(r"\d+ \d+ \* \* \*", cron["spec"]["schedule"]), "nightly"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["train", "nightly"]
    nightly = load_config(NightlyConfig, None, parse_overrides(args[2:]))  # the job's flags parse
    assert str(nightly.settings) == "/etc/railguard/railguard.yaml"
    mounts = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "config", "mountPath": "/etc/railguard", "readOnly": True} in mounts
    assert ("StatefulSet", "redis") in docs and ("Service", "redis") in docs
    namespaces = {d["metadata"].get("namespace") for d in docs.values() if d["kind"] != "Namespace"}
    assert namespaces == {"railguard"}


def test_config_map_holds_valid_settings_and_policy(tmp_path: Path) -> None:
    data = all_documents()[("ConfigMap", "railguard-config")]["data"]
    (tmp_path / "railguard.yaml").write_text(data["railguard.yaml"], encoding="utf-8")
    settings = Settings.load(tmp_path / "railguard.yaml")
    assert settings.metrics and settings.port == 8080 and settings.upstream is not None
    assert str(settings.policy_file) == "/etc/railguard/policy.yaml"
    (tmp_path / "policy.yaml").write_text(data["policy.yaml"], encoding="utf-8")
    assert load_policy(tmp_path / "policy.yaml").version


def test_rules_config_map_is_the_rules_file() -> None:
    data = all_documents()[("ConfigMap", "railguard-prometheus-rules")]["data"]
    files = {p.name: p.read_text(encoding="utf-8") for p in (DEPLOY / "prometheus/rules").glob("*.yml")}
    assert data == files, "stale: run python deploy/kubernetes/generate.py"


def test_k8s_scrape_config_keeps_the_gateway_pods() -> None:
    data = all_documents()[("ConfigMap", "railguard-prometheus")]["data"]
    config = yaml.safe_load(data["prometheus.yml"])
    job = config["scrape_configs"][0]
    assert job["job_name"].startswith("railguard")  # the dashboards and alerts match job=~"railguard.*"
    keeps = {
        tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"
    }
    assert keeps[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)] == "railguard-gateway"


COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_services_have_healthchecks_and_wait_for_each_other() -> None:
    services = COMPOSE["services"]
    assert {"gateway", "redis", "prometheus", "grafana", "vllm"} <= set(services)
    for name, service in services.items():
        if service.get("restart") == "no":  # a job that runs to its end (the nightly loop)
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["vllm"]["profiles"] == ["vllm"], "vLLM is optional"
    assert services["nightly"]["profiles"] == ["nightly"], "the nightly job runs only when asked"
    assert services["nightly"]["command"][:2] == ["train", "nightly"]
    for name in ("gateway", "prometheus", "grafana"):
        for dependency, condition in services[name]["depends_on"].items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "profiles" not in services[dependency], f"{name} needs optional {dependency}"
    assert "/readyz" in " ".join(services["gateway"]["healthcheck"]["test"])


def test_compose_mounts_exist() -> None:
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"


def test_compose_prometheus_scrapes_the_gateway() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text(encoding="utf-8"))
    targets = {t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]}
    assert "gateway:8080" in targets
    settings = yaml.safe_load((DEPLOY / "railguard.yaml").read_text(encoding="utf-8"))
    assert settings["port"] == 8080 and settings["metrics"] is True


def test_the_multi_gpu_training_job_validates_and_runs_the_trainer_under_accelerate() -> None:
    (job,) = documents(K8S / "jobs" / "train-multi-gpu.yaml")
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["accelerate", "launch"] and command[command.index("-m") + 1 :][:3] == [
        "railguard", "train", "sft",
    ]  # fmt: skip
    gpus = int(command[command.index("--num_processes") + 1])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)  # one process per GPU
    sft_args = command[command.index("sft") + 1 :]
    sft_args[sft_args.index("--config") : sft_args.index("--config") + 2] = []
    load_config(SFTConfig, ROOT / "trainer" / "configs" / "assistant.yaml", parse_overrides(sft_args))
