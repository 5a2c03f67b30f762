"""Snapshot replication's atomic switch on a PostgreSQL replica (cdc.spi.SwapsTables).

PostgreSQL DDL is transactional: renaming every live table aside and every
shadow table into its place inside one transaction makes readers see either
all previous copies or all new ones (a reader blocked by the renames' locks
reads once they commit). Locks are session-level advisory locks, so two
loaders never fill one replica's shadow tables at once. The renames wait at
most half a second for readers' locks, below the deadlock timeout: a reader
that holds one table and waits for another makes the swap give up and be
retried, instead of either of them failing with a deadlock.
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
        # Not DEFAULTS: a serial column's default names a sequence the live table owns,
        # which dropping the previous copy would then take along.
        return [f"CREATE TABLE {_sql(table)} (LIKE {_sql(like)} INCLUDING CONSTRAINTS "
                "INCLUDING INDEXES)"]

    def drop_table(self, table: TableName) -> list[str]:
        return [f"DROP TABLE IF EXISTS {_sql(table)}"]

    def swap_tables(
        self, swaps: Sequence[tuple[TableName, TableName, TableName | None]]
    ) -> list[str]:
        # A reader that holds one table and waits for another would deadlock with renames
        # taking them in another order: the swap gives up first (the caller retries), so
        # readers never see a deadlock error.
        out = ["SET LOCAL lock_timeout = '500ms'"]
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
