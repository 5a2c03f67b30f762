"""Every container command of docker-compose.yml and of the Kubernetes manifests, against the real CLI.

Each `cdc ...` command is parsed by the real click command tree (unknown
commands or options, bad values and missing files fail), with the container
paths replaced by the files mounted there; its `--name` must name a source or
sink of the pipeline file; and `cdc config check` validates that file with the
container's exact environment. Each `python /opt/cdc/X.py ...` command is
parsed by that script's own argument parser.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.deploy.helpers import (
    ROOT,
    clean_env,
    cli_parse,
    compose_project,
    kustomize_build,
    load_script,
)

pytestmark = pytest.mark.timeout(1800)  # the first run builds the compose CLI
WORKER_IMAGE = "cdc-worker"
DOCKER_SCRIPTS = {"registry_init.py", "workload.py"}


def _dockerfile_copies() -> set[str]:
    text = (ROOT / "deploy/docker/Dockerfile").read_text()
    return {Path(p).name for line in re.findall(r"^COPY (deploy/docker/.+) /opt/cdc/$", text, re.M)
            for p in line.split()}


def _config_check(pipeline: Path, env: dict[str, str]) -> None:
    p = subprocess.run([sys.executable, "-m", "cdc.cli", "config", "check", str(pipeline)],
                       capture_output=True, text=True, timeout=120, env=clean_env(**env), cwd=ROOT)
    assert p.returncode == 0, f"cdc config check {pipeline} with the container's env:\n{p.stdout}{p.stderr}"


def _check_command(where: str, command: list[str], path_map: dict[str, Path],
                   env: dict[str, str]) -> str:
    if command[0] == "python":
        script = command[1]
        assert script.startswith("/opt/cdc/"), f"{where}: {script} is not a script of the image"
        name = Path(script).name
        assert name in _dockerfile_copies(), f"{where}: the Dockerfile does not copy {name}"
        mod = load_script(ROOT / "deploy/docker" / name, f"cdc_docker_{name[:-3]}")
        mod.build_parser().parse_args(command[2:])  # exits (SystemExit 2) on bad arguments
        return name
    what, params = cli_parse(command, path_map)
    config_file = params.get("config_file") or params.get("config_path") or params.get("file")
    assert isinstance(config_file, Path), f"{where}: {command} names no pipeline file"
    from cdc.config import load_config

    config = load_config(config_file, env=env)
    if what == "source":
        assert params["name"] in {s.name for s in config.sources}, f"{where}: {params['name']}"
    elif what == "sink":
        names = params.get("names") or (params.get("name"),)
        assert set(names) <= {s.name for s in config.sinks}, f"{where}: {names}"
    else:
        pytest.fail(f"{where}: {command}: a worker runs `cdc source` or `cdc sink`, not `cdc {what}`")
    _config_check(config_file, env)
    return what


def test_every_compose_container_command_is_accepted_by_the_real_cli() -> None:
    project = compose_project("--profile", "monitoring")
    checked = {}
    for name, svc in project["services"].items():
        if not svc["image"].startswith(WORKER_IMAGE):
            continue
        path_map = {m["target"]: Path(m["source"]) for m in svc.get("volumes", []) if m["type"] == "bind"}
        checked[name] = _check_command(f"compose service {name}", svc["command"], path_map,
                                       svc.get("environment") or {})
    assert checked == {"registry-init": "registry_init.py", "workload-pg": "workload.py",
                       "workload-mysql": "workload.py", "source-pg": "source", "source-mysql": "source",
                       "sink-pg": "sink", "sink-mysql": "sink"}


def _manifest_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(by_name[("ConfigMap", source["configMapRef"]["name"])]["data"])
        else:
            secret = by_name[("Secret", source["secretRef"]["name"])]
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    for item in container.get("env", []):
        env[item["name"]] = item["value"]
    return env


@pytest.mark.parametrize("overlay", ["base", "overlays/example"])
def test_every_kubernetes_container_command_is_accepted_by_the_real_cli(overlay: str,
                                                                       tmp_path: Path) -> None:
    docs = kustomize_build(ROOT / "deploy/kubernetes" / overlay)
    if overlay == "base":  # the base leaves the Secret to the overlay (or to you)
        docs.append({"kind": "Secret", "metadata": {"name": "cdc-credentials"}, "data": {
            k: base64.b64encode(b"placeholder").decode()
            for k in ("PG_SOURCE_PASSWORD", "PG_REPLICA_PASSWORD", "MYSQL_SOURCE_PASSWORD",
                      "MYSQL_REPLICA_PASSWORD")}})
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    seen = set()
    for dep in (d for d in docs if d["kind"] == "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            path_map: dict[str, Path] = {}
            for mount in container.get("volumeMounts", []):
                cm = volumes[mount["name"]].get("configMap")
                if cm:
                    folder = tmp_path / dep["metadata"]["name"] / mount["name"]
                    folder.mkdir(parents=True)
                    for key, text in configmaps[cm["name"]]["data"].items():
                        (folder / key).write_text(text)
                        path_map[f"{mount['mountPath']}/{key}"] = folder / key
            env = _manifest_env(docs, container)
            seen.add(_check_command(f"{overlay} Deployment {dep['metadata']['name']}",
                                    container["command"], path_map, env))
    assert seen == {"source", "sink"}
