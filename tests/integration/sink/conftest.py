"""Fixtures of the sink integration tests: replica DSNs by kind, a registry client."""

from __future__ import annotations

import pytest

from cdc.serde import RegistryClient


@pytest.fixture(scope="session")
def registry(schema_registry_url: str) -> RegistryClient:
    return RegistryClient(schema_registry_url)


@pytest.fixture(params=["postgres", "mysql"])
def replica(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, dsn) of each replica database."""
    kind = request.param
    name = "pg_replica_dsn" if kind == "postgres" else "mysql_replica_url"
    return kind, request.getfixturevalue(name)
