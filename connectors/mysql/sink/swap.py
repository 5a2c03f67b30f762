"""Snapshot replication's atomic switch on a MariaDB/MySQL replica (cdc.spi.SwapsTables).

MySQL DDL commits on its own, but one ``RENAME TABLE a TO a_old, b_new TO b,
...`` statement is atomic: other sessions see every rename or none. All
swaps of a run are therefore one statement. Locks are ``GET_LOCK`` named
locks (session-level), so two loaders never fill one replica at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdc.spi import TableName


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``").replace("%", "%%") + "`"


def _sql(table: TableName) -> str:
    return f"{_quote(table.schema)}.{_quote(table.name)}" if table.schema else _quote(table.name)


class MySqlSwaps:
    """The SwapsTables half of :class:`connectors.mysql.sink.dialect.MySqlDialect`."""

    def clone_table(self, table: TableName, like: TableName) -> list[str]:
        return [f"CREATE TABLE {_sql(table)} LIKE {_sql(like)}"]

    def drop_table(self, table: TableName) -> list[str]:
        return [f"DROP TABLE IF EXISTS {_sql(table)}"]

    def swap_tables(
        self, swaps: Sequence[tuple[TableName, TableName, TableName | None]]
    ) -> list[str]:
        renames = []
        for live, shadow, old in swaps:
            if old is not None:
                renames.append(f"{_sql(live)} TO {_sql(old)}")
            renames.append(f"{_sql(shadow)} TO {_sql(live)}")
        # Wait at most 2 s for readers' metadata locks (the caller retries), rather than
        # queueing every new reader behind a rename that waits for a long one.
        return ["SET SESSION lock_wait_timeout = 2",
                "RENAME TABLE " + ", ".join(renames)] if renames else []

    def try_lock(self, name: str) -> str:
        return f"SELECT GET_LOCK('{_literal(name)}', 0) = 1"

    def unlock(self, name: str) -> str:
        return f"SELECT RELEASE_LOCK('{_literal(name)}')"


def _literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "''").replace("%", "%%")
