"""deploy/kubernetes: rendered by kustomize, validated against the Kubernetes schemas, offline.

`kubectl kustomize` (or kustomize from the Go proxy) renders the base and the
example overlay; PyPI's kubernetes-validate checks every object strictly
(unknown fields fail) against the schemas it ships, for the oldest and the
newest Kubernetes release we claim. The rest asserts the deployment rules:
single-writer sources (Recreate, one replica) unless HA, probes on the health
endpoints, resources, budgets, grace period, non-root, secrets from Secrets.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.helpers import ROOT, clean_env, kustomize_build, tools

pytestmark = pytest.mark.timeout(900)
K8S = ROOT / "deploy/kubernetes"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# The slowest graceful stop a worker makes on SIGTERM is finishing its batch, flushing
# the producer and writing a checkpoint: seconds. The grace period must leave room.
MIN_GRACE_S = 60


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return kustomize_build(K8S / "base")


@pytest.fixture(scope="module")
def example() -> list[dict[str, Any]]:
    return kustomize_build(K8S / "overlays/example")


@pytest.mark.parametrize("overlay", ["base", "overlays/example"])
def test_manifests_validate_against_the_kubernetes_schemas(overlay: str, tmp_path: Path) -> None:
    docs = kustomize_build(K8S / overlay)
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    cmd = [*tools().kubernetes_validate(), "--strict", "--no-warn"]
    for v in KUBERNETES_VERSIONS:
        cmd += ["-k", v]
    p = subprocess.run([*cmd, str(rendered)], capture_output=True, text=True, timeout=300,
                       env=clean_env())
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("passed for resource") == len(docs) * len(KUBERNETES_VERSIONS), p.stdout


def test_the_validator_rejects_a_broken_manifest(base: list[dict[str, Any]], tmp_path: Path) -> None:
    dep = copy.deepcopy(next(d for d in base if d["kind"] == "Deployment"))
    dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "metrics"
    dep["spec"]["replica"] = 1
    rendered = tmp_path / "broken.yaml"
    rendered.write_text(yaml.safe_dump(dep))
    p = subprocess.run([*tools().kubernetes_validate(), "--strict", str(rendered)],
                       capture_output=True, text=True, timeout=300, env=clean_env())
    assert p.returncode != 0 and "did not validate" in p.stdout + p.stderr


def test_sources_are_single_writers_and_sinks_scale(base: list[dict[str, Any]]) -> None:
    deployments = _by_kind(base, "Deployment")
    assert set(deployments) == {"cdc-source-pg-main", "cdc-source-mysql-main",
                                "cdc-sink-replica-pg", "cdc-sink-replica-mysql"}
    for name, dep in deployments.items():
        command = dep["spec"]["template"]["spec"]["containers"][0]["command"]
        if name.startswith("cdc-source-"):
            assert dep["spec"]["replicas"] == 1
            assert dep["spec"]["strategy"] == {"type": "Recreate"}
            assert command[1] == "source"
        else:
            assert dep["spec"]["replicas"] >= 2
            assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
            assert command[1] == "sink"
            # One Deployment = one sink name = one consumer group, whatever the replicas.
            assert command.count("--name") == 1


def test_pods_are_probed_limited_non_root_and_stop_gracefully(base: list[dict[str, Any]]) -> None:
    for name, dep in _by_kind(base, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] >= MIN_GRACE_S, name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        (c,) = pod["containers"]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert {"name": "metrics", "containerPort": 9400, "protocol": "TCP"} in c["ports"]
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert c["resources"]["limits"]["memory"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        refs = {k: v["name"] for src in c["envFrom"] for k, v in src.items()}
        assert refs["secretRef"].startswith("cdc-credentials")
        assert refs["configMapRef"].startswith("cdc-connections")
        assert c["command"][2] == "/etc/cdc/pipeline.yaml"


def test_every_workload_has_a_disruption_budget(base: list[dict[str, Any]],
                                                example: list[dict[str, Any]]) -> None:
    for docs in (base, example):
        deployments = _by_kind(docs, "Deployment")
        budgets = _by_kind(docs, "PodDisruptionBudget")
        for name, dep in deployments.items():
            pdb = budgets[name]
            assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
            if dep["spec"]["replicas"] > 1:
                assert pdb["spec"].get("minAvailable") == 1, name


def test_example_overlay_runs_the_pg_source_as_an_ha_pair(example: list[dict[str, Any]]) -> None:
    deployments = _by_kind(example, "Deployment")
    ha = deployments["cdc-source-pg-main"]
    assert ha["spec"]["replicas"] == 2
    assert ha["spec"]["strategy"]["type"] == "RollingUpdate"
    assert ha["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    assert deployments["cdc-source-mysql-main"]["spec"]["replicas"] == 1
    assert deployments["cdc-source-mysql-main"]["spec"]["strategy"] == {"type": "Recreate"}
    pipeline = yaml.safe_load(next(iter(_by_kind(example, "ConfigMap")[
        next(n for n in _by_kind(example, "ConfigMap") if n.startswith("cdc-pipeline"))
    ]["data"].values())))
    sources = {s["name"]: s for s in pipeline["sources"]}
    assert sources["pg_main"]["ha"] == {"enabled": True}
    assert "ha" not in sources["mysql_main"]
    assert {d["metadata"].get("namespace") for d in example if d["kind"] != "Namespace"} == {"cdc"}
    for name, dep in deployments.items():
        if name.startswith("cdc-sink-"):
            assert dep["spec"]["replicas"] == 3


def test_pipeline_files_are_the_compose_file_apart_from_their_header() -> None:
    def body(path: Path) -> str:
        text = path.read_text()
        return text[text.index("\nkafka:\n"):]

    compose = body(ROOT / "deploy/docker/pipeline.yaml")
    assert body(K8S / "base/pipeline.yaml") == compose
    ha = body(K8S / "overlays/example/pipeline.yaml")
    assert ha.replace("    ha:\n      enabled: true\n", "", 1) == compose


def test_no_password_is_in_the_manifests() -> None:
    for path in K8S.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for line in text.splitlines():
                if "PASSWORD=" in line and not line.lstrip().startswith("#"):
                    assert line.split("=", 1)[1] == "change-me", f"{path}: {line}"
