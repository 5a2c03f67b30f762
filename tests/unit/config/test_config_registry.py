"""The registry finds connectors by kind through entry points, never by import."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from cdc.config.sinks import SinkConfigBase
from cdc.config.sources import SourceConfigBase
from cdc.errors import ConfigError
from cdc.registry import GROUP, ConnectorRegistry, get_connector
from cdc.spi import Connector


def test_project_entry_points_load_the_connectors(registry: ConnectorRegistry) -> None:
    assert registry.kinds() == ("mysql", "postgres")
    for connector in registry.connectors():
        assert isinstance(connector, Connector)
        src = registry.source_config_model(connector.kind)
        snk = registry.sink_config_model(connector.kind)
        assert src is not None and issubclass(src, SourceConfigBase)
        assert snk is not None and issubclass(snk, SinkConfigBase)


def test_connectors_are_cached(registry: ConnectorRegistry) -> None:
    assert registry.get("postgres") is registry.get("postgres")


def test_default_registry_is_used(registry: ConnectorRegistry) -> None:
    assert get_connector("mysql") is registry.get("mysql")


def test_unknown_kind_lists_known_kinds(registry: ConnectorRegistry) -> None:
    with pytest.raises(ConfigError) as info:
        registry.get("mysqll")
    assert "unknown connector kind 'mysqll'" in str(info.value)
    assert info.value.hint == "did you mean 'mysql'? known kinds: mysql, postgres"


def test_empty_registry_says_to_install() -> None:
    with pytest.raises(ConfigError) as info:
        ConnectorRegistry().get("postgres")
    assert "pip install -e ." in str(info.value)


def test_broken_entry_point_is_a_clear_error() -> None:
    reg = ConnectorRegistry([EntryPoint("broken", "no_such_module_xyz:CONNECTOR", GROUP)])
    with pytest.raises(
        ConfigError, match=r"connector 'broken' .* failed to load: ModuleNotFoundError"
    ):
        reg.get("broken")


def test_entry_point_kind_must_match() -> None:
    reg = ConnectorRegistry([EntryPoint("pg", "connectors.postgres:CONNECTOR", GROUP)])
    with pytest.raises(ConfigError, match="loads a connector of kind 'postgres'"):
        reg.get("pg")


def test_entry_point_must_be_a_connector() -> None:
    reg = ConnectorRegistry(
        [EntryPoint("postgres", "connectors.postgres.config:PostgresConnection", GROUP)]
    )
    with pytest.raises(ConfigError, match=r"is not a cdc\.spi\.Connector"):
        reg.get("postgres")


def test_two_packages_claiming_a_kind_are_refused() -> None:
    reg = ConnectorRegistry(
        [
            EntryPoint("postgres", "connectors.postgres:CONNECTOR", GROUP),
            EntryPoint("postgres", "other_pkg:CONNECTOR", GROUP),
        ]
    )
    with pytest.raises(ConfigError, match="registered by several packages"):
        reg.get("postgres")


def test_source_only_connector_offers_no_sink() -> None:
    from connectors.postgres.config import PostgresSourceConfig

    class SourceOnly:
        kind = "pgsrc"

        def source_config_model(self) -> type[Any]:
            return PostgresSourceConfig

        def sink_config_model(self) -> type[Any]:
            raise NotImplementedError

        def create_source(self, config: Any, *, name: str) -> Any:
            raise NotImplementedError

        def create_dialect(self) -> Any:
            raise NotImplementedError

    reg = ConnectorRegistry(connectors=[SourceOnly()])
    assert reg.source_config_model("pgsrc") is PostgresSourceConfig
    assert reg.sink_config_model("pgsrc") is None


def test_every_connector_supplies_a_sink_dialect(registry: ConnectorRegistry) -> None:
    from cdc.spi import SinkDialect

    for connector in registry.connectors():
        assert isinstance(connector.create_dialect(), SinkDialect), connector.kind
