"""Snapshot replication's atomic switch on a PostgreSQL replica (cdc.spi.SwapsTables).

PostgreSQL DDL is transactional: renaming every live table aside and every
shadow table into its place inside one transaction makes readers see either
all previous copies or all new ones (a reader blocked by the renames' locks
reads once they commit). Locks are session-level advisory locks, so two
loaders never fill one replica's shadow tables at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdc.spi import TableName


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""').replace("%", "%%") + '"'


def _sql(table: TableName) -> str:
    return f"{_quote(table.schema)}.{_quote(table.name)}" if table.schema else _quote(table.name)


class PostgresSwaps:
    """The SwapsTables half of :class:`connectors.postgres.sink.dialect.PostgresDialect`."""

    def clone_table(self, table: TableName, like: TableName) -> list[str]:
        return [f"CREATE TABLE {_sql(table)} (LIKE {_sql(like)} INCLUDING DEFAULTS "
                "INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING GENERATED)"]

    def drop_table(self, table: TableName) -> list[str]:
        return [f"DROP TABLE IF EXISTS {_sql(table)}"]

    def swap_tables(
        self, swaps: Sequence[tuple[TableName, TableName, TableName | None]]
    ) -> list[str]:
        out = []
        for live, shadow, old in swaps:
            if old is not None:
                out.append(f"ALTER TABLE {_sql(live)} RENAME TO {_quote(old.name)}")
            out.append(f"ALTER TABLE {_sql(shadow)} RENAME TO {_quote(live.name)}")
        return out

    def try_lock(self, name: str) -> str:
        return f"SELECT pg_try_advisory_lock(hashtext('{_literal(name)}'))"

    def unlock(self, name: str) -> str:
        return f"SELECT pg_advisory_unlock(hashtext('{_literal(name)}'))"


def _literal(text: str) -> str:
    return text.replace("'", "''").replace("%", "%%")
