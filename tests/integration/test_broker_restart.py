"""Service restarts under a running ``cdc source``: the Kafka broker, then each source database.

Each test runs the real ``cdc source`` process (PostgreSQL or MySQL/MariaDB)
while a writer commits small multi-row transactions, restarts one service of
the local stack in the middle (``stack.py restart``) and then checks that:

* the process survives: the producer and the offsets store keep their records
  queued and retry while the broker is away (librdkafka's message timeout is
  minutes, the offsets write retries for as long), and the source reconnects
  to a restarted database with bounded backoff;
* checkpoints move again after the restart and catch up with the writer;
* nothing is lost: replaying the topic gives the table's final rows; a change
  repeats at most once and only if it came after the durable position the
  restart interrupted.

A last test stops the broker under an offsets write and starts it again
after longer than the store's start-up timeout: the write waits it out.

They disrupt services other tests share, so they are ``slow`` (``make
test-all``); the stack is brought back up (``stack.py up``) afterwards even
when a test fails.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from confluent_kafka.admin import AdminClient

from cdc.errors import CdcError
from cdc.offsets.store import OffsetStore, SourceOffset
from cdc.serde import AvroSerde, RegistryClient
from cdc.spi import Position
from connectors.postgres.position import Lsn, PgPosition
from tests.integration.mysql.test_mysql_runtime import (
    MyEnv,
    Rows,
    Writer,
    assert_repeats_only_after,
    consume,
    covers,
    replay,
    start_source,
    wait_for,
    write_config,
)
from tests.integration.postgres.conftest import PgEnv, current_lsn

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack.py"
TABLE_DDL = "CREATE TABLE {t} (id int PRIMARY KEY, tx int NOT NULL, v varchar(4000))"


def stack(*args: str, timeout: float = 240) -> float:
    """Run ``stack.py ARGS``; returns how long it took."""
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, str(STACK), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, f"stack.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return time.monotonic() - t0


@pytest.fixture()
def restore_stack() -> Iterator[None]:
    """Whatever happens, leave every service of the stack running.

    Tests request it after their table fixture, so it is torn down first: the
    tables are dropped on a running server.
    """
    try:
        yield
    finally:
        stack("up")


@dataclass
class Target:
    """One source under test: its config, table, writer and how to know it caught up."""

    name: str
    config: Path
    topic: str
    writer: Writer
    state: Callable[[], Rows]
    # Called once the writer has stopped: a test of a durable position that covers
    # everything committed so far.
    caught_up: Callable[[], Callable[[Position | None], bool]]


def _pg_target(pg: PgEnv, tmp_path: Path, kafka: str, registry: str) -> Target:
    t = pg.table(TABLE_DDL)
    pg.sql(f"INSERT INTO {t} SELECT g, 0, 'snapshot' FROM generate_series(1, 300) g")
    source = {
        "name": pg.name, "kind": "postgres", "connection": {"dsn": pg.dsn},
        "tables": {"include": [f"public.{t}"]},
        "snapshot": {"mode": "initial", "chunk_size": 1000},
        "heartbeat_interval_s": 0.5, "status_interval_s": 1,
        "proto_version": 2, "streaming": True,
    }

    def state() -> Rows:
        with psycopg.connect(pg.dsn) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT id, tx, v FROM {t}")
            return {r[0]: {"id": r[0], "tx": r[1], "v": r[2]} for r in cur.fetchall()}

    def caught_up() -> Callable[[Position | None], bool]:
        end = current_lsn(pg.dsn)
        return lambda p: isinstance(p, PgPosition) and p.lsn >= end

    def connect() -> Any:
        return psycopg.connect(pg.dsn, connect_timeout=2)

    return Target(
        pg.name, write_config(tmp_path, kafka, registry, source, f"{pg.name}.offsets"),
        f"{pg.name}.public.{t}",
        Writer(connect, t, errors=(psycopg.OperationalError, psycopg.InterfaceError)),
        state, caught_up,
    )


def _mysql_target(my: MyEnv, tmp_path: Path, kafka: str, registry: str) -> Target:
    t = my.table(TABLE_DDL)
    my.sql(f"INSERT INTO {t} SELECT seq, 0, 'snapshot' FROM seq_1_to_300")

    def caught_up() -> Callable[[Position | None], bool]:
        end = my.gtid_now()
        return lambda p: covers(p, end)

    def connect() -> Any:
        return pymysql.connect(**my.kwargs, autocommit=False, connect_timeout=2)

    def state() -> Rows:
        # A fresh connection: the fixture's own may have died with a restarted server.
        conn = pymysql.connect(**my.kwargs, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT id, tx, v FROM {t}")
                return {r[0]: {"id": r[0], "tx": r[1], "v": r[2]} for r in cur.fetchall()}
        finally:
            conn.close()

    return Target(
        my.name,
        write_config(tmp_path, kafka, registry, my.config_entry(), f"{my.name}.offsets"),
        f"{my.name}.{my.database}.{t}",
        Writer(connect, t, errors=(pymysql.err.OperationalError, pymysql.err.InterfaceError)),
        state, caught_up,
    )


def _durable_or_none(store: OffsetStore, name: str) -> Position | None:
    """The stored position, or None while Kafka cannot serve it (just restarted)."""
    try:
        stored = store.load(name)
    except CdcError:
        return None
    return None if stored is None else stored.position


def _restart_mid_stream(target: Target, service: str, kafka: str, registry: str,
                        tmp_path: Path) -> None:
    log = tmp_path / "source.log"
    store = OffsetStore(kafka, f"{target.name}.offsets")
    name = target.name
    proc = start_source(target.config, name, log)
    rc: int | None = None
    before: Position | None = None
    try:
        wait_for("the snapshot's checkpoint",
                 lambda: _durable_or_none(store, name) is not None, 60, proc, log)
        target.writer.start()
        first = _durable_or_none(store, name)

        def streaming() -> bool:
            now = _durable_or_none(store, name)
            return now is not None and now != first and not now.snapshot

        wait_for("a streaming checkpoint", streaming, 60, proc, log)
        time.sleep(random.uniform(0.5, 1.5))
        before = _durable_or_none(store, name)
        took = stack("restart", service)
        print(f"{service} restarted in {took:.1f}s; durable before: {before}")
        assert proc.poll() is None, (
            f"the source exited with {proc.returncode} during the {service} restart:\n"
            + log.read_text(errors="replace")[-3000:])
        wait_for(f"checkpoints to move after the {service} restart",
                 lambda: _durable_or_none(store, name) not in (None, before), 120, proc, log)
        time.sleep(1.0)  # the writer goes on a little after the source resumed
        target.writer.finish()
        assert len(target.writer.committed) > 20, "the writer kept committing"
        done = target.caught_up()
        wait_for("the source to catch up with the writer",
                 lambda: done(_durable_or_none(store, name)), 120, proc, log, interval=0.3)
    finally:
        target.writer.stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            rc = proc.wait(60)
        if rc is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text(errors="replace")
    assert rc == 0, f"the source did not stop cleanly ({rc}):\n{text[-3000:]}"
    assert before is not None
    # The outage was seen (and survived), not slept through.
    noticed = "unreachable (" if service == "kafka" else "reconnecting"
    assert noticed in text, text[-3000:]

    serde = AvroSerde(RegistryClient(registry))
    changes = consume(kafka, target.topic, serde)
    assert replay(changes) == target.state(), "every committed change is in Kafka"
    assert_repeats_only_after(changes, [before])
    repeats = len(changes) - len({c.position for c in changes})
    print(f"{len(target.writer.committed)} transactions committed, {len(changes)} changes, "
          f"{repeats} repeated, {target.writer.failures} writer retries")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture()
def pg_env(pg_source_dsn: str, kafka_bootstrap: str, unique_name: str) -> Iterator[PgEnv]:
    env = PgEnv(pg_source_dsn, unique_name)
    try:
        yield env
    finally:
        env.cleanup()
        _delete_topics(kafka_bootstrap, [f"{env.name}.public.{t}" for t in env.tables]
                       + [f"{env.name}.offsets"])


@pytest.fixture()
def my_env(mysql_source_url: str, kafka_bootstrap: str, unique_name: str) -> Iterator[MyEnv]:
    env = MyEnv(mysql_source_url, unique_name)
    try:
        yield env
    finally:
        env.cleanup(kafka_bootstrap)


def _delete_topics(kafka: str, topics: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": kafka})
    for fut in admin.delete_topics(topics, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # best effort
            fut.result(30)


# --------------------------------------------------------------------------- tests


def test_postgres_source_survives_a_broker_restart(
    pg_env: PgEnv, restore_stack: None, kafka_bootstrap: str, schema_registry_url: str,
    tmp_path: Path,
) -> None:
    target = _pg_target(pg_env, tmp_path, kafka_bootstrap, schema_registry_url)
    _restart_mid_stream(target, "kafka", kafka_bootstrap, schema_registry_url, tmp_path)


def test_mysql_source_survives_a_broker_restart(
    my_env: MyEnv, restore_stack: None, kafka_bootstrap: str, schema_registry_url: str,
    tmp_path: Path,
) -> None:
    target = _mysql_target(my_env, tmp_path, kafka_bootstrap, schema_registry_url)
    _restart_mid_stream(target, "kafka", kafka_bootstrap, schema_registry_url, tmp_path)


def test_postgres_source_survives_a_database_restart(
    pg_env: PgEnv, restore_stack: None, kafka_bootstrap: str, schema_registry_url: str,
    tmp_path: Path,
) -> None:
    target = _pg_target(pg_env, tmp_path, kafka_bootstrap, schema_registry_url)
    _restart_mid_stream(target, "pg-source", kafka_bootstrap, schema_registry_url, tmp_path)


def test_mysql_source_survives_a_database_restart(
    my_env: MyEnv, restore_stack: None, kafka_bootstrap: str, schema_registry_url: str,
    tmp_path: Path,
) -> None:
    target = _mysql_target(my_env, tmp_path, kafka_bootstrap, schema_registry_url)
    _restart_mid_stream(target, "mysql-source", kafka_bootstrap, schema_registry_url, tmp_path)


def test_offsets_write_waits_out_a_broker_outage(
    kafka_bootstrap: str, unique_name: str, restore_stack: None
) -> None:
    """A write started while the broker is down completes once it is back, even
    after longer than the start-up timeout (30 s)."""
    topic = f"{unique_name}.offsets"
    store = OffsetStore(kafka_bootstrap, topic, timeout_s=10)
    store.save(unique_name, SourceOffset(PgPosition(Lsn(1))))
    outcome: list[BaseException | None] = []

    def save() -> None:
        try:
            store.save(unique_name, SourceOffset(PgPosition(Lsn(2))))
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    stack("stop", "kafka")
    try:
        writer = threading.Thread(target=save, daemon=True)
        writer.start()
        writer.join(35)
        assert not outcome, f"the write ended while the broker was down: {outcome}"
    finally:
        stack("start", "kafka")
    writer.join(60)
    assert outcome == [None], outcome
    stored = OffsetStore(kafka_bootstrap, topic).load(unique_name)
    assert stored is not None and stored.position == PgPosition(Lsn(2))
    _delete_topics(kafka_bootstrap, [topic])
