"""Helpers for the PostgreSQL source's integration tests.

Every test gets unique table, slot and publication names (the server is
shared with other suites) and drops its slot and publication at the end:
a forgotten slot would hold WAL on the shared server forever.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from cdc.events import ChangeEvent, Op
from cdc.spi import Heartbeat, StreamItem, StreamRows
from connectors.postgres.config import PostgresSourceConfig
from connectors.postgres.position import Lsn, PgPosition
from connectors.postgres.source.connector import PostgresSource


def make_config(dsn: str, name: str, **overrides: Any) -> PostgresSourceConfig:
    data: dict[str, Any] = {
        "name": name,
        "kind": "postgres",
        "connection": {"dsn": dsn},
        "tables": {"include": [f"public.{name}*"]},
        "heartbeat_interval_s": 0.5,
        "status_interval_s": 1,
    }
    for k, v in overrides.items():
        data[k] = v
    return PostgresSourceConfig.model_validate(data)


@dataclass
class Collected:
    events: list[ChangeEvent] = field(default_factory=list)
    heartbeats: list[PgPosition] = field(default_factory=list)
    runs: int = 0  # StreamRows items among them

    def rows(self) -> list[tuple[str, Any, Any, Any]]:
        return [(e.op.value, e.key, e.before, e.after) for e in self.events]


def drain(
    items: Iterator[StreamItem],
    source: PostgresSource | None,
    until: Callable[[Collected], bool],
    timeout: float = 30.0,
    acknowledge: bool = True,
    into: Collected | None = None,
) -> Collected:
    """Pull stream items until ``until`` holds, acknowledging transaction ends as a runtime would."""
    out = into if into is not None else Collected()
    deadline = time.monotonic() + timeout
    while not until(out):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s with {len(out.events)} events: "
                f"{[(e.op.value, e.key) for e in out.events[-5:]]}"
            )
        item = next(items)
        if isinstance(item, Heartbeat):
            assert isinstance(item.position, PgPosition)
            out.heartbeats.append(item.position)
            pos = item.position
        elif isinstance(item, StreamRows):  # a run of inserts (batch_stream()): its events
            run = [item.event(i) for i in range(len(item))]
            out.events += run
            pos = run[-1].position  # type: ignore[assignment]
            assert isinstance(pos, PgPosition)
            out.runs += 1
        else:
            out.events.append(item)
            assert isinstance(item.position, PgPosition)
            pos = item.position
        if acknowledge and source is not None and pos.last_in_tx:
            source.acknowledge(pos)
    return out


class Background:
    """Drains a stream in a thread (as the runtime would keep doing), acknowledging as it goes."""

    def __init__(self, items: Iterator[StreamItem], source: PostgresSource) -> None:
        self.items = items
        self.source = source
        self.collected = Collected()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            drain(self.items, self.source, lambda _c: self._stop.is_set(), timeout=600,
                  into=self.collected)
        except BaseException as e:  # reported by wait()
            self.error = e

    def wait(self, until: Callable[[Collected], bool], timeout: float = 60.0) -> Collected:
        deadline = time.monotonic() + timeout
        while not until(self.collected):
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out with {len(self.collected.events)} events")
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error
        return self.collected


def count(n: int) -> Callable[[Collected], bool]:
    return lambda c: len(c.events) >= n


def current_lsn(dsn: str) -> Lsn:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return Lsn.parse(row[0])


def reached(lsn: Lsn) -> Callable[[Collected], bool]:
    """Until a heartbeat or transaction end at or past ``lsn`` arrived."""

    def check(c: Collected) -> bool:
        last = [p for p in c.heartbeats if p.lsn >= lsn]
        ends = [e for e in c.events if e.position.last_in_tx and e.position.lsn >= lsn]  # type: ignore[union-attr]
        return bool(last or ends)

    return check


def apply(state: dict[Any, dict[str, Any]], events: list[ChangeEvent], key: str = "id") -> None:
    """Replay events onto a dict of rows keyed by ``key`` (a replica in miniature)."""
    for e in events:
        if e.op in (Op.READ, Op.CREATE, Op.UPDATE):
            assert e.after is not None
            if e.op is Op.UPDATE and e.before is not None and e.before.get(key) != e.after[key]:
                state.pop(e.before[key], None)
            row = dict(state.get(e.after[key], {}))
            row.update(e.after)
            state[e.after[key]] = row
        elif e.op is Op.DELETE:
            assert e.before is not None
            state.pop(e.before[key], None)
        elif e.op is Op.TRUNCATE:
            state.clear()


class PgEnv:
    """Tables, slots and publications a test made, removed again at teardown."""

    def __init__(self, dsn: str, name: str) -> None:
        self.dsn = dsn
        self.name = re.sub("_+", "_", name)  # source names allow no "__"
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.sources: list[PostgresSource] = []
        self.slots: set[str] = set()
        self.publications: set[str] = set()
        self.tables: list[str] = []
        self.schemas: list[str] = []

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(query, params)
        return cur.fetchall() if cur.description else []

    def table(self, ddl: str, name: str | None = None) -> str:
        table = name or self.name
        self.sql(f"DROP TABLE IF EXISTS {table} CASCADE")
        self.sql(ddl.format(t=table))
        self.tables.append(table)
        return table

    def source(self, **overrides: Any) -> PostgresSource:
        cfg = make_config(self.dsn, self.name, **overrides)
        self.slots.add(cfg.slot_name)
        self.publications.add(cfg.publication_name)
        src = PostgresSource(cfg, name=self.name)
        self.sources.append(src)
        return src

    def slot(self, slot: str) -> dict[str, Any] | None:
        rows = self.sql(
            "SELECT confirmed_flush_lsn::text, restart_lsn::text, active_pid "
            "FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        if not rows:
            return None
        return {"confirmed_flush": Lsn.parse(rows[0][0]), "restart_lsn": rows[0][1],
                "active_pid": rows[0][2]}

    def cleanup(self) -> None:
        for src in self.sources:
            with contextlib.suppress(Exception):  # teardown must go on to drop the slots
                src.close()
        conn = psycopg.connect(self.dsn, autocommit=True)
        with conn:
            for slot in self.slots | {f"cdc_{self.name}"}:
                for _ in range(50):
                    rows = conn.execute(
                        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                        (slot,)).fetchall()
                    if not rows:
                        break
                    if rows[0][0] is not None:
                        conn.execute("SELECT pg_terminate_backend(%s)", (rows[0][0],))
                        time.sleep(0.1)
                        continue
                    try:
                        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    except psycopg.Error:
                        time.sleep(0.1)
                        continue
                    break
            for pub in self.publications | {f"cdc_{self.name}"}:
                conn.execute(f'DROP PUBLICATION IF EXISTS "{pub}"')
            for table in reversed(self.tables):
                conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
            for schema in self.schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.conn.close()


@pytest.fixture()
def pg(pg_source_dsn: str, unique_name: str) -> Iterator[PgEnv]:
    env = PgEnv(pg_source_dsn, unique_name)
    try:
        yield env
    finally:
        env.cleanup()


class RunningSource:
    """A ``SourceRunner`` on a thread, recording its checkpoints.

    The waits re-raise the runner's failure as soon as it happens; leaving the
    ``with`` block stops the runner and re-raises a failure that came late.
    """

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.checkpoints: list[PgPosition] = []
        self.failure: list[BaseException] = []
        runner._on_checkpoint = self.checkpoints.append
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as e:
            self.failure.append(e)

    def __enter__(self) -> RunningSource:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.stop.set()
        self._thread.join(60)
        assert not self.failure, self.failure

    def wait_checkpoint(self, what: str, at_least: Lsn | None = None,
                        timeout: float = 60) -> None:
        """Until a checkpoint exists (at or past ``at_least``), or fail naming ``what``."""
        deadline = time.monotonic() + timeout
        while not (self.checkpoints
                   and (at_least is None or self.checkpoints[-1].lsn >= at_least)):
            assert not self.failure, self.failure
            assert time.monotonic() < deadline, f"{what} (checkpoints: {self.checkpoints[-1:]})"
            time.sleep(0.05)
