"""PostgreSQL connector: logical-replication source and replica sink dialect."""

from __future__ import annotations

from typing import Any

from cdc.spi import Connector, SinkDialect, SourceConnector
from connectors.postgres.config import PostgresSinkConfig, PostgresSourceConfig


class PostgresConnector:
    kind = "postgres"

    def source_config_model(self) -> type[PostgresSourceConfig]:
        return PostgresSourceConfig

    def sink_config_model(self) -> type[PostgresSinkConfig]:
        return PostgresSinkConfig

    def create_source(self, config: Any, *, name: str) -> SourceConnector:
        raise NotImplementedError("the PostgreSQL source arrives with issue #4")

    def create_dialect(self) -> SinkDialect:
        raise NotImplementedError("the PostgreSQL sink dialect arrives with issue #6")


CONNECTOR: Connector = PostgresConnector()
