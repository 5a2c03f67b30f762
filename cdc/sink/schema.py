"""Replica tables: naming, column filters, auto-create and auto-evolve.

For every (topic, table schema version) the sink meets, :class:`ReplicaSchemas`
makes a :class:`TablePlan`: which replica table receives the rows, which
columns are written, how each value is converted, and the replica's key
order. Making the plan is also when the replica's table is created (missing,
``auto_create``) or evolved (``auto_evolve``: new columns are added as
nullable, types widened where that loses nothing, NOT NULL dropped from
columns the source no longer sends). Columns are never dropped or narrowed.

Plans are made before a batch's transaction starts: MySQL commits DDL
implicitly, and DDL that runs ahead of its data is harmless to replay.

Re-planning a table the sink (or a person) already made is idempotent: a
restarted sink plans no DDL when nothing changed, and a key column is only
ever widened to a type that can still be a key. A statement the replica
refuses anyway stops the sink with :class:`~cdc.errors.DdlRefused` naming
the sink, table, column and statement (restarting could not help).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from cdc.errors import ConfigError, DdlRefused, SchemaError
from cdc.events import Column, Op, TableId, TableSchema
from cdc.serde import DecodedChange
from cdc.sink.create import create_table
from cdc.sink.naming import replica_table
from cdc.sink.reduce import (
    Delete,
    DeleteRow,
    KeylessReducer,
    Move,
    Mutation,
    Reducer,
    TableReducer,
    UpdateRow,
    Upsert,
)
from cdc.sink.values import DoesNotFit, db_text, passes
from cdc.spi import ErrorKind, ReplicaTable, SinkSession, TableName

log = logging.getLogger(__name__)

Converter = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class ColumnSelection:
    """``tables.columns`` of one topic: ``include`` (plus the key) or ``exclude``."""

    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()

    def keeps(self, name: str, key: Sequence[str]) -> bool:
        if name in key:
            return True
        if self.include is not None:
            return name in self.include
        return name not in self.exclude


@dataclass(frozen=True, slots=True)
class TableSettings:
    auto_create: bool = True
    auto_evolve: bool = True
    name_map: Mapping[str, str] | None = None
    columns: Mapping[str, ColumnSelection] | None = None
    default_schema: str | None = None
    same_namespace: bool = False  # tables.same_namespace: <ns>.<table>, shared by topics
    sink: str = "?"  # the sink's name, for error messages
    # Master-master: every node's topic of a table writes the one replica table, by design.
    shared_tables: bool = False


class TablePlan:
    """How one table schema version's events become mutations of one replica table."""

    __slots__ = (
        "_convs",
        "_full",
        "_get",
        "_get_key",
        "_key_pos",
        "_key_spec",
        "_spec",
        "columns",
        "key",
        "key_from_db",
        "keyless",
        "name",
        "replica",
        "schema",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        schema: TableSchema,
        replica: ReplicaTable,
        columns: Sequence[str],
        to_db: Sequence[Converter | None],
        key_from_db: Sequence[Converter | None],
    ) -> None:
        self.topic = topic
        self.schema = schema
        self.replica = replica
        self.name = replica.name
        self.columns: tuple[str, ...] = tuple(columns)
        self._spec = tuple(zip(self.columns, to_db, strict=True))
        self.key: tuple[str, ...] = replica.primary_key
        # No primary key: rows are matched by their whole image, changes applied in order.
        self.keyless = not self.key
        self._key_pos = tuple(self.columns.index(k) for k in self.key)
        self._key_spec = tuple(self._spec[i] for i in self._key_pos)
        self.key_from_db = tuple(key_from_db)
        self._full = frozenset(self.columns)
        # Hot path: a full row is read with one C-level itemgetter, then only the
        # columns that need a converter are touched.
        self._get = _getter(self.columns)
        self._get_key = (
            _getter(range(len(self.columns)), self._key_pos) if self._key_pos else _no_key
        )
        # (index, name, converter, exact types it returns unchanged: not called for those)
        self._convs = tuple(
            (i, name, conv, passes(conv)) for i, (name, conv) in enumerate(self._spec) if conv
        )

    def _full_values(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        values = self._get(row)
        if not self._convs:
            return values
        out = list(values)
        for i, name, conv, same in self._convs:
            v = out[i]
            if v is not None and type(v) not in same:
                out[i] = self._convert(conv, name, v)
        return tuple(out)

    def _convert(self, conv: Converter, name: str, v: Any) -> Any:
        try:
            return conv(v)
        except DoesNotFit as e:
            raise DoesNotFit(f"replica table {self.name} column {name!r}: {e}") from e
        except (ValueError, TypeError, OverflowError, ArithmeticError) as e:
            raise DoesNotFit(
                f"replica table {self.name} column {name!r} cannot take {db_text(v)}: {e}"
            ) from e

    def _row(self, row: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        try:
            return self.columns, self._full_values(row)
        except KeyError:
            pass  # a partial image (unchanged TOAST columns): the general path below
        missing = [k for k in self.key if k not in row]
        if missing:
            raise SchemaError(f"{self.schema.table}: the row image lacks key columns {missing}")
        names = []
        out = []
        for name, conv in self._spec:
            if name in row:
                v = row[name]
                names.append(name)
                out.append(v if conv is None or v is None else self._convert(conv, name, v))
        return tuple(names), tuple(out)

    def full_row(self, row: Mapping[str, Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
        """``(key, values)`` of a full row image in :attr:`columns` order, or None when
        the image is partial or a value does not fit (:meth:`mutations` says why)."""
        try:
            values = self._full_values(row)
        except (KeyError, DoesNotFit):
            return None
        return self._get_key(values), values

    def key_of(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """The replica key (in the replica's key order) of a key or row image."""
        out = []
        for name, conv in self._key_spec:
            try:
                v = row[name]
            except KeyError:
                raise SchemaError(f"{self.schema.table}: the key lacks column {name!r}") from None
            if conv is not None and v is not None:
                try:
                    v = conv(v)
                except (ValueError, TypeError, OverflowError, ArithmeticError) as e:
                    raise DoesNotFit(
                        f"replica table {self.name} key column {name!r} cannot take {db_text(v)}: {e}"
                    ) from e
            out.append(v)
        return tuple(out)

    def reducer(self) -> Reducer:
        """A fresh reducer for this table's mutations of one batch."""
        return KeylessReducer() if self.keyless else TableReducer(self.columns)

    def _whole(self, image: Mapping[str, Any], op: Op) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        """The full before image of a change of a table without a primary key."""
        names, values = self._row(image)
        if names is not self.columns and names != self.columns:
            missing = [c for c in self.columns if c not in image]
            raise SchemaError(
                f"{self.schema.table}: a {op.value!r} change of a table without a primary key "
                f"whose before image lacks columns {missing}: the row cannot be matched",
                hint="the source must send whole old rows (PostgreSQL: ALTER TABLE ... REPLICA "
                "IDENTITY FULL; MySQL/MariaDB: binlog_row_image=FULL)",
            )
        return names, values

    def _keyless(self, change: DecodedChange) -> list[Mutation]:
        op = change.op
        before = change.before
        if op is Op.DELETE or op is Op.UPDATE:
            if before is None:
                raise SchemaError(
                    f"{self.schema.table}: a {op.value!r} change of a table without a primary "
                    "key has no before image: the row cannot be matched",
                    hint="the source must send whole old rows (PostgreSQL: ALTER TABLE ... "
                    "REPLICA IDENTITY FULL; MySQL/MariaDB: binlog_row_image=FULL)",
                )
            cols, vals = self._whole(before, op)
            if op is Op.DELETE:
                return [DeleteRow(cols, vals)]
        after = change.after
        if after is None:
            raise SchemaError(f"{self.schema.table}: a {op.value!r} change without an after image")
        names, values = self._row(after)
        if op is Op.UPDATE:
            return [UpdateRow(cols, vals, names, values)]
        return [Upsert((), names, values)]

    def mutations(self, change: DecodedChange) -> list[Mutation]:
        """The replica mutations of one row change (not a truncate).

        Raises SchemaError for a change that lacks what it needs (a key, or for a
        table without one the whole before image) and DoesNotFit for a value the
        replica column cannot hold.
        """
        op = change.op
        if self.keyless:
            return self._keyless(change)
        if op is Op.DELETE:
            if change.key is not None:
                return [Delete(self.key_of(change.key))]
            if change.before is not None:
                return [Delete(self.key_of(change.before))]
            raise SchemaError(f"{self.schema.table}: a delete without key or before image")
        after = change.after
        if after is None:
            raise SchemaError(f"{self.schema.table}: a {op.value!r} change without an after image")
        names, values = self._row(after)
        if names is self.columns:
            key = self._get_key(values)
        else:
            key = tuple(values[names.index(k)] for k in self.key)
        before = change.before
        if op is Op.UPDATE and before is not None and all(k in before for k in self.key):
            old = self.key_of(before)
            if old != key:
                if names is self.columns:
                    return [Delete(old), Upsert(key, names, values)]
                return [Move(old, key, names, values)]
        return [Upsert(key, names, values)]


def _no_key(values: Any) -> tuple[Any, ...]:
    return ()


def _getter(keys: Iterable[Any], pick: Sequence[int] | None = None) -> Callable[[Any], tuple[Any, ...]]:
    """``itemgetter`` that always returns a tuple (also for one item)."""
    items = list(keys) if pick is None else [list(keys)[i] for i in pick]
    if len(items) == 1:
        one = itemgetter(items[0])
        return lambda row: (one(row),)
    return itemgetter(*items)


def _selection(raw: Any) -> ColumnSelection:
    include = getattr(raw, "include", None)
    exclude = getattr(raw, "exclude", ()) or ()
    return ColumnSelection(
        include=None if include is None else frozenset(include), exclude=frozenset(exclude)
    )


def table_settings(config: Any, default_schema: str | None) -> TableSettings:
    """TableSettings from a sink config's ``tables`` block."""
    tables = config.tables
    return TableSettings(
        auto_create=bool(tables.auto_create),
        auto_evolve=bool(tables.auto_evolve),
        name_map=dict(tables.name_map),
        columns={topic: _selection(sel) for topic, sel in tables.columns.items()},
        default_schema=default_schema,
        same_namespace=bool(getattr(tables, "same_namespace", False)),
        sink=str(getattr(config, "name", "?")),
        shared_tables=getattr(config, "conflicts", None) is not None,
    )


class ReplicaSchemas:
    """Plans per (topic, schema version), creating and evolving replica tables."""

    def __init__(self, settings: TableSettings) -> None:
        self.settings = settings
        self._plans: dict[tuple[str, int], TablePlan] = {}
        self._tables: dict[TableName, ReplicaTable | None] = {}
        # (topic, value schema id, key schema id) -> the plan plan() gave for them
        self._fast: dict[tuple[str, int, int], TablePlan] = {}
        self._owners: dict[TableName, str] = {}  # replica table -> the topic writing it

    def reset(self) -> None:
        """Forget everything learnt about the replica (after an unexpected error)."""
        self._fast.clear()
        self._plans.clear()
        self._tables.clear()

    def target(self, topic: str, table: TableId) -> TableName:
        """The replica table of ``topic`` (:mod:`cdc.sink.naming`)."""
        namespace = (table.schema or table.database) if self.settings.same_namespace else None
        return replica_table(self.settings.name_map, self.settings.default_schema, topic,
                             table.table, namespace)

    def claim(self, topic: str, name: TableName) -> None:
        """Refuse a second topic writing ``name`` (two sources' tables of one name).

        Fatal (a ConfigError, not a bad record): dead-lettering would silently
        drop one of the two streams. With ``tables.same_namespace`` several
        topics (one per master-master node) write one table on purpose.
        """
        if self.settings.same_namespace:
            return
        first = self._owners.setdefault(name, topic)
        if first != topic and not self.settings.shared_tables:
            raise ConfigError(
                f"topics {first} and {topic} both map to replica table {name}: two streams "
                "would write one table",
                hint=f"map one of them to another table in this sink's tables.name_map "
                f"(e.g. {topic}: <other name>), or subscribe to only one of them; "
                "`cdc check FILE` lists every such pair",
            )

    def _describe(self, session: SinkSession, name: TableName, *, fresh: bool = False) -> ReplicaTable | None:
        if fresh or name not in self._tables:
            self._tables[name] = session.describe(name)
        return self._tables[name]

    def plan(self, session: SinkSession, topic: str, change: DecodedChange) -> TablePlan:
        # One writer schema means one source connector: the schema's identity is the key.
        schema = change.schema
        key = (topic, id(schema))
        hit = self._plans.get(key)
        if hit is not None and hit.schema is schema:
            return hit
        connector = str(change.source.get("connector") or "")
        plan = self._make(session, topic, schema, session.dialect.native_applies(connector))
        self._plans[key] = plan
        return plan

    def remember(self, topic: str, value_id: int, key_id: int, plan: TablePlan) -> None:
        """Note the plan :meth:`plan` gave for records of these schema ids (one writer
        schema pair gives one table schema), for :meth:`known`."""
        self._fast[(topic, value_id, key_id)] = plan

    def known(self, topic: str, value_id: int, key_id: int) -> TablePlan | None:
        """The plan :meth:`plan` gave for these schema ids, without decoding a record
        (None until :meth:`remember`, and after :meth:`reset`)."""
        return self._fast.get((topic, value_id, key_id))

    def replica(self, session: SinkSession, name: TableName) -> ReplicaTable | None:
        return self._describe(session, name)

    def _ddl(
        self, session: SinkSession, name: TableName, statements: Sequence[str], column: str | None,
        *, key: bool = False,
    ) -> bool:
        """Run DDL for ``column`` (None: create the whole table); False when the table
        creation failed because another worker created it meanwhile (see
        :mod:`cdc.sink.create`). A statement the data refuses (a type change the rows
        do not fit) becomes a SchemaError, i.e. a bad record; one the replica refuses
        otherwise becomes DdlRefused, which stops the sink."""
        try:
            if column is None:
                return create_table(session, name, statements)
            session.execute_ddl(statements)
            return True
        except Exception as e:
            kind = session.dialect.classify(e)
            if kind is ErrorKind.DATA:
                raise SchemaError(f"replica table {name}: {'; '.join(statements)} failed: {e}") from e
            if kind is ErrorKind.FATAL:
                raise self._refused(name, statements, column, e, key=key) from e
            raise
        finally:
            session.invalidate(name)
            self._tables.pop(name, None)

    def _refused(
        self, name: TableName, statements: Sequence[str], column: str | None, error: Exception,
        *, key: bool,
    ) -> DdlRefused:
        what = f"column {column!r}" if column is not None else "table creation"
        if column is None:
            hint = ("create the replica table by hand with types the replica accepts "
                    "(the statement shows what the sink wanted), then restart the sink")
        elif key:
            hint = (f"{column!r} is part of the primary key: change it by hand to a type that "
                    "holds the source's values and can be a key, or set tables.auto_evolve: "
                    "false to keep the replica table as it is; then restart the sink")
        else:
            hint = ("change the column by hand to a type that holds the source's values, or set "
                    "tables.auto_evolve: false to keep the replica table as it is; then restart "
                    "the sink")
        reason = " ".join(str(error).split())
        return DdlRefused(
            f"sink {self.settings.sink}: replica table {name} {what}: the replica refused "
            f"`{'; '.join(statements)}`: {reason}",
            statement="; ".join(statements),
            column=column,
            hint=hint,
        )

    def _make(self, session: SinkSession, topic: str, schema: TableSchema, native: bool) -> TablePlan:
        d = session.dialect
        name = self.target(topic, schema.table)
        self.claim(topic, name)
        sel = (self.settings.columns or {}).get(topic, ColumnSelection())
        written = [c for c in schema.columns if sel.keeps(c.name, schema.primary_key)]
        pk = set(schema.primary_key)

        def ddl_type(c: Column) -> str:
            try:
                return d.column_ddl(c.type, native=native, key=c.name in pk)
            except SchemaError as e:
                raise SchemaError(f"{schema.table} column {c.name!r}: {e}") from e

        replica = self._describe(session, name)
        created = False
        if replica is None:
            if not self.settings.auto_create:
                raise SchemaError(
                    f"replica table {name} does not exist (topic {topic})",
                    hint="create it, or set tables.auto_create: true",
                )
            cols = [(c.name, ddl_type(c), c.nullable and c.name not in pk) for c in written]
            created = self._ddl(session, name, d.create_table(name, cols, schema.primary_key),
                                None)
            replica = self._describe(session, name, fresh=True)
            if replica is None:
                raise SchemaError(f"replica table {name} was created but cannot be described")
        if not created:  # (a table another worker created meanwhile may need what this one does)
            changes = self._evolve(session, name, replica, written, schema, native, ddl_type)
            if changes:
                if not self.settings.auto_evolve:
                    ddl = [sql for _, statements, _ in changes for sql in statements]
                    raise SchemaError(
                        f"replica table {name} does not match {schema.table}: it needs {ddl}",
                        hint="alter the replica table, or set tables.auto_evolve: true",
                    )
                for column, statements, why in changes:
                    if why:
                        log.info("replica table %s column %r: %s", name, column, why)
                    self._ddl(session, name, statements, column, key=column in pk)
                replica = self._describe(session, name, fresh=True)
                assert replica is not None
        if set(replica.primary_key) != pk:
            raise SchemaError(
                f"replica table {name} has primary key {list(replica.primary_key)}, "
                f"but {schema.table}'s is {list(schema.primary_key)}",
                hint="give the replica table the source's primary key",
            )
        to_db = []
        for c in written:
            rc = replica.column(c.name)
            if rc is None:
                raise SchemaError(f"replica table {name} has no column {c.name!r}")
            to_db.append(d.to_db(c.type, rc))
        by_name = {c.name: c for c in schema.columns}
        key_from_db = [d.from_db(by_name[k].type, replica.column(k)) for k in replica.primary_key]
        log.info(
            "topic %s (%s) -> replica table %s: %d columns", topic, schema.table, name, len(written)
        )
        return TablePlan(topic, schema, replica, [c.name for c in written], to_db, key_from_db)

    def _evolve(
        self,
        session: SinkSession,
        name: TableName,
        replica: ReplicaTable,
        written: Sequence[Column],
        schema: TableSchema,
        native: bool,
        ddl_type: Callable[[Column], str],
    ) -> list[tuple[str | None, list[str], str]]:
        """The DDL ``replica`` needs, as (column, statements, why) triples; empty when
        it already holds what ``written`` sends (the case of every restart)."""
        d = session.dialect
        out: list[tuple[str | None, list[str], str]] = []
        missing = [(c.name, ddl_type(c)) for c in written if replica.column(c.name) is None]
        if missing:
            out.append((", ".join(n for n, _ in missing), d.add_columns(name, missing), ""))
        if not self.settings.auto_evolve and not missing:
            return []
        sent = {c.name for c in written}
        pk = set(schema.primary_key)
        for c in written:
            rc = replica.column(c.name)
            if rc is None:
                continue
            wider = d.widen(rc, c.type, native=native, key=c.name in pk)
            if wider is not None:
                ddl = d.alter_column(name, rc, wider, nullable=rc.nullable)
                if ddl:
                    source_type = c.type.native or c.type.kind.value
                    why = f"{rc.type_text} -> {wider} (to hold {schema.table}'s {source_type} values)"
                    out.append((c.name, ddl, why))
        for rc in replica.columns:
            if not rc.nullable and rc.name not in sent and rc.name not in replica.primary_key:
                ddl = d.alter_column(name, rc, None, nullable=True)
                if ddl:
                    out.append((rc.name, ddl, ""))
        return out
