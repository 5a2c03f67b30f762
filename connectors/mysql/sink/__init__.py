"""MySQL/MariaDB replica sink: the dialect the generic applier (cdc.sink) drives."""

from connectors.mysql.sink.dialect import (
    MySqlDialect,
    MySqlSession,
    create_dialect,
    origin_domain_id,
)

__all__ = ["MySqlDialect", "MySqlSession", "create_dialect", "origin_domain_id"]
