"""PostgreSQL connector: logical-replication source and replica sink dialect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cdc.events import TableId
from cdc.spi import (
    Connector,
    PositionCodec,
    SinkDialect,
    SourceBlock,
    SourceConnector,
    TableName,
)
from connectors.postgres.config import PostgresSinkConfig, PostgresSourceConfig


class PostgresConnector:
    kind = "postgres"

    def source_config_model(self) -> type[PostgresSourceConfig]:
        return PostgresSourceConfig

    def sink_config_model(self) -> type[PostgresSinkConfig]:
        return PostgresSinkConfig

    def create_source(self, config: Any, *, name: str) -> SourceConnector:
        # Imported here so loading the registry does not import psycopg.
        from connectors.postgres.source.connector import PostgresSource

        if not isinstance(config, PostgresSourceConfig):
            raise TypeError(f"expected a PostgresSourceConfig, got {type(config).__name__}")
        return PostgresSource(config, name=name)

    def release_source(self, config: Any, *, name: str) -> str | None:
        from connectors.postgres.source.connector import drop_slot

        if drop_slot(config, name):
            return f"dropped replication slot {config.slot_name}"
        return None

    def create_dialect(self) -> SinkDialect:
        from connectors.postgres.sink.dialect import PostgresDialect

        return PostgresDialect()

    def position_codec(self) -> PositionCodec:
        from connectors.postgres.position_text import CODEC

        return CODEC

    def source_blocks(self) -> Sequence[SourceBlock]:
        from connectors.postgres.sourceblock import BLOCKS

        return BLOCKS

    def table_id(self, table: TableName) -> TableId:
        return TableId("", table.schema, table.name)


CONNECTOR: Connector = PostgresConnector()
