"""Shared pieces of the sink integration tests: configs, event builders, a model.

Events are built as the sources build them (``ChangeEvent`` with canonical
values) and encoded with the real ``AvroSerde``; replica state is read back
through the dialects' sessions.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc.events import ChangeEvent, Column, ColumnType, Kind, Op, SourceInfo, TableId, TableSchema
from cdc.serde import AvroSerde, SchemaRegistry
from cdc.sink.applier import Applier, ApplyResult, Record, SinkSettings
from cdc.sink.checkpoint import CHECKPOINT_TABLE, Checkpoint, CheckpointStore
from cdc.sink.schema import ReplicaSchemas, table_settings
from cdc.spi import SinkDialect, SinkSession, TableName
from connectors.mysql.config import MySqlSinkConfig
from connectors.mysql.position import BinlogFile, MySqlPosition
from connectors.mysql.sink.dialect import MySqlDialect
from connectors.postgres.config import PostgresSinkConfig
from connectors.postgres.position import Lsn, PgPosition
from connectors.postgres.sink.dialect import PostgresDialect


def sink_name(text: str) -> str:
    """A valid config name (lower-case words joined by single underscores, <= 48)."""
    return re.sub("_+", "_", re.sub("[^a-z0-9]", "_", text.lower())).strip("_")[-44:].strip("_")


def sink_config(kind: str, dsn: str, name: str, topics: Sequence[str], **extra: Any) -> Any:
    name = sink_name(name)
    if kind == "postgres":
        return PostgresSinkConfig(name=name, kind="postgres", topics=tuple(topics),
                                  target={"dsn": dsn}, **extra)
    return MySqlSinkConfig(name=name, kind="mysql", topics=tuple(topics), target={"dsn": dsn},
                           **extra)


def dialect_for(kind: str) -> SinkDialect:
    return PostgresDialect() if kind == "postgres" else MySqlDialect()


def drop_tables(session: SinkSession, *names: str) -> None:
    session.execute_ddl([f"DROP TABLE IF EXISTS {session.dialect.table_sql(TableName(None, n))}"
                         for n in names])


def items_schema(table: str, *, db: str = "app", schema: str = "public") -> TableSchema:
    """The workload table: id key, two value columns and a 'big' (TOAST-able) text."""
    return TableSchema(
        TableId(db, schema, table),
        (
            Column("id", ColumnType(Kind.INT64, "bigint"), nullable=False),
            Column("v", ColumnType(Kind.INT64, "bigint")),
            Column("label", ColumnType(Kind.STRING, "varchar(40)", length=40)),
            Column("big", ColumnType(Kind.STRING, "text")),
        ),
        ("id",),
    )


@dataclass
class EventFactory:
    """Builds a table's events with increasing positions (one transaction each)."""

    schema: TableSchema
    prefix: str = "src"
    connector: str = "postgresql"
    lsn: int = 1000
    tx_rows: int = 1

    def _source(self, index: int, last: bool) -> SourceInfo:
        position: PgPosition | MySqlPosition
        if self.connector in ("mysql", "mariadb"):
            position = MySqlPosition(BinlogFile("mysql-bin.000001"), self.lsn, index,
                                     last_in_tx=last)
        else:
            position = PgPosition(Lsn(self.lsn), index, last_in_tx=last)
        return SourceInfo(self.connector, self.prefix, "0.1", "18", position, 1_700_000_000_000,
                          tx_id=str(self.lsn))

    def event(self, op: Op, *, after: dict[str, Any] | None = None,
              before: dict[str, Any] | None = None, unchanged: Iterable[str] = (),
              index: int = 0, last: bool = True) -> ChangeEvent:
        image = after if after is not None else before
        key = None if op is Op.TRUNCATE or image is None else {
            k: image[k] for k in self.schema.primary_key}
        if op is Op.UPDATE and before is not None and after is not None:
            key = {k: after[k] for k in self.schema.primary_key}
        ev = ChangeEvent(op, self.schema, key, before, after, self._source(index, last),
                         1_700_000_000_000, unchanged=frozenset(unchanged))
        if last:
            self.lsn += 10
        return ev


@dataclass
class Model:
    """What the replica must hold after a workload (id -> row), and the workload itself."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[ChangeEvent] = field(default_factory=list)

    def random_workload(self, f: EventFactory, n: int, rng: random.Random, keys: int = 60,
                        toast: bool = True) -> None:
        for _ in range(n):
            action = rng.random()
            existing = sorted(self.rows)
            if action < 0.35 or not existing:
                k = rng.randrange(keys)
                row = {"id": k, "v": rng.randrange(1000), "label": f"l{rng.randrange(99)}",
                       "big": "x" * rng.randrange(1, 50)}
                if k in self.rows:  # a re-insert after a delete elsewhere, or a snapshot read
                    before = self.rows[k]
                    self.events.append(f.event(Op.UPDATE, after=row, before=before))
                else:
                    self.events.append(f.event(Op.CREATE, after=row))
                self.rows[k] = row
            elif action < 0.60:
                k = rng.choice(existing)
                row = {**self.rows[k], "v": rng.randrange(1000)}
                if toast and rng.random() < 0.3:  # unchanged TOAST: 'big' not sent
                    sent = {c: v for c, v in row.items() if c != "big"}
                    self.events.append(f.event(Op.UPDATE, after=sent, before=None,
                                               unchanged=["big"]))
                else:
                    self.events.append(f.event(Op.UPDATE, after=row, before=None))
                self.rows[k] = row
            elif action < 0.80:
                k = rng.choice(existing)
                self.events.append(f.event(Op.DELETE, before=self.rows.pop(k)))
            else:
                k = rng.choice(existing)
                free = [x for x in range(keys) if x not in self.rows]
                if not free:
                    continue
                new = rng.choice(free)
                old = self.rows.pop(k)
                row = {**old, "id": new, "v": rng.randrange(1000)}
                if toast and rng.random() < 0.5:
                    sent = {c: v for c, v in row.items() if c != "big"}
                    self.events.append(f.event(Op.UPDATE, after=sent, before={"id": k},
                                               unchanged=["big"]))
                else:
                    self.events.append(f.event(Op.UPDATE, after=row, before={"id": k}))
                self.rows[new] = row


def read_rows(session: SinkSession, table: str) -> dict[int, dict[str, Any]]:
    rows = session.query(
        f"SELECT id, v, label, big FROM {session.dialect.table_sql(TableName(None, table))}")
    session.rollback()
    return {int(r[0]): {"id": int(r[0]), "v": r[1], "label": r[2], "big": r[3]} for r in rows}


class ApplierHarness:
    """An applier on a real replica, fed encoded events without Kafka."""

    def __init__(self, kind: str, dsn: str, registry: SchemaRegistry, name: str,
                 topics: Sequence[str], *, policy: str = "fail", origin: str | None = None,
                 dead_letters: Any = None, partitions: int = 1, **extra: Any) -> None:
        self.config = sink_config(kind, dsn, name, topics,
                                  errors={"policy": policy}, origin=origin, **extra)
        self.dialect = dialect_for(kind)
        self.session = self.dialect.connect(self.config)
        schema = self.dialect.default_schema(self.config)
        self.store = CheckpointStore(TableName(schema, CHECKPOINT_TABLE), f"g_{name}")
        self.store.ensure_table(self.session)
        if origin is not None:
            self.session.set_origin(origin)
        self.serde = AvroSerde(registry)
        self.applier = Applier(
            SinkSettings(name, f"g_{name}", policy=policy, origin=origin),  # type: ignore[arg-type]
            self.serde,
            ReplicaSchemas(table_settings(self.config, schema)),
            self.store,
            dead_letters=dead_letters,
            partitions_of=lambda topic: partitions,
        )
        self.offsets: dict[tuple[str, int], int] = {}
        self.checkpoints: dict[tuple[str, int], Checkpoint] = {}

    def records(self, events: Iterable[ChangeEvent], partition: int = 0,
                topic: str | None = None) -> list[Record]:
        out = []
        for ev in events:
            enc = self.serde.encode(ev)
            t = topic or enc.topic
            off = self.offsets.get((t, partition), 0)
            self.offsets[(t, partition)] = off + 1
            out.append(Record(t, partition, off, enc.key, enc.value))
        return out

    def apply_records(self, records: Sequence[Record]) -> ApplyResult:
        batch: dict[tuple[str, int], list[Record]] = {}
        for r in records:
            batch.setdefault((r.topic, r.partition), []).append(r)
        missing = [tp for tp in batch if tp not in self.checkpoints]
        if missing:
            self.checkpoints.update(self.store.load(self.session, missing))
        result = self.applier.apply(self.session, batch, {tp: self.checkpoints[tp] for tp in batch})
        self.checkpoints.update(result.checkpoints)
        return result

    def apply(self, events: Iterable[ChangeEvent], partition: int = 0,
              topic: str | None = None) -> ApplyResult:
        return self.apply_records(self.records(events, partition, topic))

    def close(self) -> None:
        self.session.close()


class FakeDeadLetters:
    """Collects dead letters in memory (the Kafka-backed queue is tested end to end)."""

    def __init__(self) -> None:
        self.letters: list[Any] = []
        self.pending: list[Any] = []

    def ensure_topic(self) -> None:
        pass

    def send(self, letter: Any) -> None:
        self.pending.append(letter)

    def flush(self, timeout: float = 60.0) -> None:
        self.letters += self.pending
        self.pending = []

    def close(self) -> None:
        pass
