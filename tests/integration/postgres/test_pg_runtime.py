"""The PostgreSQL source through the real runtime, Kafka, registry and offsets topic."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.rows import dict_row

from cdc.events import Op
from cdc.offsets.store import OffsetStore
from cdc.runtime.source_runner import RunnerSettings, SnapshotMode, SourceRunner
from cdc.serde import AvroSerde, DecodedChange, RegistryClient
from cdc.transport.producer import EventProducer
from cdc.transport.topics import TopicManager, TopicSpec
from connectors.postgres.position import PgPosition
from tests.fixtures.topics import read_changes
from tests.integration.postgres.conftest import PgEnv, RunningSource, current_lsn

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
CDC = ROOT / ".venv" / "bin" / "cdc"


def replay(changes: list[DecodedChange]) -> dict[Any, dict[str, Any]]:
    """Apply changes in source order (positions are unique per event; truncates repeat)."""
    state: dict[Any, dict[str, Any]] = {}
    by_position = {c.position: c for c in changes}
    for pos in sorted(by_position):  # type: ignore[type-var]
        c = by_position[pos]
        if c.op in (Op.READ, Op.CREATE, Op.UPDATE):
            assert c.after is not None
            state[c.after["id"]] = dict(c.after)
        elif c.op is Op.DELETE:
            assert c.before is not None
            state.pop(c.before["id"], None)
        elif c.op is Op.TRUNCATE:
            state.clear()
    return state


def table_state(pg: PgEnv, table: str, columns: str = "*") -> dict[Any, dict[str, Any]]:
    with psycopg.connect(pg.dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        return {r["id"]: dict(r) for r in cur.execute(f"SELECT {columns} FROM {table}")}


def test_source_runner_delivers_every_change_to_kafka(
    pg: PgEnv, kafka_bootstrap: str, schema_registry_url: str
) -> None:
    t = pg.table("""CREATE TABLE {t} (id int PRIMARY KEY, name text NOT NULL,
                    amount numeric(12,2), created timestamptz, day date, ok boolean,
                    ratio double precision, doc jsonb, ref uuid, raw bytea)""")
    pg.sql(f"""INSERT INTO {t} SELECT g, 'row ' || g, g * 1.25, '2024-01-01'::timestamptz
               + g * interval '1 minute', '2024-01-01'::date + g, g % 2 = 0, g / 3.0,
               jsonb_build_object('g', g), md5(g::text)::uuid, decode(md5(g::text), 'hex')
               FROM generate_series(1, 200) g""")
    runner = SourceRunner(
        pg.name, pg.source(), AvroSerde(RegistryClient(schema_registry_url)),
        EventProducer(kafka_bootstrap, {"linger.ms": 5}),
        OffsetStore(kafka_bootstrap, f"{pg.name}.offsets"),
        TopicManager(kafka_bootstrap),
        RunnerSettings(snapshot_mode=SnapshotMode.INITIAL, checkpoint_interval_s=0.2,
                       topic_spec=TopicSpec(partitions=3)),
    )
    with RunningSource(runner) as running:
        running.wait_checkpoint("no checkpoint after the snapshot")
        for i in range(201, 301):
            pg.sql(f"INSERT INTO {t} (id, name, amount, ok) VALUES ({i}, 'new', {i}.5, true)")
        pg.sql(f"UPDATE {t} SET name = 'updated', amount = amount + 1 WHERE id % 7 = 0")
        pg.sql(f"DELETE FROM {t} WHERE id % 11 = 0")
        with pg.conn.transaction():
            pg.sql(f"INSERT INTO {t} (id, name) VALUES (1000, 'in a tx')")
            pg.sql(f"UPDATE {t} SET id = 1001 WHERE id = 1000")
        end = current_lsn(pg.dsn)
        running.wait_checkpoint("checkpoints stopped", end)
    slot = pg.slot(f"cdc_{pg.name}")
    assert slot is not None and slot["confirmed_flush"] >= end, "acknowledged to the server"

    serde = AvroSerde(RegistryClient(schema_registry_url))
    records = read_changes(kafka_bootstrap, f"{pg.name}.public.{t}", serde)
    changes = [c for c, _ in records]
    ops = Counter(c.op for c in changes)
    # The key change 1000 -> 1001 adds one delete and one create.
    assert ops[Op.READ] == 200 and ops[Op.CREATE] == 101 + 1 and ops[Op.DELETE] == 27 + 1
    assert ops[Op.UPDATE] == 42
    assert len({c.position for c in changes}) == len(changes), "no duplicates in a clean run"
    want = table_state(pg, t, "id, name, amount, created, day, ok, ratio, doc::text AS doc, ref, raw")
    got = replay(changes)
    # The PK update of row 1000 -> 1001 is a delete of the old key and a create of the new.
    moved = [c for c in changes if c.op is Op.DELETE and c.before == {"id": 1000}]
    assert moved and any(c.op is Op.CREATE and (c.after or {}).get("id") == 1001
                         for c in changes)
    assert 1000 not in got
    assert got == want


def _config(pg: PgEnv, path: Path, table: str, kafka: str, registry: str) -> Path:
    config = {
        "kafka": {"bootstrap_servers": kafka, "offsets_topic": f"{pg.name}.offsets",
                  "producer": {"linger_ms": 5},
                  "topics": {"partitions": 3, "replication_factor": 1}},
        "schema_registry": {"url": registry},
        "sources": [{
            "name": pg.name, "kind": "postgres", "connection": {"dsn": pg.dsn},
            "tables": {"include": [f"public.{table}"]},
            "snapshot": {"mode": "initial", "chunk_size": 1000},
            "heartbeat_interval_s": 0.5, "status_interval_s": 1,
            "proto_version": 2, "streaming": True,
        }],
        "log": {"level": "INFO"},
    }
    file = path / "pipeline.yaml"
    file.write_text(yaml.safe_dump(config))
    return file


def _start(config: Path, name: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(CDC), "source", str(config), "--name", name], cwd=ROOT,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _durable(store: OffsetStore, name: str) -> PgPosition | None:
    stored = store.load(name)
    if stored is None or stored.position is None:
        return None
    assert isinstance(stored.position, PgPosition)
    return stored.position


def test_kill_9_during_a_stream_loses_nothing(
    pg: PgEnv, kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path
) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, tx int NOT NULL, v text)")
    pg.sql(f"INSERT INTO {t} SELECT g, 0, 'snapshot' FROM generate_series(1, 500) g")
    config = _config(pg, tmp_path, t, kafka_bootstrap, schema_registry_url)
    log = tmp_path / "source.log"
    store = OffsetStore(kafka_bootstrap, f"{pg.name}.offsets")

    stop = threading.Event()
    committed: list[int] = []

    def write() -> None:
        rnd = random.Random(3)
        next_id = 1000
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            tx = 0
            while not stop.is_set():
                tx += 1
                with conn.transaction():
                    for _ in range(rnd.randint(1, 4)):
                        conn.execute(f"INSERT INTO {t} VALUES (%s, %s, 'x')", (next_id, tx))
                        next_id += 1
                    if rnd.random() < 0.3:
                        conn.execute(f"UPDATE {t} SET v = v || 'y' WHERE id = %s",
                                     (rnd.randrange(1, next_id),))
                committed.append(tx)
                time.sleep(0.002)

    writer = threading.Thread(target=write)
    writer.start()
    durables: list[PgPosition] = []
    try:
        for _ in range(3):
            proc = _start(config, pg.name, log)
            deadline = time.monotonic() + 90
            first = _durable(store, pg.name)
            # Kill at a random point once this run has checkpointed something new.
            while True:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                now = _durable(store, pg.name)
                if now is not None and now != first:
                    break
                time.sleep(0.2)
            time.sleep(random.uniform(0.2, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            durable = _durable(store, pg.name)
            assert durable is not None
            durables.append(durable)
    finally:
        stop.set()
        writer.join()
    end = current_lsn(pg.dsn)
    proc = _start(config, pg.name, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            now = _durable(store, pg.name)
            if now is not None and now.lsn >= end:
                break
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)

    serde = AvroSerde(RegistryClient(schema_registry_url))
    records = read_changes(kafka_bootstrap, f"{pg.name}.public.{t}", serde)
    changes = [c for c, _ in records]
    assert replay(changes) == table_state(pg, t), "every committed change is in Kafka"
    seen = Counter(c.position for c in changes)
    for pos, n in seen.items():
        assert isinstance(pos, PgPosition)
        # A change can repeat once per kill that happened before it was durable.
        allowed = 1 + sum(1 for d in durables if pos > d)
        assert n <= allowed, f"{pos} appears {n} times; durable positions were {durables}"
