"""MySQL/MariaDB connector: binlog source and replica sink dialect."""

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
from connectors.mysql.config import MySqlSinkConfig, MySqlSourceConfig
from connectors.mysql.driver import import_pymysql

import_pymysql()  # before any module of the package imports PyMySQL (memory)


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

    def position_codec(self) -> PositionCodec:
        from connectors.mysql.position import CODEC

        return CODEC

    def source_blocks(self) -> Sequence[SourceBlock]:
        from connectors.mysql.sourceblock import BLOCKS

        return BLOCKS

    def table_id(self, table: TableName) -> TableId:
        return TableId(table.schema or "", None, table.name)


CONNECTOR: Connector = MySqlConnector()
