"""docker-compose.yml offers the same stack as `make up`: ports, env names, CLI commands."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from cdc.cli import main as cli
from tests.fixtures.services import KEYS

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _stack() -> Any:
    spec = importlib.util.spec_from_file_location("cdc_local_stack", ROOT / "deploy/local/stack.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["cdc_local_stack"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _host_ports(service: dict[str, Any]) -> set[int]:
    out = set()
    for mapping in service.get("ports", []):
        parts = str(mapping).split(":")
        out.add(int(parts[-2]))
    return out


def test_compose_exposes_the_local_stack_ports() -> None:
    services = _compose()["services"]
    stack = _stack()
    for name, svc in stack.SERVICES.items():
        if name == "pg-registry":
            continue  # internal to the registry in compose
        assert name in services, f"docker-compose.yml lacks service {name}"
        assert svc.port - stack.PORT_OFFSET in _host_ports(services[name]), name


def test_compose_databases_are_set_up_for_cdc() -> None:
    services = _compose()["services"]
    anchors = _compose()
    pg_cmd = anchors["x-postgres"]["command"]
    assert "wal_level=logical" in pg_cmd
    for name in ("mysql-source", "mysql-replica"):
        cmd = services[name]["command"]
        for flag in ("--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
                     "--log-bin"):
            assert flag in cmd, (name, flag)
    ids = {services[n]["command"].split("--server-id=")[1].split()[0]
           for n in ("mysql-source", "mysql-replica")}
    assert len(ids) == 2, "server ids must differ"


def test_worker_env_names_and_command_match_the_cli() -> None:
    worker = _compose()["services"]["cdc"]
    assert set(worker["environment"]) == set(KEYS)
    assert (ROOT / worker["build"]["dockerfile"]).exists()
    command = list(worker["command"])
    assert command[0] == "cdc"
    group: click.Command = cli
    for word in command[1:]:
        if not isinstance(group, click.Group) or word not in group.commands:
            break
        group = group.commands[word]
    assert not isinstance(group, click.Group), f"{command} does not name a cdc command"


def test_worker_pipeline_config_is_valid() -> None:
    from cdc.config import load_config

    config = load_config(ROOT / "deploy/docker/pipeline.yaml", env={})
    assert config.kafka.bootstrap_servers == "kafka:9092"
    hosts = {s.connection.host for s in config.sources} | {s.target.host for s in config.sinks}
    assert hosts <= set(_compose()["services"]), hosts
