"""What the server's catalogs say about captured tables, slots and publications.

The snapshot reader and the stream reader must describe a table identically
(same columns, types, nullability, key), or the first streamed change after a
snapshot would look like a schema change downstream. Both therefore build
their :class:`TableShape` here, from the same catalog facts and the same type
table (:mod:`connectors.postgres.types`): the snapshot from ``pg_attribute``,
the stream from pgoutput's Relation message completed by ``pg_attribute``
(which the message lacks: nullability, defaults, the real primary key of a
REPLICA IDENTITY FULL table).

Everything here is one query per call on a normal (non-replication)
connection; nothing runs per row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Final

import psycopg
from psycopg import sql

from cdc.config.sources import TableFilter
from cdc.events import Column, TableId, TableSchema
from cdc.spi import TextForm
from connectors.postgres import text_values
from connectors.postgres.position import Lsn
from connectors.postgres.text_values import INLINE
from connectors.postgres.types import (
    PgType,
    TypeCatalog,
    load_type_catalog,
    make_row_converter,
    resolve_type,
)

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# Schemas never captured, whatever the table filter says.
_SYSTEM_SCHEMAS: Final = ("pg_catalog", "information_schema")


@dataclass(frozen=True, slots=True)
class ColumnFact:
    name: str
    type_oid: int
    typmod: int
    not_null: bool
    default: str | None
    sql_type: str  # format_type(): what a parameter is cast to


@dataclass(frozen=True, slots=True)
class TableFacts:
    """One table as the catalog describes it now."""

    oid: int
    schema: str
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[ColumnFact, ...]
    primary_key: tuple[str, ...]  # in index order
    identity_key: tuple[str, ...]  # REPLICA IDENTITY USING INDEX columns, in index order
    estimated_rows: int  # pg_class.reltuples (-1: never analyzed)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def sql_name(self) -> sql.Composed:
        return sql.SQL(".").join([sql.Identifier(self.schema), sql.Identifier(self.name)])

    @property
    def has_identity(self) -> bool:
        """Whether UPDATE/DELETE can be published (else the source rejects them)."""
        if self.replica_identity == "f":
            return True
        if self.replica_identity == "i":
            return bool(self.identity_key)
        if self.replica_identity == "d":
            return bool(self.primary_key)
        return False


def stream_key(replica_identity: str, primary_key: Sequence[str], identity_key: Sequence[str]) -> tuple[str, ...]:
    """The event key of a table: what identifies a row in *every* event.

    Deletes carry only the replica identity's columns, so with REPLICA
    IDENTITY USING INDEX the key is that index's columns (a primary key on
    other columns could not be filled in for deletes). DEFAULT, FULL and
    NOTHING use the primary key (FULL sends whole rows, so any key works;
    NOTHING publishes inserts only).
    """
    if replica_identity == "i" and identity_key:
        return tuple(identity_key)
    return tuple(primary_key)


_TABLES_SQL: Final = """
SELECT c.oid::int8, n.nspname::text, c.relname::text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp)'
  AND c.relpersistence <> 't'
ORDER BY n.nspname, c.relname
"""


def captured_tables(conn: Conn, tables: TableFilter) -> list[tuple[int, str, str]]:
    """``(oid, schema, table)`` of every ordinary table the filter captures.

    Partitioned parents are left out: pgoutput publishes a partition's
    changes under the partition's own name (unless the publication sets
    publish_via_partition_root), so the leaves are what is captured.
    """
    rows = conn.execute(_TABLES_SQL).fetchall()
    return [
        (int(oid), schema, name)
        for oid, schema, name in rows
        if schema not in _SYSTEM_SCHEMAS and tables.matches(f"{schema}.{name}")
    ]


_FACTS_SQL: Final = """
SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relreplident::text,
       c.reltuples::int8,
       ARRAY(
         SELECT a.attname::text FROM pg_catalog.pg_index i
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord),
       ARRAY(
         SELECT a.attname::text FROM pg_catalog.pg_index i
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = c.oid AND i.indisreplident ORDER BY k.ord)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = %s
"""

_COLUMNS_SQL: Final = """
SELECT a.attname::text, a.atttypid::int8, a.atttypmod, a.attnotnull,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid),
       pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum
"""


def table_facts(conn: Conn, oid: int) -> TableFacts | None:
    """The catalog's description of table ``oid``; None if it no longer exists."""
    row = conn.execute(_FACTS_SQL, (oid,)).fetchone()
    if row is None:
        return None
    columns = tuple(
        ColumnFact(name, int(type_oid), int(typmod), bool(not_null), default, sql_type)
        for name, type_oid, typmod, not_null, default, sql_type in conn.execute(
            _COLUMNS_SQL, (oid,)
        )
    )
    return TableFacts(
        oid=int(row[0]),
        schema=row[1],
        name=row[2],
        replica_identity=row[3],
        columns=columns,
        primary_key=tuple(row[5] or ()),
        identity_key=tuple(row[6] or ()),
        estimated_rows=int(row[4]),
    )


# --------------------------------------------------------------------------- table shapes


class NullInNotNull(Exception):
    """Raised by a shape's row builder: column ``index`` is NOT NULL but the row has NULL."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class TableShape:
    """A captured table at one schema version, ready to turn text rows into events.

    ``schema`` is one object per version (the serde caches encoders by its
    identity). ``row`` turns a row of text values (pgoutput tuple or
    snapshot row) into the canonical ``{column: value}`` dict and ``key``
    picks the key out of it; both are generated per shape because they run
    once per event (see :func:`_compile`). ``convert`` is the type table's
    list converter, used where speed does not matter and for error messages.
    """

    __slots__ = (
        "convert",
        "key",
        "key_from_tuple",
        "key_index",
        "key_names",
        "names",
        "not_null_index",
        "relation",
        "row",
        "schema",
        "types",
    )

    def __init__(
        self, schema: TableSchema, types: Sequence[PgType], relation: object = None
    ) -> None:
        self.schema = schema
        self.types = tuple(types)
        self.names = tuple(c.name for c in schema.columns)
        self.convert: Callable[[Sequence[Any]], list[Any]] = make_row_converter(
            self.types, self.names
        )
        self.key_names = schema.primary_key
        position = {n: i for i, n in enumerate(self.names)}
        self.key_index = tuple(position[k] for k in schema.primary_key)
        self.not_null_index = tuple(i for i, c in enumerate(schema.columns) if not c.nullable)
        # What this shape was built from (the stream's Relation message), to
        # tell a resent but unchanged Relation from a real schema change.
        self.relation = relation
        self.row: Callable[[Sequence[Any]], dict[str, Any]]
        self.key: Callable[[Mapping[str, Any]], dict[str, Any] | None]
        self.key_from_tuple: Callable[[Sequence[Any]], dict[str, Any] | None]
        self.row, self.key, self.key_from_tuple = _compile(self)

    @property
    def table(self) -> TableId:
        return self.schema.table

    def relaxed(self, index: int) -> TableShape:
        """The same shape with column ``index`` nullable.

        Nullability comes from today's catalog, but a streamed row can be
        older than an ``ALTER ... SET NOT NULL``; rather than fail to encode
        that row, later events carry a schema where the column may be null.
        """
        cols = list(self.schema.columns)
        log.warning(
            "%s: column %s is NOT NULL in the catalog but a streamed row holds NULL "
            "(the row predates the constraint); publishing it as nullable",
            self.schema.table,
            cols[index].name,
        )
        cols[index] = replace(cols[index], nullable=True)
        return TableShape(replace(self.schema, columns=tuple(cols)), self.types, self.relation)


# The text forms (cdc.spi.TextForm) of the type table's converters: what the server's
# text output of these types is, so the encoder can write its plain spellings itself.
_FORMS: Final[dict[Any, TextForm]] = {
    str: TextForm.SAME,
    int: TextForm.INT,
    text_values.parse_bool: TextForm.BOOL,
    Decimal: TextForm.DECIMAL,
    text_values.parse_date: TextForm.DATE,
    text_values.parse_timestamp: TextForm.TIMESTAMP,
    float: TextForm.DOUBLE,
}


def text_forms(shape: TableShape) -> list[tuple[TextForm, Callable[[str], Any]]]:
    """Each column's text form and converter (TextForm.CALL: no promise)."""
    return [(_FORMS.get(t.from_text, TextForm.CALL), t.from_text) for t in shape.types]


def _compile(
    shape: TableShape,
) -> tuple[
    Callable[[Sequence[Any]], dict[str, Any]],
    Callable[[Mapping[str, Any]], dict[str, Any] | None],
    Callable[[Sequence[Any]], dict[str, Any] | None],
]:
    """Generate the per-shape row and key builders.

    The row builder unpacks the text values, checks NOT NULL columns and
    builds the dict in one expression with each column's converter inlined
    (text columns need none): one call per row instead of a converter call,
    a list, a zip and a dict. Converters with an entry in
    :data:`~connectors.postgres.text_values.INLINE` (booleans, dates,
    timestamps) have their common case written out, without the call. Values that are not ``str`` (NULL, pgoutput's
    unchanged-TOAST marker) pass through. On a conversion failure the type
    table's own converter is run to raise its error, which names the column.
    """
    names, types = shape.names, shape.types
    n = len(names)
    ns: dict[str, Any] = {"NullInNotNull": NullInNotNull, "slow": shape.convert}
    items = []
    for i, (name, t) in enumerate(zip(names, types, strict=True)):
        inline = INLINE.get(t.from_text)
        if t.from_text is str:
            items.append(f"{name!r}: v{i}")
        elif inline is not None:
            expr, names_used = inline
            ns.update(names_used)
            ns[f"c{i}"] = t.from_text
            body = expr.format(v=f"v{i}", c=f"c{i}")
            items.append(f"{name!r}: ({body} if v{i}.__class__ is str else v{i})")
        else:
            ns[f"c{i}"] = t.from_text
            items.append(f"{name!r}: (c{i}(v{i}) if v{i}.__class__ is str else v{i})")
    unpack = "".join(f"v{i}, " for i in range(n)) if n else "()"
    checks = "".join(
        f"        if v{i} is None:\n            raise NullInNotNull({i})\n"
        for i in shape.not_null_index
    )
    src = (
        "def row(values):\n"
        "    try:\n"
        f"        {unpack} = values\n"
        f"{checks}"
        f"        return {{{', '.join(items)}}}\n"
        "    except NullInNotNull:\n"
        "        raise\n"
        "    except Exception as e:\n"
        "        slow(values)\n"
        "        raise\n"
    )
    keys = shape.key_names
    if keys:
        src += f"def key(row):\n    return {{{', '.join(f'{k!r}: row[{k!r}]' for k in keys)}}}\n"
        parts = []
        for k, i in zip(keys, shape.key_index, strict=True):
            t = types[i]
            if t.from_text is str:
                parts.append(f"{k!r}: values[{i}]")
            else:
                ns[f"k{i}"] = t.from_text
                parts.append(f"{k!r}: k{i}(values[{i}])")
        src += f"def key_from_tuple(values):\n    return {{{', '.join(parts)}}}\n"
    else:
        src += "def key(row):\n    return None\ndef key_from_tuple(values):\n    return None\n"
    exec(compile(src, f"<row builder {shape.schema.table}>", "exec"), ns)
    return ns["row"], ns["key"], ns["key_from_tuple"]


def build_shape(
    database: str,
    schema_name: str,
    table_name: str,
    columns: Sequence[tuple[str, int, int]],
    facts: TableFacts | None,
    key: Sequence[str],
    catalog: TypeCatalog | None,
    relation: object = None,
) -> TableShape:
    """A :class:`TableShape` from ``(name, type oid, typmod)`` columns plus catalog facts.

    Columns the catalog no longer knows (renamed or dropped since the change
    was written) are nullable with no default: the safe reading of a past
    row. Key columns are always NOT NULL (PostgreSQL enforces it).
    """
    by_name = {c.name: c for c in facts.columns} if facts is not None else {}
    key = tuple(key)
    types: list[PgType] = []
    cols: list[Column] = []
    for name, oid, typmod in columns:
        t = resolve_type(oid, typmod, catalog)
        fact = by_name.get(name)
        not_null = name in key or (fact is not None and fact.not_null and fact.type_oid == oid)
        default = fact.default if fact is not None else None
        types.append(t)
        cols.append(Column(name, t.column_type, nullable=not not_null, default=default))
    schema = TableSchema(TableId(database, schema_name, table_name), tuple(cols), key)
    return TableShape(schema, types, relation)


def shape_from_facts(
    conn: Conn, database: str, facts: TableFacts, columns: Iterable[str] | None = None
) -> TableShape:
    """The snapshot's shape of a table (``columns``: a publication column list)."""
    wanted = set(columns) if columns is not None else None
    cols = [
        (c.name, c.type_oid, c.typmod)
        for c in facts.columns
        if wanted is None or c.name in wanted
    ]
    catalog = load_type_catalog(conn, [oid for _, oid, _ in cols])
    key = stream_key(facts.replica_identity, facts.primary_key, facts.identity_key)
    present = {name for name, _, _ in cols}
    if not set(key) <= present:
        key = ()
    return build_shape(database, facts.schema, facts.name, cols, facts, key, catalog)


# --------------------------------------------------------------------------- server facts


@dataclass(frozen=True, slots=True)
class ServerFacts:
    version: str  # server_version, e.g. "18.6"
    version_num: int  # server_version_num, e.g. 180006
    database: str
    wal_level: str
    max_replication_slots: int
    used_replication_slots: int
    max_wal_senders: int
    used_wal_senders: int
    user: str
    superuser: bool
    replication: bool


def server_facts(conn: Conn) -> ServerFacts:
    row = conn.execute(
        """
        SELECT current_setting('server_version'), current_setting('server_version_num')::int,
               current_database()::text, current_setting('wal_level'),
               current_setting('max_replication_slots')::int,
               (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int,
               current_setting('max_wal_senders')::int,
               (SELECT count(*) FROM pg_catalog.pg_stat_replication)::int,
               r.rolname::text, r.rolsuper, r.rolreplication
        FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
        """
    ).fetchone()
    assert row is not None
    return ServerFacts(
        version=str(row[0]).split()[0],
        version_num=int(row[1]),
        database=row[2],
        wal_level=row[3],
        max_replication_slots=int(row[4]),
        used_replication_slots=int(row[5]),
        max_wal_senders=int(row[6]),
        used_wal_senders=int(row[7]),
        user=row[8],
        superuser=bool(row[9]),
        replication=bool(row[10]),
    )


@dataclass(frozen=True, slots=True)
class SlotFacts:
    name: str
    plugin: str | None
    slot_type: str
    database: str | None
    active_pid: int | None
    confirmed_flush: Lsn | None
    restart_lsn: Lsn | None
    wal_status: str | None  # reserved / extended / unreserved / lost (PG 13+)
    temporary: bool

    @property
    def lost(self) -> bool:
        return self.wal_status == "lost"


def slot_facts(conn: Conn, slot: str) -> SlotFacts | None:
    # to_jsonb: the view gained columns over the versions (wal_status in 13, ...).
    row = conn.execute(
        "SELECT to_jsonb(s) FROM pg_catalog.pg_replication_slots s WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        return None
    d: dict[str, Any] = row[0]
    return SlotFacts(
        name=d["slot_name"],
        plugin=d.get("plugin"),
        slot_type=d.get("slot_type") or "",
        database=d.get("database"),
        active_pid=d.get("active_pid"),
        confirmed_flush=Lsn.parse(d["confirmed_flush_lsn"]) if d.get("confirmed_flush_lsn") else None,
        restart_lsn=Lsn.parse(d["restart_lsn"]) if d.get("restart_lsn") else None,
        wal_status=d.get("wal_status"),
        temporary=bool(d.get("temporary")),
    )


def retained_wal_bytes(conn: Conn, slot: str) -> int | None:
    """WAL the slot holds back: ``pg_current_wal_lsn() - restart_lsn`` (None: no slot)."""
    row = conn.execute(
        """
        SELECT (pg_catalog.pg_current_wal_lsn() - restart_lsn)::int8
        FROM pg_catalog.pg_replication_slots WHERE slot_name = %s
        """,
        (slot,),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


@dataclass(frozen=True, slots=True)
class PublicationFacts:
    name: str
    all_tables: bool
    operations: frozenset[str]  # insert, update, delete, truncate
    via_root: bool
    # (schema, table) -> published column names (None: all) and row filter.
    tables: dict[tuple[str, str], tuple[tuple[str, ...] | None, str | None]]
    schemas: frozenset[str]  # FOR TABLES IN SCHEMA (PG 15+)


def publication_facts(conn: Conn, name: str, version_num: int) -> PublicationFacts | None:
    row = conn.execute(
        """
        SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot
        FROM pg_catalog.pg_publication WHERE pubname = %s
        """,
        (name,),
    ).fetchone()
    if row is None:
        return None
    ops = frozenset(
        op for op, on in zip(("insert", "update", "delete", "truncate"), row[1:5], strict=True) if on
    )
    tables: dict[tuple[str, str], tuple[tuple[str, ...] | None, str | None]] = {}
    schemas: frozenset[str] = frozenset()
    if version_num >= 150000:
        for schema, table, attnames, rowfilter in conn.execute(
            """
            SELECT pt.schemaname::text, pt.tablename::text, pt.attnames::text[], pt.rowfilter
            FROM pg_catalog.pg_publication_tables pt WHERE pt.pubname = %s
            """,
            (name,),
        ):
            tables[(schema, table)] = (tuple(attnames) if attnames is not None else None, rowfilter)
        schemas = frozenset(
            r[0]
            for r in conn.execute(
                """
                SELECT n.nspname::text FROM pg_catalog.pg_publication_namespace pn
                JOIN pg_catalog.pg_publication p ON p.oid = pn.pnpubid
                JOIN pg_catalog.pg_namespace n ON n.oid = pn.pnnspid
                WHERE p.pubname = %s
                """,
                (name,),
            )
        )
    else:
        for schema, table in conn.execute(
            "SELECT schemaname::text, tablename::text FROM pg_catalog.pg_publication_tables "
            "WHERE pubname = %s",
            (name,),
        ):
            tables[(schema, table)] = (None, None)
    return PublicationFacts(name, bool(row[0]), ops, bool(row[5]), tables, schemas)


def published_columns(
    pub: PublicationFacts | None, schema: str, table: str
) -> tuple[tuple[str, ...] | None, str | None]:
    """A table's publication column list and row filter (None, None: whole table)."""
    if pub is None:
        return None, None
    return pub.tables.get((schema, table), (None, None))
