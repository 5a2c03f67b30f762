"""The I/O session with a PostgreSQL replica (or, read-only, any PostgreSQL for verify).

:class:`PostgresSession` is what :meth:`PostgresDialect.connect
<connectors.postgres.sink.dialect.PostgresDialect.connect>` and
``open_reader`` return, the :class:`~cdc.spi.SinkSession` of this
connector: it pins the session settings the value converters rely on,
describes replica tables from the catalog, scans them for verify, runs DDL,
and writes batches in transactions (bound to the sink's replication origin). Batches of
fewer than :data:`COPY_THRESHOLD` rows use multi-row ``INSERT .. ON
CONFLICT`` and ``DELETE .. WHERE k IN``; larger ones ``COPY`` into a
per-session temporary staging table and then ``INSERT .. SELECT`` /
``DELETE .. USING``. Those ``COPY``s are binary where every column's type
allows it (:mod:`.binary`), else text. Rows the applier knows are new
(:meth:`PostgresSession.insert_new`: source inserts and snapshot reads above
the checkpoint, snapshot replication's shadow tables) are copied straight into
the table, falling back to the upsert when a key exists after all; so are runs
of such rows that the applier hands over as binary COPY tuples built straight
from the records' bytes (:meth:`PostgresSession.insert_run`, :mod:`.copyrun`). Tables without a primary key are matched by the whole row,
NULL-safe.

The statement texts come from :mod:`.dialect` (through the dialect object
the session holds); values arrive already converted (:mod:`.values`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

import psycopg

from cdc.events import Column, Kind
from cdc.spi import (
    KeyRange,
    Problem,
    ReplicaColumn,
    ReplicaTable,
    RunEncoder,
    SinkDialect,
    TableName,
)
from connectors.postgres.origin import problems as origin_problems
from connectors.postgres.origin import setup_session
from connectors.postgres.sink.binary import REFUSALS, binary_types, install_strict_dumpers
from connectors.postgres.sink.copyrun import HEADER as RUN_HEADER
from connectors.postgres.sink.copyrun import TRAILER as RUN_TRAILER
from connectors.postgres.sink.copyrun import compile_encoder
from connectors.postgres.sink.dialect import PostgresDialect, quote

log = logging.getLogger(__name__)

COPY_THRESHOLD: Final = 1_000
_MAX_PARAMS: Final = 65_535
# Refusals of a binary COPY (a value its column type's binary dumper does not take)
# after which a (table, columns) pair is written as text for the rest of the session.
_BINARY_REFUSALS: Final = 3
# Batches of new rows written by upsert, without a plain COPY attempt, after one met
# existing keys (a re-snapshot into an existing replica table meets them in every
# batch: this bounds the wasted attempts to one in this many plus one).
_UPSERTS_AFTER_COLLISION: Final = 32

_KIND_OF_TYPE: Final[dict[str, Kind]] = {
    "bool": Kind.BOOLEAN,
    "int2": Kind.INT16,
    "int4": Kind.INT32,
    "int8": Kind.INT64,
    "float4": Kind.FLOAT32,
    "float8": Kind.FLOAT64,
    "numeric": Kind.DECIMAL,
    "money": Kind.DECIMAL,
    "varchar": Kind.STRING,
    "text": Kind.STRING,
    "bpchar": Kind.STRING,
    "name": Kind.STRING,
    "citext": Kind.STRING,
    "json": Kind.JSON,
    "jsonb": Kind.JSON,
    "bytea": Kind.BYTES,
    "bit": Kind.BITS,
    "varbit": Kind.STRING,
    "uuid": Kind.UUID,
    "date": Kind.DATE,
    "time": Kind.TIME,
    "timetz": Kind.TIMETZ,
    "timestamp": Kind.TIMESTAMP,
    "timestamptz": Kind.TIMESTAMPTZ,
    "interval": Kind.INTERVAL,
}


def _typmod_facts(typname: str, typmod: int) -> tuple[int | None, int | None, int | None, int | None]:
    """(length, precision, scale, fraction) from a type's atttypmod."""
    if typmod < 0:
        if typname in ("time", "timetz", "timestamp", "timestamptz", "interval"):
            return None, None, None, 6
        return None, None, None, None
    if typname in ("varchar", "bpchar"):
        return typmod - 4, None, None, None
    if typname == "numeric":
        t = typmod - 4
        return None, (t >> 16) & 0xFFFF, ((t & 0x7FF) ^ 0x400) - 0x400, None
    if typname in ("time", "timetz", "timestamp", "timestamptz"):
        return None, None, None, typmod
    if typname in ("bit", "varbit"):
        return typmod, None, None, None
    return None, None, None, None


_DESCRIBE: Final = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, NOT a.attnotnull,
       a.atttypmod, t.typtype, et.typname,
       (SELECT array_agg(ka.attname ORDER BY array_position(i.indkey::int2[], ka.attnum))
          FROM pg_index i JOIN pg_attribute ka
            ON ka.attrelid = i.indrelid AND ka.attnum = ANY (i.indkey::int2[])
         WHERE i.indrelid = c.oid AND i.indisprimary)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
 WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
 ORDER BY a.attnum
"""


class PostgresSession:
    """A connection to a PostgreSQL replica (or, read-only, to any PostgreSQL for verify)."""

    def __init__(
        self,
        dialect: PostgresDialect,
        conn: psycopg.Connection[tuple[Any, ...]],
        default_schema: str | None,
        *,
        read_only: bool = False,
    ) -> None:
        self.dialect: SinkDialect = dialect
        self._d = dialect
        self._conn = conn
        self._default_schema = default_schema
        self._in_tx = False
        self._origin: str | None = None
        self.replication_origin: str | None = None  # the origin the session is bound to
        self._stages: dict[tuple[TableName, tuple[str, ...]], str] = {}
        self._dirty: set[str] = set()
        self._scan_no = 0
        # Binary COPY type names per (table, columns), None: text (see .binary).
        self._binary: dict[tuple[TableName, tuple[str, ...]], list[str] | None] = {}
        self._refusals: dict[tuple[TableName, tuple[str, ...]], int] = {}
        self._collided: dict[TableName, int] = {}  # see insert_new
        install_strict_dumpers(conn)
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute("SET DateStyle = 'ISO, YMD'")
            cur.execute("SET IntervalStyle = 'iso_8601'")
            if read_only:
                cur.execute("SET default_transaction_read_only = on")
        conn.commit()

    def _qualify(self, table: TableName) -> TableName:
        if table.schema is None and self._default_schema is not None:
            return TableName(self._default_schema, table.name)
        return table

    def _end_read(self) -> None:
        if not self._in_tx:
            self._conn.rollback()

    # -- reading

    def list_tables(self) -> list[TableName]:
        rows = self._conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast%%' "
            "ORDER BY 1, 2",
            [],
        ).fetchall()
        self._end_read()
        return [TableName(s, t) for s, t in rows]

    def describe(self, table: TableName) -> ReplicaTable | None:
        table = self._qualify(table)
        rows = self._conn.execute(_DESCRIBE, [table.schema or "public", table.name]).fetchall()
        self._end_read()
        if not rows:
            return None
        columns = []
        for name, type_text, typname, nullable, typmod, typtype, elem, _ in rows:
            length, precision, scale, fraction = _typmod_facts(typname, typmod)
            if elem is not None:
                kind: Kind | None = Kind.ARRAY
            elif typtype == "e":
                kind = Kind.ENUM
            else:
                kind = _KIND_OF_TYPE.get(typname)
            columns.append(
                ReplicaColumn(
                    name=name,
                    type_text=type_text,
                    data_type=typname,
                    nullable=bool(nullable),
                    length=length,
                    precision=precision,
                    scale=scale,
                    fraction=fraction,
                    kind=kind,
                    element=None if elem is None else _KIND_OF_TYPE.get(elem, Kind.STRING),
                )
            )
        pk = tuple(rows[0][7] or ())
        return ReplicaTable(table, tuple(columns), pk)

    def count(self, table: TableName) -> int:
        row = self._conn.execute(
            f"SELECT count(*) FROM {self._d.table_sql(self._qualify(table))}", []
        ).fetchone()
        self._end_read()
        return int(row[0]) if row else 0

    def key_bounds(self, table: TableName, column: str) -> tuple[Any, Any]:
        c = quote(column)
        row = self._conn.execute(
            f"SELECT min({c}), max({c}) FROM {self._d.table_sql(self._qualify(table))}", []
        ).fetchone()
        self._end_read()
        return (row[0], row[1]) if row else (None, None)

    def scan(
        self, table: TableName, columns: Sequence[str], *, key_range: KeyRange | None = None
    ) -> Iterator[tuple[Any, ...]]:
        sql = f"SELECT {', '.join(quote(c) for c in columns)} FROM {self._d.table_sql(self._qualify(table))}"
        params: list[Any] = []
        if key_range is not None:
            col, lo, hi = key_range
            sql += f" WHERE {quote(col)} >= %s AND {quote(col)} < %s"
            params = [lo, hi]
        self._scan_no += 1
        with self._conn.cursor(name=f"cdc_scan_{self._scan_no}") as cur:
            cur.itersize = 10_000
            cur.execute(sql, params)
            yield from cur
        self._end_read()

    # -- schema changes

    def execute_ddl(self, statements: Sequence[str]) -> None:
        if self._in_tx:
            raise RuntimeError("DDL inside a data transaction")
        try:
            with self._conn.cursor() as cur:
                for sql in statements:
                    log.info("replica DDL: %s", sql)
                    cur.execute(sql, [])
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise

    def invalidate(self, table: TableName) -> None:
        table = self._qualify(table)
        for k in [k for k in self._stages if k[0] == table]:
            del self._stages[k]
        for cache in (self._binary, self._refusals):
            for k in [k for k in cache if k[0] == table]:
                del cache[k]

    # -- transactions

    def begin(self) -> None:
        self._conn.rollback()  # end any implicit read transaction
        self._in_tx = True

    def commit(self) -> None:
        self._conn.commit()
        self._in_tx = False
        self._dirty.clear()

    def rollback(self) -> None:
        self._in_tx = False
        self._dirty.clear()
        self._stages.clear()  # temp tables created in the rolled back transaction are gone
        if not self._conn.closed:
            self._conn.rollback()

    def set_synchronous_commit(self, value: str) -> None:
        """The session's ``synchronous_commit`` (sink config ``synchronous_commit``). With
        ``off`` a commit returns before its WAL is flushed; the checkpoint rows commit with
        the data, so a replica crash loses both together and the sink re-applies from Kafka."""
        if value not in ("on", "off", "local", "remote_write", "remote_apply"):
            raise ValueError(f"not a synchronous_commit value: {value!r}")
        self._conn.execute(f"SET synchronous_commit = {value}", [])
        self._conn.commit()

    def savepoint(self) -> None:
        self._conn.execute("SAVEPOINT cdc_change")

    def rollback_to_savepoint(self) -> None:
        self._conn.execute("ROLLBACK TO SAVEPOINT cdc_change")
        self._dirty.clear()

    def release_savepoint(self) -> None:
        self._conn.execute("RELEASE SAVEPOINT cdc_change")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def origin_problems(self, origin: str) -> list[Problem]:
        """cdc.spi.ChecksOrigin: the grants and origin states ``set_origin`` needs."""
        return origin_problems(self._conn, origin)

    def set_origin(self, origin: str) -> None:
        """Bind the session to the replication origin of ``origin`` (:mod:`..origin`)."""
        self.replication_origin = setup_session(self._conn, origin)
        self._origin = origin

    # -- writing

    def _stage(self, table: ReplicaTable, columns: tuple[str, ...]) -> str:
        """A temporary table with ``columns`` of ``table`` (their exact types), empty."""
        key = (table.name, columns)
        name = self._stages.get(key)
        if name is None:
            name = f"cdc_stage_{len(self._stages) + 1}_{abs(hash(key)) % 1_000_000}"
            # A rollback or DDL forgets stages that a committed transaction created: one of
            # the same name may exist, with other columns after DDL.
            self._conn.execute(f"DROP TABLE IF EXISTS pg_temp.{quote(name)}", [])
            self._conn.execute(
                f"CREATE TEMPORARY TABLE {quote(name)} ON COMMIT DELETE ROWS AS "
                f"SELECT {', '.join(quote(c) for c in columns)} FROM {self._d.table_sql(table.name)} "
                "WITH NO DATA",
                [],
            )
            self._stages[key] = name
        elif name in self._dirty:
            self._conn.execute(f"TRUNCATE {quote(name)}", [])
        self._dirty.add(name)
        return name

    def _copy(
        self, table: ReplicaTable, into: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> None:
        """COPY ``rows`` into ``into`` (SQL text of ``table`` or of its staging table):
        binary where :func:`.binary.binary_types` allows, under a savepoint that, when
        the client refuses a value, undoes the attempt for a text COPY."""
        key = (table.name, columns)
        try:
            types = self._binary[key]
        except KeyError:
            types = self._binary[key] = binary_types(table, columns)
        if types is not None:
            self._conn.execute("SAVEPOINT cdc_copy", [])
            try:
                self._copy_rows(into, columns, rows, types)
            except (*REFUSALS, psycopg.DataError) as e:
                # A value this type's binary form does not take (or, psycopg.DataError, one
                # the server refused): the text COPY below stores it or names the problem.
                self._conn.execute("ROLLBACK TO SAVEPOINT cdc_copy", [])
                if isinstance(e, REFUSALS):
                    n = self._refusals[key] = self._refusals.get(key, 0) + 1
                    log.debug("binary COPY into %s refused a value (%s); as text", into, e)
                    if n >= _BINARY_REFUSALS:
                        self._binary[key] = None
            else:
                self._conn.execute("RELEASE SAVEPOINT cdc_copy", [])
                return
        self._copy_rows(into, columns, rows, None)

    def _copy_rows(
        self, into: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], types: list[str] | None
    ) -> None:
        sql = f"COPY {into} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
        with self._conn.cursor() as cur, cur.copy(
            sql if types is None else sql + " (FORMAT BINARY)", []
        ) as copy:
            if types is not None:
                copy.set_types(types)
            write = copy.write_row
            for row in rows:
                write(row)

    def insert_new(
        self, table: ReplicaTable, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Rows whose keys should not exist yet (:class:`cdc.spi.InsertsNewRows`): COPY
        straight into the table under a savepoint; when a key exists after all, that
        COPY is undone and the rows are upserted."""
        if len(rows) < COPY_THRESHOLD or not table.primary_key:
            self.upsert(table, columns, rows)
            return
        self._copy_or_upsert(
            table,
            lambda: self._copy(table, self._d.table_sql(table.name), tuple(columns), rows),
            lambda: self.upsert(table, columns, rows),
        )

    def _copy_or_upsert(
        self, table: ReplicaTable, copy: Callable[[], None], upsert: Callable[[], None]
    ) -> None:
        """New rows: ``copy`` them straight into ``table`` under a savepoint; when a key
        exists after all, undo it and ``upsert`` instead, and keep upserting for the
        next batches of the table (a re-snapshot over existing rows)."""
        skip = self._collided.get(table.name, 0)
        if skip:  # a recent batch met existing keys (a re-snapshot): upsert a while
            self._collided[table.name] = skip - 1
            upsert()
            return
        self._conn.execute("SAVEPOINT cdc_new", [])
        try:
            copy()
        except psycopg.errors.UniqueViolation:
            self._conn.execute("ROLLBACK TO SAVEPOINT cdc_new", [])
            log.info("replica table %s already had some of the keys inserted; upserting", table.name)
            self._collided[table.name] = _UPSERTS_AFTER_COLLISION
            upsert()
            return
        self._conn.execute("RELEASE SAVEPOINT cdc_new", [])

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
        """cdc.spi.CopiesRuns: the compiled encoder of :mod:`.copyrun` (None when a
        column's type has no run form: that table keeps the general path)."""
        return compile_encoder(envelope, named, row_columns, columns, key, replica, updates=updates)

    def insert_run(
        self, table: ReplicaTable, columns: Sequence[str], payload: bytes, rows: int
    ) -> None:
        """cdc.spi.CopiesRuns: ``payload`` (binary COPY tuples of new rows) copied straight
        into the table under a savepoint; when a key exists after all, that COPY is
        undone and the rows are staged and upserted, as :meth:`insert_new` does."""
        cols = tuple(columns)
        self._copy_or_upsert(
            table,
            lambda: self._copy_payload(self._d.table_sql(table.name), cols, payload),
            lambda: self._upsert_payload(table, cols, payload),
        )

    def update_run(
        self, table: ReplicaTable, columns: Sequence[str], payload: bytes, rows: int
    ) -> None:
        """cdc.spi.CopiesRuns: ``payload`` (binary COPY tuples of updated rows, each key
        once) staged and upserted, as :meth:`upsert` does with rows."""
        self._upsert_payload(table, tuple(columns), payload)

    def _copy_payload(self, into: str, columns: Sequence[str], payload: bytes) -> None:
        sql = f"COPY {into} ({', '.join(quote(c) for c in columns)}) FROM STDIN (FORMAT BINARY)"
        with self._conn.cursor() as cur, cur.copy(sql, []) as copy:
            copy.write(RUN_HEADER)
            copy.write(payload)
            copy.write(RUN_TRAILER)

    def _upsert_payload(self, table: ReplicaTable, cols: tuple[str, ...], payload: bytes) -> None:
        stage = self._stage(table, cols)
        self._copy_payload(quote(stage), cols, payload)
        names = ", ".join(quote(c) for c in cols)
        self._conn.execute(
            f"INSERT INTO {self._d.table_sql(table.name)} ({names}) "
            f"SELECT {names} FROM {quote(stage)}" + self._d._conflict(cols, table.primary_key),
            [],
        )

    def upsert(self, table: ReplicaTable, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        cols = tuple(columns)
        key = table.primary_key
        if len(rows) >= COPY_THRESHOLD:
            stage = self._stage(table, cols)
            self._copy(table, quote(stage), cols, rows)
            names = ", ".join(quote(c) for c in cols)
            self._conn.execute(
                f"INSERT INTO {self._d.table_sql(table.name)} ({names}) "
                f"SELECT {names} FROM {quote(stage)}" + self._d._conflict(cols, key),
                [],
            )
            return
        per = max(1, min(len(rows), _MAX_PARAMS // max(1, len(cols)), 500))
        with self._conn.cursor() as cur:
            for i in range(0, len(rows), per):
                chunk = rows[i : i + per]
                params = [v for row in chunk for v in row]
                cur.execute(self._d.upsert(table.name, cols, key, len(chunk)), params)

    def delete(self, table: ReplicaTable, keys: Sequence[Sequence[Any]]) -> None:
        if not keys:
            return
        key = table.primary_key
        if len(keys) >= COPY_THRESHOLD:
            stage = self._stage(table, key)
            self._copy(table, quote(stage), key, keys)
            cond = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in key)
            self._conn.execute(
                f"DELETE FROM {self._d.table_sql(table.name)} t USING {quote(stage)} s WHERE {cond}",
                [],
            )
            return
        per = max(1, min(len(keys), _MAX_PARAMS // len(key), 1000))
        with self._conn.cursor() as cur:
            for i in range(0, len(keys), per):
                chunk = keys[i : i + per]
                cur.execute(self._d.delete(table.name, key, len(chunk)), [v for k in chunk for v in k])

    def truncate(self, table: ReplicaTable) -> None:
        self._conn.execute(self._d.truncate(table.name), [])

    def move(
        self, table: ReplicaTable, old_key: Sequence[Any], columns: Sequence[str], row: Sequence[Any]
    ) -> bool:
        sets = ", ".join(f"{quote(c)} = %s" for c in columns)
        where = " AND ".join(f"{quote(k)} = %s" for k in table.primary_key)
        n = self.execute(
            f"UPDATE {self._d.table_sql(table.name)} SET {sets} WHERE {where}", [*row, *old_key]
        )
        return n > 0

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
            typname = rc.data_type if rc is not None else "text"
            if typname in _MATCH_AS_TEXT:
                cast = rc.type_text if rc is not None else "text"
                conds.append(f"{c}::text = CAST(%s AS {cast})::text")
            elif typname == "json":  # json has no equality; jsonb's is by value
                conds.append(f"{c}::jsonb = CAST(%s AS jsonb)")
            elif typname in _MATCH_AS_IS or rc is None:
                conds.append(f"{c} = %s")  # (a string literal takes the column's type)
            else:
                conds.append(f"{c} = CAST(%s AS {rc.type_text})")
            params.append(v)
        return " AND ".join(conds) or "true", params

    def delete_row(self, table: ReplicaTable, columns: Sequence[str], row: Sequence[Any]) -> bool:
        where, params = self._match(table, columns, row)
        t = self._d.table_sql(table.name)
        return self.execute(
            f"DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE {where} LIMIT 1)", params
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
        t = self._d.table_sql(table.name)
        sets = ", ".join(f"{quote(c)} = %s" for c in set_columns)
        return self.execute(
            f"UPDATE {t} SET {sets} WHERE ctid = (SELECT ctid FROM {t} WHERE {where} LIMIT 1)",
            [*values, *params],
        ) > 0

    def close(self) -> None:
        try:
            self._conn.close()
        except psycopg.Error as e:  # closing a broken connection: nothing left to release
            log.debug("closing the replica connection: %s", e)


# Full-row match (tables without a primary key): types without an equality operator,
# or whose one is not identity (box and circle compare areas), and arrays of them
# compare as text (json as jsonb); string
# types take the parameter as a literal of their own type (no cast that could cut it).
_NO_IDENTITY_EQ: Final = ("json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle")
_MATCH_AS_TEXT: Final = frozenset((*_NO_IDENTITY_EQ[1:], *(f"_{t}" for t in _NO_IDENTITY_EQ)))
_MATCH_AS_IS: Final = frozenset(("text", "varchar", "bpchar", "name", "citext"))
