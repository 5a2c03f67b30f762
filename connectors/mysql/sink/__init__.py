"""MySQL/MariaDB replica sink: the dialect the generic applier (cdc.sink) drives."""

from connectors.mysql.sink.dialect import MySqlDialect, create_dialect
from connectors.mysql.sink.session import MySqlSession

__all__ = ["MySqlDialect", "MySqlSession", "create_dialect"]
