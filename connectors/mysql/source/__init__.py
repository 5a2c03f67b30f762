"""MySQL/MariaDB source: snapshot + binlog stream behind the SourceConnector SPI."""

from connectors.mysql.source.connector import MySqlSource, table_filter

__all__ = ["MySqlSource", "table_filter"]
