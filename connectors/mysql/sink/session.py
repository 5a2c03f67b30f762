"""A MariaDB/MySQL replica connection: the I/O session the generic applier drives.

:class:`MySqlSession` runs what :class:`~connectors.mysql.sink.dialect.MySqlDialect`
writes: session settings (sql_mode, UTC, READ COMMITTED, FOUND_ROWS), reading
the replica's catalog and rows (for planning and verify), transactions and
savepoints, batched upserts (values as SQL literals from
:mod:`connectors.mysql.sink.literals`, or runs of rows written straight from
the records' bytes by :mod:`connectors.mysql.sink.runs`), deletes and
whole-row matches for keyless tables. It decides no types and writes no DDL of
its own.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

import pymysql
import pymysql.cursors
from pymysql.constants import SERVER_STATUS

from cdc.errors import PrerequisiteError
from cdc.events import Column
from cdc.spi import (
    KeyRange,
    Problem,
    ReplicaColumn,
    ReplicaTable,
    RunEncoder,
    SinkDialect,
    TableName,
)
from connectors.mysql.sink.dialect import SQL_MODE, MySqlDialect, kind_of, quote
from connectors.mysql.sink.literals import fast_literals, native_row_text
from connectors.mysql.sink.runs import MAX_BYTES as _RUN_BYTES
from connectors.mysql.sink.runs import compile_encoder

log = logging.getLogger(__name__)

__all__ = ["MySqlSession"]

_DELETE_CHUNK: Final = 1_000
_ER_UNKNOWN_SYSTEM_VARIABLE: Final = 1193
_SINGLE: Final = struct.Struct("<f")
_STATEMENT_BYTES: Final = _RUN_BYTES  # PyMySQL's executemany statement size


class MySqlSession:
    """A connection to a MariaDB/MySQL replica (or, read-only, any server for verify)."""

    def __init__(self, dialect: MySqlDialect, conn: Any, *, read_only: bool = False) -> None:
        self.dialect: SinkDialect = dialect
        self._d = dialect
        self._conn = conn
        self._literal: Callable[[Any], str] = conn.escape
        self._fast_literals = fast_literals(conn)
        self._row_text = native_row_text(conn, self._fast_literals)
        self._upserts: dict[tuple[TableName, tuple[str, ...], tuple[str, ...]], tuple[str, str]] = {}
        self._in_tx = False
        with conn.cursor() as cur:
            cur.execute(f"SET SESSION sql_mode = '{SQL_MODE}'")
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            if read_only:
                cur.execute("SET SESSION TRANSACTION READ ONLY")
            cur.execute("SELECT DATABASE()")
            self.database: str | None = cur.fetchone()[0]
        conn.commit()

    def _schema(self, table: TableName) -> str | None:
        return table.schema or self.database

    def _end_read(self) -> None:
        if not self._in_tx:
            self._conn.commit()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(sql, tuple(params))
            return list(cur.fetchall())

    # -- reading

    def list_tables(self) -> list[TableName]:
        # A connection without a database (a source capturing several) sees every user database.
        rows = self._query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_TYPE = 'BASE TABLE' AND (TABLE_SCHEMA = DATABASE() OR (DATABASE() IS NULL "
            "AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', "
            "'sys'))) ORDER BY 1, 2"
        )
        self._end_read()
        return [TableName(s, t) for s, t in rows]

    def describe(self, table: TableName) -> ReplicaTable | None:
        schema = self._schema(table)
        rows = self._query(
            "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, CHARACTER_MAXIMUM_LENGTH, "
            "NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            [schema, table.name],
        )
        if not rows:
            self._end_read()
            return None
        pk = self._query(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            [schema, table.name],
        )
        self._end_read()
        columns = []
        for name, ctype, dtype, nullable, length, precision, scale, fraction in rows:
            dt = str(dtype).lower()
            if dt == "bit":
                length = precision
            columns.append(
                ReplicaColumn(
                    name=str(name),
                    type_text=str(ctype).lower(),
                    data_type=dt,
                    nullable=nullable == "YES",
                    length=None if length is None else int(length),
                    precision=None if precision is None or dt != "decimal" else int(precision),
                    scale=None if scale is None or dt != "decimal" else int(scale),
                    fraction=None if fraction is None else int(fraction),
                    kind=kind_of(dt, str(ctype)),
                )
            )
        return ReplicaTable(table, tuple(columns), tuple(str(r[0]) for r in pk))

    def count(self, table: TableName) -> int:
        rows = self._query(f"SELECT COUNT(*) FROM {self._d.table_sql(table)}")
        self._end_read()
        return int(rows[0][0])

    def key_bounds(self, table: TableName, column: str) -> tuple[Any, Any]:
        c = quote(column)
        rows = self._query(f"SELECT MIN({c}), MAX({c}) FROM {self._d.table_sql(table)}")
        self._end_read()
        return rows[0][0], rows[0][1]

    def scan(
        self, table: TableName, columns: Sequence[str], *, key_range: KeyRange | None = None
    ) -> Iterator[tuple[Any, ...]]:
        sql = f"SELECT {', '.join(quote(c) for c in columns)} FROM {self._d.table_sql(table)}"
        params: tuple[Any, ...] = ()
        if key_range is not None:
            col, lo, hi = key_range
            sql += f" WHERE {quote(col)} >= %s AND {quote(col)} < %s"
            params = (lo, hi)
        with self._conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(sql, params)
            while True:
                rows = cur.fetchmany(10_000)
                if not rows:
                    break
                yield from rows
        self._end_read()

    # -- schema changes

    def execute_ddl(self, statements: Sequence[str]) -> None:
        if self._in_tx:
            raise RuntimeError("DDL inside a data transaction")
        with self._conn.cursor() as cur:
            for sql in statements:
                log.info("replica DDL: %s", sql)
                cur.execute(sql, ())
        self._conn.commit()

    def invalidate(self, table: TableName) -> None:
        """Nothing is cached per table."""

    # -- transactions

    def begin(self) -> None:
        self._conn.commit()  # end any implicit read transaction
        self._conn.begin()
        self._in_tx = True

    def commit(self) -> None:
        self._conn.commit()
        self._in_tx = False

    def rollback(self) -> None:
        self._in_tx = False
        if self._conn.open:
            self._conn.rollback()

    def savepoint(self) -> None:
        self.execute("SAVEPOINT cdc_change")

    def rollback_to_savepoint(self) -> None:
        self.execute("ROLLBACK TO SAVEPOINT cdc_change")

    def release_savepoint(self) -> None:
        self.execute("RELEASE SAVEPOINT cdc_change")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._conn.cursor() as cur:
            return int(cur.execute(sql, tuple(params)))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._query(sql, params)

    def origin_problems(self, origin: str) -> list[Problem]:
        """cdc.spi.ChecksOrigin: the replica must know ``skip_replication`` (MariaDB)."""
        try:
            self._query("SELECT @@SESSION.skip_replication")
        except pymysql.err.OperationalError as e:
            if e.args and e.args[0] == _ER_UNKNOWN_SYSTEM_VARIABLE:
                return [Problem(
                    f"sink origin {origin!r} needs MariaDB's skip_replication variable, which "
                    "the replica lacks", "remove `origin` from this sink, or replicate into "
                    "MariaDB", key="origin")]
            raise
        return []

    def set_origin(self, origin: str) -> None:
        """Mark the session's transactions with MariaDB's ``skip_replication`` flag
        (in every event header), which a source with skip_replicated_changes drops;
        ``@cdc_origin`` names the origin for anyone reading the session."""
        try:
            with self._conn.cursor() as cur:
                cur.execute("SET SESSION skip_replication = 1")
                cur.execute("SET @cdc_origin = %s", (origin,))
        except pymysql.err.OperationalError as e:
            if e.args and e.args[0] == _ER_UNKNOWN_SYSTEM_VARIABLE:
                raise PrerequisiteError(
                    f"sink origin {origin!r}: the replica has no skip_replication variable "
                    f"({e.args[-1]}); marking a sink's writes needs MariaDB",
                    hint="remove `origin` from this sink, or replicate into MariaDB") from e
            raise
        self._conn.commit()

    # -- writing

    def upsert(self, table: ReplicaTable, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Multi-row ``INSERT .. ON DUPLICATE KEY UPDATE`` statements of up to
        :data:`_STATEMENT_BYTES`, the values written as SQL literals here (as PyMySQL
        would, with its encoders) rather than through ``executemany``'s per-value
        escaping, which cost more than the server's work."""
        if not rows:
            return
        head, tail = self._upsert_parts(table, tuple(columns))
        literal = self._literal
        get = self._fast_literals.get
        row_text = self._row_text
        # How PyMySQL's escape reads the session now (NO_BACKSLASH_ESCAPES: quotes doubled).
        no_backslash = bool(self._conn.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES)

        def fallback(v: Any) -> str:
            return (get(type(v)) or literal)(v)

        batch: list[str] = []
        size = 0
        with self._conn.cursor() as cur:
            for row in rows:
                if row_text is not None:
                    text = row_text(row, fallback, no_backslash)
                else:
                    text = "(" + ",".join([(get(type(v)) or literal)(v) for v in row]) + ")"
                batch.append(text)
                size += len(text) + 1
                if size >= _STATEMENT_BYTES:
                    cur.execute(head + ",".join(batch) + tail)
                    batch = []
                    size = 0
            if batch:
                cur.execute(head + ",".join(batch) + tail)

    def _upsert_parts(self, table: ReplicaTable, cols: tuple[str, ...]) -> tuple[str, str]:
        """The text before and after the VALUES rows of the table's multi-row upsert."""
        parts = self._upserts.get((table.name, cols, table.primary_key))
        if parts is None:
            one = self._d.upsert(table.name, cols, table.primary_key, 1)
            head, _, tail = one.partition(" VALUES (")
            tail = tail.partition(")")[2]  # the placeholders hold no ')'
            # Run without parameters: the %% that quote() doubled are single again.
            parts = (head.replace("%%", "%") + " VALUES ", tail.replace("%%", "%"))
            self._upserts[(table.name, cols, table.primary_key)] = parts
        return parts

    # -- runs (cdc.spi.CopiesRuns)

    def run_encoder(
        self,
        envelope: Mapping[str, Any],
        named: Mapping[str, Any],
        row_columns: Sequence[Column],
        columns: Sequence[str],
        key: Sequence[str],
        replica: ReplicaTable,
        updates: bool = False,
    ) -> RunEncoder | None:
        """The compiled encoder of :mod:`.runs` (None when a column's type has no run
        form: that table keeps the general path)."""
        return compile_encoder(envelope, named, row_columns, columns, key, replica, updates=updates)

    def insert_run(
        self, table: ReplicaTable, columns: Sequence[str], payload: bytes, rows: int
    ) -> None:
        """``payload`` (a run's VALUES rows) upserted in one statement, as :meth:`upsert`
        writes full rows: new rows need no other statement here (a key that exists
        after all is updated in place, as the general path would)."""
        self._run(table, columns, payload)

    def update_run(
        self, table: ReplicaTable, columns: Sequence[str], payload: bytes, rows: int
    ) -> None:
        """``payload`` (an update run's full rows) upserted in one statement."""
        self._run(table, columns, payload)

    def _run(self, table: ReplicaTable, columns: Sequence[str], payload: bytes) -> None:
        head, tail = self._upsert_parts(table, tuple(columns))
        with self._conn.cursor() as cur:
            if self._conn.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
                # The run's strings escape backslashes: the sink's own sql_mode again.
                cur.execute(f"SET SESSION sql_mode = '{SQL_MODE}'")
            # PyMySQL sends bytes as they are (the connection's utf8mb4, as the rows are).
            cur.execute(head.encode() + payload + tail.encode())

    def delete(self, table: ReplicaTable, keys: Sequence[Sequence[Any]]) -> None:
        key = table.primary_key
        with self._conn.cursor() as cur:
            for i in range(0, len(keys), _DELETE_CHUNK):
                chunk = keys[i : i + _DELETE_CHUNK]
                cur.execute(self._d.delete(table.name, key, len(chunk)), [v for k in chunk for v in k])

    def truncate(self, table: ReplicaTable) -> None:
        self.execute(self._d.truncate(table.name))

    def move(
        self, table: ReplicaTable, old_key: Sequence[Any], columns: Sequence[str], row: Sequence[Any]
    ) -> bool:
        sets = ", ".join(f"{quote(c)} = %s" for c in columns)
        where = " AND ".join(f"{quote(k)} = %s" for k in table.primary_key)
        return self.execute(
            f"UPDATE {self._d.table_sql(table.name)} SET {sets} WHERE {where}", [*row, *old_key]
        ) > 0

    def _match(
        self, table: ReplicaTable, columns: Sequence[str], row: Sequence[Any]
    ) -> tuple[str, list[Any]]:
        """``WHERE`` text and parameters matching a whole row, NULL-safe."""
        conds = []
        params: list[Any] = []
        for name, v in zip(columns, row, strict=True):
            c = quote(name)
            if v is None:
                conds.append(f"{c} IS NULL")
                continue
            rc = table.column(name)
            if rc is not None and rc.data_type == "json":  # MySQL's JSON type compares by value
                conds.append(f"{c} = CAST(%s AS JSON)")
            else:
                conds.append(f"{c} = %s")
            if type(v) is float and rc is not None and rc.data_type == "float":
                # A FLOAT column holds the value rounded to single precision and compares
                # it as that double: round the parameter alike (0.1 -> 0.10000000149...).
                with contextlib.suppress(OverflowError):  # (no row can hold it)
                    v = _SINGLE.unpack(_SINGLE.pack(v))[0]
            params.append(v)
        return " AND ".join(conds) or "TRUE", params

    def delete_row(self, table: ReplicaTable, columns: Sequence[str], row: Sequence[Any]) -> bool:
        where, params = self._match(table, columns, row)
        return self.execute(
            f"DELETE FROM {self._d.table_sql(table.name)} WHERE {where} LIMIT 1", params
        ) > 0

    def update_row(
        self,
        table: ReplicaTable,
        columns: Sequence[str],
        row: Sequence[Any],
        set_columns: Sequence[str],
        values: Sequence[Any],
    ) -> bool:
        where, params = self._match(table, columns, row)
        sets = ", ".join(f"{quote(c)} = %s" for c in set_columns)
        return self.execute(
            f"UPDATE {self._d.table_sql(table.name)} SET {sets} WHERE {where} LIMIT 1",
            [*values, *params],
        ) > 0

    def close(self) -> None:
        try:
            self._conn.close()
        except pymysql.err.Error as e:  # already closed or broken: nothing to release
            log.debug("closing the replica connection: %s", e)
