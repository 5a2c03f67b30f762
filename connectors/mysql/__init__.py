"""MySQL/MariaDB connector: binlog source and replica sink dialect."""

from __future__ import annotations

from typing import Any

from cdc.spi import Connector, SinkDialect, SourceConnector
from connectors.mysql.config import MySqlSinkConfig, MySqlSourceConfig


class MySqlConnector:
    kind = "mysql"

    def source_config_model(self) -> type[MySqlSourceConfig]:
        return MySqlSourceConfig

    def sink_config_model(self) -> type[MySqlSinkConfig]:
        return MySqlSinkConfig

    def create_source(self, config: Any, *, name: str) -> SourceConnector:
        from connectors.mysql.source import MySqlSource  # imported on use: heavy deps

        return MySqlSource.from_config(config, name=name)

    def release_source(self, config: Any, *, name: str) -> str | None:
        return None  # a binlog reader holds nothing on the server

    def create_dialect(self) -> SinkDialect:
        from connectors.mysql.sink.dialect import MySqlDialect

        return MySqlDialect()


CONNECTOR: Connector = MySqlConnector()
