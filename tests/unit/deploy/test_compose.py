"""docker-compose.yml, checked offline by the real Docker Compose CLI (`docker compose config`).

No Docker engine runs here: these tests prove the file is valid for Compose v5,
with the monitoring profile and with scaled sinks, that every service has a
healthcheck and the right `depends_on` conditions, and that every container
command is accepted by the real CLI it calls (tests/unit/deploy/test_commands.py).
The compose CLI is built once from the Go module proxy (deploy/local/tools.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.helpers import (
    ROOT,
    clean_env,
    compose_config,
    compose_project,
    read_versions,
)

pytestmark = pytest.mark.timeout(1800)  # the first run builds the compose CLI

WORKERS = {"source-pg", "source-mysql", "sink-pg", "sink-mysql"}
SINKS = {"sink-pg", "sink-mysql"}
ONE_SHOT = {"registry-init"}
WORKLOADS = {"workload-pg", "workload-mysql"}
DATABASES = {"pg-source", "pg-replica", "mysql-source", "mysql-replica", "registry-db"}
MONITORING = {"prometheus", "grafana"}


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return compose_project()


@pytest.fixture(scope="module")
def monitoring() -> dict[str, Any]:
    return compose_project("--profile", "monitoring")


def test_default_project_runs_the_whole_pipeline(project: dict[str, Any]) -> None:
    services = set(project["services"])
    assert services == {"kafka", "registry", *DATABASES, *ONE_SHOT, *WORKLOADS, *WORKERS}
    v = read_versions()
    images = {name: svc["image"] for name, svc in project["services"].items()}
    assert images["kafka"] == f"apache/kafka:{v['KAFKA_VERSION']}"
    assert images["registry"] == f"apicurio/apicurio-registry:{v['APICURIO_VERSION']}"
    assert images["pg-source"] == images["pg-replica"] == f"postgres:{v['POSTGRES_VERSION']}"
    assert images["mysql-source"] == images["mysql-replica"] == f"mariadb:{v['MARIADB_VERSION']}"
    for name in (*WORKERS, *ONE_SHOT, *WORKLOADS):
        assert project["services"][name]["build"]["args"]["PYTHON_VERSION"] == v["PYTHON_VERSION"]


def test_versions_come_only_from_the_versions_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    p = compose_config("--env-file", str(empty), check=False)
    assert p.returncode != 0
    assert "deploy/versions.env" in p.stderr, p.stderr


def test_every_long_running_service_has_a_healthcheck(project: dict[str, Any],
                                                      monitoring: dict[str, Any]) -> None:
    for name, svc in monitoring["services"].items():
        if name in ONE_SHOT | WORKLOADS:
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    for name in WORKERS:
        test = project["services"][name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"], test  # the image has Python, not curl
        assert "http://127.0.0.1:9400/healthz" in test[-1]


def test_depends_on_waits_for_health_and_the_registry_rule(project: dict[str, Any]) -> None:
    services = project["services"]

    def deps(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in (services[name].get("depends_on") or {}).items()}

    assert deps("registry") == {"registry-db": "service_healthy"}
    assert deps("registry-init") == {"registry": "service_healthy"}
    assert deps("source-pg") == {"kafka": "service_healthy", "pg-source": "service_healthy",
                                 "registry-init": "service_completed_successfully"}
    assert deps("source-mysql") == {"kafka": "service_healthy", "mysql-source": "service_healthy",
                                    "registry-init": "service_completed_successfully"}
    assert deps("sink-pg") == {"kafka": "service_healthy", "pg-replica": "service_healthy",
                               "registry-init": "service_completed_successfully"}
    assert deps("sink-mysql") == {"kafka": "service_healthy", "mysql-replica": "service_healthy",
                                  "registry-init": "service_completed_successfully"}
    assert deps("workload-pg") == {"pg-source": "service_healthy"}
    assert deps("workload-mysql") == {"mysql-source": "service_healthy"}
    assert services["registry-init"]["restart"] == "no"
    assert "BACKWARD" in services["registry-init"]["command"]


def test_databases_are_set_up_for_cdc(project: dict[str, Any]) -> None:
    services = project["services"]
    for name in ("pg-source", "pg-replica"):
        assert "wal_level=logical" in " ".join(services[name]["command"])
    ids = set()
    for name in ("mysql-source", "mysql-replica"):
        cmd = services[name]["command"]
        for flag in ("--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
                     "--log-bin=mysql-bin"):
            assert flag in cmd, (name, flag)
        ids.add(next(a for a in cmd if a.startswith("--server-id=")))
        assert any(a.startswith("--gtid-domain-id=") for a in cmd)
    assert len(ids) == 2, "server ids must differ"


def test_worker_environment_fills_every_variable_of_the_pipeline(project: dict[str, Any]) -> None:
    from cdc.config import load_config

    pipeline = ROOT / "deploy/docker/pipeline.yaml"
    for name in WORKERS:
        env = project["services"][name]["environment"]
        config = load_config(pipeline, env=env)
        hosts = {s.connection.host for s in config.sources} | {s.target.host for s in config.sinks}
        assert hosts <= set(project["services"]), hosts
        assert config.kafka.bootstrap_servers == "kafka:9092"
        assert config.schema_registry.url.startswith("http://registry:8080/")
        # Every password reaches the worker from the environment, none is in the file.
        for s in config.sources:
            assert s.connection.password is not None and s.connection.password.get_secret_value()
    assert "password: ${" in pipeline.read_text()


def test_passwords_are_taken_from_the_callers_environment() -> None:
    secret = "s3cr3t-from-env"
    p = compose_config(env=clean_env(PG_SOURCE_PASSWORD=secret))
    project = yaml.safe_load(p.stdout)
    assert project["services"]["pg-source"]["environment"]["POSTGRES_PASSWORD"] == secret
    assert project["services"]["source-pg"]["environment"]["PG_SOURCE_PASSWORD"] == secret


def test_monitoring_profile_adds_prometheus_and_grafana(project: dict[str, Any],
                                                        monitoring: dict[str, Any]) -> None:
    assert not MONITORING & set(project["services"])
    services = monitoring["services"]
    assert set(services) >= MONITORING
    mounts = {(s, m["target"]): Path(m["source"]) for s in MONITORING
              for m in services[s].get("volumes", []) if m["type"] == "bind"}
    assert mounts[("grafana", "/var/lib/grafana/dashboards/cdc.json")] == \
        ROOT / "deploy/observability/grafana-dashboard.json"
    assert mounts[("prometheus", "/etc/prometheus/alerts.yml")] == ROOT / "deploy/observability/alerts.yml"
    prom = yaml.safe_load(mounts[("prometheus", "/etc/prometheus/prometheus.yml")].read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    scraped = {n for job in prom["scrape_configs"] for sd in job["dns_sd_configs"] for n in sd["names"]}
    assert scraped == WORKERS
    provisioning = mounts[("grafana", "/etc/grafana/provisioning")]
    assert (provisioning / "datasources/prometheus.yml").exists()
    board = yaml.safe_load((provisioning / "dashboards/cdc.yml").read_text())
    assert board["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    for path in set(mounts.values()):
        assert path.exists(), path


def test_dockerfile_copies_only_files_that_exist() -> None:
    text = (ROOT / "deploy/docker/Dockerfile").read_text()
    copies = [line.split()[1:-1] for line in text.splitlines()
              if line.startswith("COPY ") and "--from=" not in line]
    assert copies
    for sources in copies:
        for src in sources:
            assert (ROOT / src).exists(), f"Dockerfile: COPY {src}: no such file in the build context"


def test_sinks_scale_and_sources_do_not(tmp_path: Path) -> None:
    override = tmp_path / "scale.yml"
    override.write_text(yaml.safe_dump({"services": {s: {"scale": 3} for s in SINKS}}))
    project = compose_project(files=(override,))
    for name in SINKS:
        svc = project["services"][name]
        assert svc["scale"] == 3
        assert "container_name" not in svc
        assert not svc.get("ports"), f"{name} publishes a host port: scaled copies would collide"
    # Compose itself refuses a scaled service with a fixed container name.
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"services": {"sink-pg": {"scale": 2, "container_name": "fixed"}}}))
    p = compose_config(files=(bad,), check=False)
    assert p.returncode != 0 and "container name must be unique" in p.stderr


def test_registry_healthcheck_uses_only_bash(project: dict[str, Any]) -> None:
    test = project["services"]["registry"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"]
    assert "/dev/tcp/127.0.0.1/9000" in test[3] and "/health/ready" in test[3]


def test_build_context_leaves_out_the_local_caches() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".cdc-local", ".venv", ".git"} <= ignored  # gigabytes of jars, Go modules, data
    text = (ROOT / "deploy/docker/Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            assert not set(line.split()[1:-1]) & ignored, f"Dockerfile copies an ignored path: {line}"
