"""Replica checkpoints on real replicas: one statement per topic for a batch's rows, fencing,
a deleted row named, and the PostgreSQL sink's ``synchronous_commit`` across a replica kill -9.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cdc.errors import CdcError
from cdc.serde import AvroSerde, RegistryClient
from cdc.sink.checkpoint import CHECKPOINT_TABLE, Checkpoint, CheckpointStore, FencedError
from cdc.spi import SinkSession, TableName
from connectors.mysql.position import BinlogFile, MySqlPosition
from connectors.postgres.position import Lsn, PgPosition
from tests.integration.sink.helpers import (
    EventFactory,
    dialect_for,
    drop_tables,
    items_schema,
    read_rows,
    sink_config,
)
from tests.integration.sink.kafka_helpers import (
    ThreadWorker,
    caught_up,
    end_offsets,
    ensure_topic,
    produce,
    sink_entry,
    wait_until,
    write_config,
)
from tests.integration.sink.test_worker import Workload

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def _session(kind: str, dsn: str, name: str, **extra: object) -> SinkSession:
    return dialect_for(kind).connect(sink_config(kind, dsn, name, ["x"], **extra))


def test_save_writes_every_partition_of_a_batch_and_fences(
        replica: tuple[str, str], unique_name: str) -> None:
    kind, dsn = replica
    session = _session(kind, dsn, unique_name)
    schema = dialect_for(kind).default_schema(sink_config(kind, dsn, unique_name, ["x"]))
    store = CheckpointStore(TableName(schema, CHECKPOINT_TABLE), f"g_{unique_name}")
    store.ensure_table(session)
    a, b = f"{unique_name}.a", f"{unique_name}.b"
    tps = [(a, 0), (a, 1), (a, 2), (a, 7), (b, 0)]
    try:
        assert store.load(session, tps) == {tp: Checkpoint() for tp in tps}
        pos = (PgPosition(Lsn(0x1_0000_0100), 3, last_in_tx=True) if kind == "postgres"
               else MySqlPosition(BinlogFile("mysql-bin.000042"), 7_000_000_000, 2,
                                 last_in_tx=True))
        new = {(a, 0): Checkpoint(5, pos), (a, 1): Checkpoint(1 << 40, None),
               (a, 7): Checkpoint(0, pos), (b, 0): Checkpoint(70_000, None)}
        session.begin()
        store.verify(session, {tp: Checkpoint() for tp in new})
        store.save(session, new)
        session.commit()
        assert store.load(session, tps) == {**new, (a, 2): Checkpoint()}
        # A worker holding the old checkpoints is fenced off (it missed a rebalance).
        session.begin()
        with pytest.raises(FencedError) as fenced:
            store.verify(session, {(a, 0): Checkpoint(), (a, 2): Checkpoint()})
        session.rollback()
        assert fenced.value.stored == {(a, 0): new[(a, 0)]}
        # A deleted row is named, not silently skipped.
        session.execute(f"DELETE FROM {session.dialect.table_sql(store.table)} WHERE "
                        f"consumer_group = %s AND topic = %s AND "
                        f"{session.dialect.quote('partition')} = 2", [store.group, a])
        session.commit()
        session.begin()
        with pytest.raises(CdcError, match=rf"{a}, 2\) is missing"):
            store.save(session, {(a, 0): Checkpoint(6, pos), (a, 2): Checkpoint(1, None)})
        session.rollback()
        assert store.load(session, [(a, 0)]) == {(a, 0): new[(a, 0)]}
    finally:
        session.rollback()
        session.execute(f"DELETE FROM {session.dialect.table_sql(store.table)} "
                        "WHERE consumer_group = %s", [store.group])
        session.commit()
        session.close()


def test_synchronous_commit_is_the_sessions_when_set(pg_replica_dsn: str, unique_name: str) -> None:
    server = _session("postgres", pg_replica_dsn, unique_name)
    off = _session("postgres", pg_replica_dsn, unique_name, synchronous_commit="off")
    try:
        default = server.query("SHOW synchronous_commit")[0][0]
        server.rollback()
        assert default == "on"  # the stack's server setting, left alone when unset
        off.begin()
        assert off.query("SHOW synchronous_commit") == [("off",)]
        off.commit()
    finally:
        server.close()
        off.close()


def _stack(*args: str) -> bool:
    return subprocess.run([sys.executable, str(ROOT / "deploy/local/stack.py"), *args],
                          check=False, capture_output=True, timeout=180).returncode == 0


def _start_replica() -> None:
    # Right after a kill -9 the postmaster's orphaned backends can still hold its lock
    # file for a moment: start until the server takes it.
    wait_until("pg-replica to start again", lambda: _stack("start", "pg-replica"), timeout=120)


@pytest.mark.slow
def test_replica_killed_right_after_asynchronous_commits_ends_equal_to_the_model(
        kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
        registry: RegistryClient, unique_name: str, tmp_path: Path) -> None:
    """synchronous_commit off: the replica server is killed -9 while batches commit (the
    last commits may be lost, with their checkpoint rows); the worker waits, resumes from
    the checkpoints the replica kept, and the replica ends equal to the model."""
    parts = 3
    serde = AvroSerde(registry)
    f = EventFactory(items_schema(unique_name), prefix=unique_name)
    topic = f"{unique_name}.public.{unique_name}"
    ensure_topic(kafka_bootstrap, topic, parts)
    w = Workload(f, serde, parts, seed=23)
    produce(kafka_bootstrap, serde, w.events(6000), parts)
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        sink_entry("async", "postgres", pg_replica_dsn, [topic], consumer_group=f"g_{unique_name}",
                   batch={"max_rows": 100, "max_wait_ms": 20}, synchronous_commit="off")])
    session = _session("postgres", pg_replica_dsn, "async")
    drop_tables(session, unique_name)
    session.close()
    worker = ThreadWorker(config, "async")
    try:
        wait_until("some batches", lambda: worker.worker.stats.batches >= 8)
        assert _stack("kill", "pg-replica")  # SIGKILL, mid-stream: commits in flight
        _start_replica()
        produce(kafka_bootstrap, serde, w.events(1500), parts)
        ends = end_offsets(kafka_bootstrap, topic, parts)
        session = _session("postgres", pg_replica_dsn, "async")
        wait_until("catch up after the kill", caught_up(session, f"g_{unique_name}", topic, ends),
                   timeout=120)
        assert read_rows(session, unique_name) == w.rows
        assert worker.worker.stats.retries >= 1
    finally:
        worker.close()
        _start_replica()  # (a no-op when it runs)
        s = _session("postgres", pg_replica_dsn, "async")
        drop_tables(s, unique_name)
        s.close()
    assert worker.error is None
