"""The replica side of a snapshot-replication run: load into shadow tables, then swap.

For a published run (:mod:`cdc.snapshot.runs`) and one sink:

1. Take the replica's loader lock (a session lock: one loader per replica and
   source at a time) and read which run the replica switched to last (the
   ``cdc_snapshot_runs`` table, in the sink's default schema). Older or equal:
   nothing to do.
2. Per table: drop any stale shadow (``<table>__cdc_next``) and previous copy
   (``<table>__cdc_prev``) a killed loader left, create the shadow like the live
   table (or, when there is none, from the first row's schema, as the sink
   creates tables), and load the run's records of that table's topic
   partitions, exactly the offset ranges the run record names, keeping only
   records whose ``cdc.snapshot.run`` header is this run (as new rows:
   :class:`cdc.spi.InsertsNewRows` where the session has it, else upserts).
3. Check that every table's shadow holds the run's row count; if not (a
   compacted or truncated topic), the run is recorded ``failed`` for this
   replica and the live tables stay as they are.
4. Swap every shadow in at once (:class:`cdc.spi.SwapsTables`), record the run
   in ``cdc_snapshot_runs``, drop the previous copies, and record the outcome
   in the runs topic.

A loader killed at any point leaves the live tables as they were (or, after
the swap, as the new copy); the next attempt cleans up and starts over.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import Consumer, TopicPartition

from cdc.config import CdcConfig, SourceConfigBase
from cdc.config.sinks import SinkConfigBase
from cdc.errors import CdcError, ConfigError
from cdc.registry import get_connector
from cdc.serde import AvroSerde, DecodedChange, DecodeLimits
from cdc.sink.cli import registry_for
from cdc.sink.naming import replica_table
from cdc.sink.reduce import Upsert
from cdc.sink.schema import ReplicaSchemas, TablePlan, table_settings
from cdc.snapshot.runs import RUN_HEADER, ReplicaRecord, RunRecord, RunStore, TableRun, now_ms
from cdc.snapshot.wiring import client_settings
from cdc.spi import ErrorKind, InsertsNewRows, SinkSession, SwapsTables, TableName
from cdc.transport.client_log import KAFKA_LOG

log = logging.getLogger(__name__)

SHADOW_SUFFIX: Final = "__cdc_next"
PREVIOUS_SUFFIX: Final = "__cdc_prev"
RUNS_TABLE: Final = "cdc_snapshot_runs"
BATCH_ROWS: Final = 5000
# Attempts of the swap when readers' locks make it time out (about a minute in all).
SWAP_ATTEMPTS: Final = 200


class RunIncomplete(CdcError):
    """The replica could not read every row of the run from Kafka: it keeps its copy."""


@dataclass(frozen=True, slots=True)
class Outcome:
    record: ReplicaRecord | None  # None: nothing done (up to date, or another loader holds it)
    reason: str = ""


def _name_of(table: TableRun) -> str:
    return table.table.rsplit(".", 1)[-1]


class ReplicaLoader:
    """Switches one sink's replica to the runs of one snapshot-replication source."""

    def __init__(self, config: CdcConfig, sink: SinkConfigBase, source: SourceConfigBase,
                 store: RunStore, *, stop: threading.Event | None = None) -> None:
        self.config = config
        self.sink = sink
        self.source = source
        self.store = store
        self.stop = stop or threading.Event()
        dialect = get_connector(sink.kind).create_dialect()
        if not isinstance(dialect, SwapsTables):
            raise ConfigError(f"sink {sink.name} ({sink.kind}) cannot switch tables atomically",
                              hint="use a PostgreSQL or MySQL/MariaDB replica for snapshot "
                              "replication")
        self.dialect = dialect
        self.swaps: SwapsTables = dialect
        self.schema = dialect.default_schema(sink)
        self.runs_table = TableName(self.schema, RUNS_TABLE)
        decoding: Any = sink.decoding
        self.serde = AvroSerde(registry_for(config),
                               limits=DecodeLimits(decoding.max_items, decoding.max_record_bytes))
        self.lock_name = f"cdc-snapshot:{source.name}:{sink.name}"[:64]

    # -- the replica's own record ------------------------------------------------------

    def _runs_ddl(self) -> list[str]:
        text = "VARCHAR(200)"
        return self.dialect.create_table(self.runs_table, [
            ("source", text, False), ("run_id", "VARCHAR(64)", False), ("sink", text, False),
            ("switched_ms", "BIGINT", False), ("row_count", "BIGINT", False),
            ("position", "VARCHAR(2000)", True), ("tables_json", "TEXT", True),
        ], ("source", "run_id"))

    def current(self, session: SinkSession) -> str | None:
        """The run this replica switched to last (None: never)."""
        session.execute_ddl(self._runs_ddl())
        rows = session.query(
            f"SELECT max(run_id) FROM {self.dialect.table_sql(self.runs_table)} "
            "WHERE source = %s", [self.source.name])
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    # -- one run -------------------------------------------------------------------------

    def apply(self, run: RunRecord) -> Outcome:
        """Switch to ``run`` if the replica is behind it; see the module docstring."""
        session = self.dialect.connect(self.sink)
        locked = False
        try:
            got = session.query(self.swaps.try_lock(self.lock_name))
            locked = bool(got and got[0][0])
            if not locked:
                return Outcome(None, "another loader is switching this replica")
            session.commit()
            current = self.current(session)
            if current is not None and current >= run.run_id:
                return Outcome(None, f"already at run {current}")
            return Outcome(self._apply(session, run))
        finally:
            try:
                if locked:
                    session.query(self.swaps.unlock(self.lock_name))
                    session.commit()
            finally:
                session.close()

    def _apply(self, session: SinkSession, run: RunRecord) -> ReplicaRecord:
        started = now_ms()
        name = self.sink.name
        self.store.write(ReplicaRecord(run.source, run.run_id, name, "loading", started))
        log.info("sink %s: loading snapshot run %s of %s (%d rows, %d tables)", name,
                 run.run_id, run.source, run.rows, len(run.tables))
        targets = [self._target(t) for t in run.tables]
        shadows = [TableName(t.schema, t.name + SHADOW_SUFFIX) for t in targets]
        try:
            swaps: list[tuple[TableName, TableName, TableName | None]] = []
            loaded = 0
            for table, target, shadow in zip(run.tables, targets, shadows, strict=True):
                rows = self._load(session, run, table, target, shadow)
                if rows is None:
                    continue  # empty at the source and no replica table to copy
                loaded += rows
                live = session.describe(target) is not None
                swaps.append((target, shadow,
                              TableName(target.schema, target.name + PREVIOUS_SUFFIX)
                              if live else None))
            self._switch(session, run, swaps)
        except BaseException as e:
            self._drop(session, shadows)
            record = ReplicaRecord(run.source, run.run_id, name, "failed", started, now_ms(),
                                   error=" ".join(f"{type(e).__name__}: {e}".split())[:500])
            try:
                self.store.write(record)
            except CdcError:
                log.warning("sink %s: could not record run %s as failed", name, run.run_id)
            raise
        record = ReplicaRecord(run.source, run.run_id, name, "switched", started, now_ms(),
                               rows=loaded)
        self.store.write(record)
        log.info("sink %s: switched to snapshot run %s (%d rows, %.1fs)", name, run.run_id,
                 loaded, record.duration_s or 0.0)
        return record

    def _target(self, table: TableRun) -> TableName:
        names: Any = self.sink.tables
        return replica_table(dict(names.name_map), self.schema, table.topic, _name_of(table))

    def _drop(self, session: SinkSession, tables: list[TableName]) -> None:
        try:
            session.rollback()
            for t in tables:
                session.execute_ddl(self.swaps.drop_table(t))
        except Exception:
            log.warning("sink %s: could not drop shadow tables %s (the next run drops them)",
                        self.sink.name, ", ".join(map(str, tables)), exc_info=True)

    def _load(self, session: SinkSession, run: RunRecord, table: TableRun, target: TableName,
              shadow: TableName) -> int | None:
        previous = TableName(target.schema, target.name + PREVIOUS_SUFFIX)
        session.execute_ddl(self.swaps.drop_table(shadow) + self.swaps.drop_table(previous))
        session.invalidate(shadow)
        if session.describe(target) is not None:
            session.execute_ddl(self.swaps.clone_table(shadow, target))
            session.invalidate(shadow)
        elif table.rows == 0:
            log.warning("sink %s: %s is empty at the source and %s does not exist: it is "
                        "created by the first run that has rows", self.sink.name, table.table,
                        target)
            return None
        settings = table_settings(self.sink, self.schema)
        mapped = f"{shadow.schema}.{shadow.name}" if shadow.schema else shadow.name
        schemas = ReplicaSchemas(type(settings)(
            auto_create=settings.auto_create, auto_evolve=settings.auto_evolve,
            name_map={table.topic: mapped}, columns=settings.columns,
            default_schema=settings.default_schema, sink=settings.sink))
        batch: dict[tuple[TablePlan, tuple[str, ...]], list[tuple[Any, ...]]] = {}
        # The shadow is empty and only this run writes it: its rows are new, so a session
        # that can bulk-insert them does (it still upserts if a key repeats).
        write = session.insert_new if isinstance(session, InsertsNewRows) else session.upsert
        pending = 0
        loaded = 0

        def flush() -> None:
            nonlocal pending
            if not pending:
                return
            session.begin()
            for (plan, columns), rows in batch.items():
                write(plan.replica, columns, rows)
            session.commit()
            batch.clear()
            pending = 0

        for change in self._records(run, table):
            plan = schemas.plan(session, table.topic, change)
            for m in plan.mutations(change):
                if type(m) is not Upsert:
                    raise RunIncomplete(f"{table.topic}: a {change.op.value!r} record in a "
                                        "snapshot run (only reads belong there)")
                batch.setdefault((plan, m.columns), []).append(m.values)
            pending += 1
            loaded += 1
            if pending >= BATCH_ROWS:
                flush()
        flush()
        if loaded == 0 and session.describe(shadow) is None:
            return None
        count = session.count(shadow)
        session.commit()
        if loaded != table.rows or count != table.rows:
            raise RunIncomplete(
                f"run {run.run_id}: {table.table} has {table.rows} rows but the replica read "
                f"{loaded} from {table.topic} ({count} in {shadow}): the topic no longer holds "
                "the whole run (compaction or retention)",
                hint="the replica keeps its previous copy; the next run replaces it")
        return loaded

    def _records(self, run: RunRecord, table: TableRun) -> Iterator[DecodedChange]:
        if not table.offsets:
            return
        consumer = Consumer({**client_settings(self.config),
                             "bootstrap.servers": self.config.kafka.bootstrap_servers,
                             "group.id": f"cdc-snapshot-{self.sink.name}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "logger": KAFKA_LOG})
        tag = run.run_id.encode()
        try:
            pending = {p: end for p, (_, end) in table.offsets.items()}
            consumer.assign([TopicPartition(table.topic, p, start)
                             for p, (start, _) in table.offsets.items()])
            idle_since = time.monotonic()
            while pending:
                if self.stop.is_set():
                    raise InterruptedError(f"sink {self.sink.name}: stopped while loading")
                msgs = consumer.consume(1000, 1.0)
                if not msgs:
                    if time.monotonic() - idle_since > 60:
                        raise RunIncomplete(
                            f"run {run.run_id}: {table.topic} partitions "
                            f"{sorted(pending)} gave nothing for 60s before their end offsets",
                            hint="the topic may have been truncated by retention")
                    continue
                idle_since = time.monotonic()
                for msg in msgs:
                    if msg.error() is not None:
                        raise RunIncomplete(f"reading {table.topic}: {msg.error()}")
                    p = msg.partition() or 0
                    end = pending.get(p)
                    offset = msg.offset() or 0
                    if end is None or offset >= end:
                        continue
                    if offset + 1 >= end:
                        del pending[p]
                    headers = msg.headers() or []
                    if not any(h[0] == RUN_HEADER and h[1] == tag for h in headers):
                        continue
                    value = msg.value()
                    if value is None:
                        continue
                    decoded = self.serde.decode(msg.key(), value)
                    if isinstance(decoded, DecodedChange):
                        yield decoded
                    if end is not None and offset + 1 >= end:
                        consumer.incremental_unassign([TopicPartition(table.topic, p)])
        finally:
            consumer.close()

    def _switch(self, session: SinkSession, run: RunRecord,
                swaps: list[tuple[TableName, TableName, TableName | None]]) -> None:
        statements = self.swaps.swap_tables(swaps)
        tables = json.dumps({t.table: t.rows for t in run.tables}, sort_keys=True)
        position = json.dumps(dict(run.position or {}), sort_keys=True)[:2000]
        attempt = 0
        while True:
            attempt += 1
            try:
                session.begin()
                for sql in statements:
                    session.execute(sql)
                session.execute(
                    f"INSERT INTO {self.dialect.table_sql(self.runs_table)} (source, run_id, "
                    "sink, switched_ms, row_count, position, tables_json) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [run.source, run.run_id, self.sink.name, now_ms(), run.rows, position,
                     tables])
                session.commit()
                break
            except Exception as e:
                session.rollback()
                if (self.dialect.classify(e) is not ErrorKind.TRANSIENT
                        or attempt >= SWAP_ATTEMPTS or self.stop.is_set()):
                    raise
                # Readers hold the tables (the dialect's lock timeout): let them finish.
                log.info("sink %s: the swap waited too long for readers' locks (attempt %d): "
                         "retrying", self.sink.name, attempt)
                time.sleep(random.uniform(0.05, 0.3))
        for live, shadow, old in swaps:
            session.invalidate(live)
            session.invalidate(shadow)
            if old is not None:
                session.execute_ddl(self.swaps.drop_table(old))
                session.invalidate(old)
