"""PostgreSQL replica sink: the dialect the generic applier (cdc.sink) drives."""

from connectors.postgres.sink.dialect import PostgresDialect, PostgresSession, create_dialect

__all__ = ["PostgresDialect", "PostgresSession", "create_dialect"]
