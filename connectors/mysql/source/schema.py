"""Table schemas for binlog rows: the TableMap is the truth, the catalog enriches.

Why no schema-history store: with ``binlog_row_metadata=FULL`` every TableMap
event (written before each transaction's rows of a table) carries the column
names, storage types, signedness, charsets, ENUM/SET labels, nullability and
primary key *as they were when the rows were written*. mysql-replication
decodes rows from that TableMap alone, so rows always decode correctly, also
for a reader resumed before an ``ALTER TABLE`` that the catalog already shows.

``information_schema`` knows a little more than the TableMap (MariaDB's JSON
alias of LONGTEXT, ``tinyint(1)``-style COLUMN_TYPE, defaults), so a column
takes its neutral type from the catalog when the catalog column has the same
name and storage :class:`~connectors.mysql.types.Shape` as the TableMap's -
which is always the case except for columns an ALTER changed between the row
and now. Those fall back to the TableMap-derived type. The cost: in that
window a MariaDB JSON column reads as STRING and ``native`` is spelled
canonically (``int`` for ``int(11)``). See TYPES.md.

The catalog cache is dropped for a table whenever a DDL statement mentions it,
and resolved schemas are cached by the TableMap's full signature, so the
information_schema query runs once per table version, not per transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pymysql.connections

from cdc.errors import SchemaError
from cdc.events import Column, TableId, TableSchema
from connectors.mysql.catalog import catalog_columns, catalog_primary_key
from connectors.mysql.source.rowimage import FastRowDecoder, build_fast_decoder
from connectors.mysql.source.server import ConnectionLost, is_disconnect
from connectors.mysql.types import (
    BinlogColumn,
    CatalogColumn,
    column_type_from_binlog,
    column_type_from_catalog,
)
from connectors.mysql.values import BinlogRowDecoder, ColumnCodec, ZeroDatePolicy, make_codec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResolvedTable:
    """Everything needed to turn one table's binlog rows into change events."""

    schema: TableSchema
    decode: BinlogRowDecoder  # converts mysql-replication's row values
    codecs: tuple[ColumnCodec, ...]
    from_catalog: frozenset[str]  # columns typed from information_schema
    fast: FastRowDecoder | None = None  # decodes row images itself (see rowimage.py)

    @property
    def key(self) -> tuple[str, ...]:
        return self.schema.primary_key


class Catalog:
    """``information_schema`` lookups over one lazily opened connection, cached.

    Thread-safe (a lock guards the connection) so metrics or checks running on
    another thread may share it.
    """

    def __init__(self, connect: Callable[[], pymysql.connections.Connection], *, mariadb: bool):
        self._connect = connect
        self._conn: pymysql.connections.Connection | None = None
        self._lock = threading.Lock()
        self.mariadb = mariadb
        self._columns: dict[tuple[str, str], list[CatalogColumn]] = {}
        self._keys: dict[tuple[str, str], tuple[str, ...]] = {}
        self.queries = 0

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                with self._conn.cursor() as cur:
                    self.queries += 1
                    return fn(cur)
            except Exception as e:
                if is_disconnect(e):
                    self._drop()
                    if isinstance(e, ConnectionLost):
                        raise
                    raise ConnectionLost(f"catalog connection lost: {e}") from e
                raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken; closing is best effort
                log.debug("closing a broken catalog connection failed", exc_info=True)

    def columns(self, database: str, table: str) -> list[CatalogColumn]:
        key = (database, table)
        cached = self._columns.get(key)
        if cached is None:
            cached = self._run(
                lambda cur: catalog_columns(cur, database, table, mariadb=self.mariadb)
            )
            self._columns[key] = cached
        return cached

    def primary_key(self, database: str, table: str) -> tuple[str, ...]:
        key = (database, table)
        cached = self._keys.get(key)
        if cached is None:
            cached = self._run(lambda cur: catalog_primary_key(cur, database, table))
            self._keys[key] = cached
        return cached

    def invalidate(self, database: str | None = None, table: str | None = None) -> None:
        """Forget cached facts: of one table, of a database, or (no args) all."""
        for cache in (self._columns, self._keys):
            for k in list(cache):
                if (database is None or k[0] == database) and (table is None or k[1] == table):
                    del cache[k]

    def invalidate_mentioned(self, query: str) -> int:
        """Forget every cached table whose name appears in a DDL statement's text.

        A substring match errs on the side of forgetting too much, which only
        costs a query.
        """
        text = query.lower()
        gone = [k for k in {*self._columns, *self._keys} if k[1].lower() in text]
        for database, table in gone:
            self.invalidate(database, table)
        return len(gone)

    def close(self) -> None:
        with self._lock:
            self._drop()


class SchemaResolver:
    """TableMap metadata (plus the catalog) -> :class:`ResolvedTable`, cached."""

    def __init__(
        self, catalog: Catalog, *, zero_date: ZeroDatePolicy = "null", fast_decode: bool = True
    ) -> None:
        self.catalog = catalog
        self.zero_date = zero_date
        self.fast_decode = fast_decode
        self._resolved: dict[tuple[Any, ...], ResolvedTable] = {}

    def resolve(
        self,
        database: str,
        table: str,
        columns: Sequence[BinlogColumn],
        primary_key: Sequence[str] | None,
    ) -> ResolvedTable:
        """The schema of rows written under this TableMap.

        ``primary_key`` is the TableMap's key (None when the event has no key
        metadata, then the catalog's key is used if its columns exist).
        """
        signature = (
            database,
            table,
            tuple(columns),
            None if primary_key is None else tuple(primary_key),
        )
        hit = self._resolved.get(signature)
        if hit is not None:
            return hit
        resolved = self._build(database, table, columns, primary_key)
        self._resolved[signature] = resolved
        return resolved

    def _build(
        self,
        database: str,
        table: str,
        columns: Sequence[BinlogColumn],
        primary_key: Sequence[str] | None,
    ) -> ResolvedTable:
        where = f"{database}.{table}"
        unnamed = [i for i, c in enumerate(columns) if not c.name]
        if unnamed:
            raise SchemaError(
                f"{where}: the binlog's TableMap has no column names",
                hint="set binlog_row_metadata=FULL on the server (MariaDB >= 10.5, MySQL >= 8.0.14)",
            )
        catalog = {c.name: c for c in self.catalog.columns(database, table)}
        codecs: list[ColumnCodec] = []
        cols: list[Column] = []
        typed_by_catalog: set[str] = set()
        for b in columns:
            c = catalog.get(b.name)
            if c is not None and c.shape() == b.shape():
                codec = make_codec(
                    c.shape(),
                    column_type_from_catalog(c),
                    nullable=b.nullable,
                    table=where,
                    zero_date=self.zero_date,
                    charset=c.charset,
                )
                default = c.default
                typed_by_catalog.add(b.name)
            else:
                codec = make_codec(
                    b.shape(),
                    column_type_from_binlog(b),
                    nullable=b.nullable,
                    table=where,
                    zero_date=self.zero_date,
                    charset=b.charset,
                )
                default = None
            codecs.append(codec)
            cols.append(Column(b.name, codec.type, b.nullable, default))
        if primary_key:
            key = tuple(primary_key)
        else:  # no key metadata: the catalog's key, if it fits these rows
            names = {b.name for b in columns}
            key = self.catalog.primary_key(database, table)
            if not all(k in names for k in key):
                key = ()
        if len(typed_by_catalog) < len(columns):
            log.info(
                "%s: columns %s differ from information_schema (an ALTER TABLE after these "
                "rows?); typed from the binlog's TableMap",
                where,
                sorted({b.name for b in columns} - typed_by_catalog),
            )
        schema = TableSchema(TableId(database, None, table), tuple(cols), key)
        fast = build_fast_decoder(columns, codecs) if self.fast_decode else None
        return ResolvedTable(
            schema,
            BinlogRowDecoder(codecs, where),
            tuple(codecs),
            frozenset(typed_by_catalog),
            fast,
        )

    def forget(self, database: str | None = None, table: str | None = None) -> None:
        for sig in list(self._resolved):
            if (database is None or sig[0] == database) and (table is None or sig[1] == table):
                del self._resolved[sig]

    def forget_mentioned(self, query: str) -> None:
        """After DDL: drop catalog facts and resolved schemas of tables it names."""
        text = query.lower()
        self.catalog.invalidate_mentioned(query)
        for sig in list(self._resolved):
            if str(sig[1]).lower() in text:
                del self._resolved[sig]

    def schema_for(self, database: str, table: str) -> TableSchema | None:
        """The current catalog schema of a table (TRUNCATE events), None if it is gone."""
        cat = self.catalog.columns(database, table)
        if not cat:
            return None
        cols = tuple(
            Column(c.name, column_type_from_catalog(c), c.nullable, c.default) for c in cat
        )
        return TableSchema(
            TableId(database, None, table), cols, self.catalog.primary_key(database, table)
        )


def primary_key_names(column_names: Sequence[str], metadata: Any) -> list[str] | None:
    """Key column names from a TableMap's optional metadata (None: no key metadata).

    MySQL/MariaDB write SIMPLE_PRIMARY_KEY (indexes) or PRIMARY_KEY_WITH_PREFIX
    (index -> prefix length) only when the table has a primary key.
    """
    simple = list(getattr(metadata, "simple_primary_key_list", None) or ())
    prefixed: Mapping[int, int] = getattr(metadata, "primary_keys_with_prefix", None) or {}
    indexes = simple or list(prefixed)
    if not indexes:
        return None
    return [column_names[i] for i in indexes]
