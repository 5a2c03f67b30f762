"""Fixtures for config tests: the project's own connectors, without installing it.

The registry is built from the entry points pyproject.toml declares, so these
tests exercise the same wiring as an installed cdc while staying pure.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc import registry as registry_module
from cdc.registry import GROUP, ConnectorRegistry

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "local" / "pipeline.example.yaml"
SECRET = "Zq9-very-distinctive-s3cret-Xw7"


def project_registry() -> ConnectorRegistry:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    eps = meta["project"]["entry-points"][GROUP]
    return ConnectorRegistry([EntryPoint(name, value, GROUP) for name, value in eps.items()])


@pytest.fixture(autouse=True)
def registry() -> Iterator[ConnectorRegistry]:
    reg = project_registry()
    saved = registry_module._default
    registry_module.set_default_registry(reg)
    yield reg
    registry_module.set_default_registry(saved)


MINIMAL: dict[str, Any] = {
    "kafka": {"bootstrap_servers": "127.0.0.1:19092"},
    "schema_registry": {"url": "http://127.0.0.1:18081/apis/ccompat/v7"},
    "sources": [
        {
            "name": "pg_main",
            "kind": "postgres",
            "connection": {
                "host": "127.0.0.1",
                "port": 15432,
                "database": "cdc_source",
                "user": "postgres",
            },
        },
        {
            "name": "my_main",
            "kind": "mysql",
            "connection": {"host": "127.0.0.1", "port": 13306, "user": "root"},
            "server_id": 5401,
        },
    ],
    "sinks": [
        {
            "name": "replica_pg",
            "kind": "postgres",
            "topics": ["pg_main.public.*"],
            "target": {
                "host": "127.0.0.1",
                "port": 15433,
                "database": "cdc_replica",
                "user": "postgres",
            },
        }
    ],
}


@pytest.fixture
def minimal() -> dict[str, Any]:
    """A small valid configuration as a dict, to break in one place per test."""
    return copy.deepcopy(MINIMAL)


@pytest.fixture
def write(tmp_path: Path) -> Any:
    """Write a config (dict or YAML text) to a file and return its path."""

    def _write(content: dict[str, Any] | str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return _write
