"""PostgreSQL replica sink: the dialect the generic applier (cdc.sink) drives."""

from connectors.postgres.sink.dialect import PostgresDialect, create_dialect
from connectors.postgres.sink.session import PostgresSession

__all__ = ["PostgresDialect", "PostgresSession", "create_dialect"]
