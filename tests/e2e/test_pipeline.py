"""The whole pipeline: real sources, Kafka, registry and sinks, run by `cdc run`.

PostgreSQL and MariaDB sources each replicate into a PostgreSQL and a MariaDB
replica (PG->PG, PG->MariaDB, MariaDB->PG, MariaDB->MariaDB) under a randomized
workload of multi-row transactions with key updates, deletes and re-inserts of
the same key; after quiescing, `cdc verify` (chunked checksums over all rows)
must find every replica equal to its source. Both sources also write their
transaction topic (``transaction_topic: true``): one END marker per streamed
transaction, counting its events.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from cdc.serde import AvroSerde, RegistryClient
from tests.fixtures.pipelines import mysql_database, pipeline_config
from tests.fixtures.services import mysql_kwargs
from tests.fixtures.topics import read_changes, read_transaction_markers, record_count

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CDC = [sys.executable, "-m", "cdc.cli"]


def _pg_workload(dsn: str, table: str, stop: threading.Event, seed: int) -> None:
    rnd = random.Random(seed)
    live: set[int] = set(range(1, 301))
    next_id = 301
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            with conn.transaction():
                for _ in range(rnd.randint(1, 6)):
                    r = rnd.random()
                    if r < 0.35 or not live:
                        k = next_id if rnd.random() < 0.8 or not live else rnd.choice(sorted(live))
                        next_id = max(next_id, k + 1)
                        conn.execute(f"INSERT INTO {table} (id, name, amount) VALUES (%s, %s, %s) "
                                     "ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                                     (k, f"n{k} é", rnd.randint(0, 10**7) / 100))
                        live.add(k)
                    elif r < 0.65:
                        conn.execute(f"UPDATE {table} SET amount = amount + 1, name = name || 'u' "
                                     "WHERE id = %s", (rnd.choice(sorted(live)),))
                    elif r < 0.75:
                        old = rnd.choice(sorted(live))
                        conn.execute(f"UPDATE {table} SET id = %s WHERE id = %s", (next_id, old))
                        live.discard(old)
                        live.add(next_id)
                        next_id += 1
                    elif r < 0.9:
                        k = rnd.choice(sorted(live))
                        conn.execute(f"DELETE FROM {table} WHERE id = %s", (k,))
                        live.discard(k)
                    else:  # delete and re-insert the same key in one transaction
                        k = rnd.choice(sorted(live))
                        conn.execute(f"DELETE FROM {table} WHERE id = %s", (k,))
                        conn.execute(f"INSERT INTO {table} (id, name, amount) VALUES (%s, 'again', 1)",
                                     (k,))
            time.sleep(0.002)


def _mysql_workload(url: str, table: str, stop: threading.Event, seed: int) -> None:
    rnd = random.Random(seed)
    live: set[int] = set(range(1, 301))
    next_id = 301
    conn = pymysql.connect(**{**mysql_kwargs(url), "autocommit": False})  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            while not stop.is_set():
                for _ in range(rnd.randint(1, 6)):
                    r = rnd.random()
                    if r < 0.35 or not live:
                        cur.execute(f"INSERT INTO {table} (id, name, amount) VALUES (%s, %s, %s)",
                                    (next_id, f"n{next_id} é", rnd.randint(0, 10**7) / 100))
                        live.add(next_id)
                        next_id += 1
                    elif r < 0.65:
                        cur.execute(f"UPDATE {table} SET amount = amount + 1, "
                                    "name = CONCAT(name, 'u') WHERE id = %s",
                                    (rnd.choice(sorted(live)),))
                    elif r < 0.75:
                        old = rnd.choice(sorted(live))
                        cur.execute(f"UPDATE {table} SET id = %s WHERE id = %s", (next_id, old))
                        live.discard(old)
                        live.add(next_id)
                        next_id += 1
                    elif r < 0.9:
                        k = rnd.choice(sorted(live))
                        cur.execute(f"DELETE FROM {table} WHERE id = %s", (k,))
                        live.discard(k)
                    else:
                        k = rnd.choice(sorted(live))
                        cur.execute(f"DELETE FROM {table} WHERE id = %s", (k,))
                        cur.execute(f"INSERT INTO {table} (id, name, amount) VALUES (%s, 'again', 1)",
                                    (k,))
                conn.commit()
                time.sleep(0.002)
    finally:
        conn.close()


def _check_transaction_topic(bootstrap: str, registry_url: str, source: str,
                             data_topic: str) -> None:
    """``<source>.transaction`` has markers for exactly the streamed transactions of
    ``data_topic`` (the source's only table), and each END counts its events."""
    registry = RegistryClient(registry_url)
    events: dict[str, set[int]] = defaultdict(set)  # transaction id -> total_order of its events
    for change, _ in read_changes(bootstrap, data_topic, AvroSerde(registry)):
        if change.transaction is not None:  # snapshot rows belong to no transaction
            events[change.transaction.id].add(change.transaction.total_order)
    assert events, f"no streamed changes in {data_topic}"
    markers = read_transaction_markers(bootstrap, f"{source}.transaction", registry)
    assert {m["id"] for m in markers} == set(events)
    ends = {m["id"]: m["event_count"] for m in markers if m["status"] == "END"}
    assert ends == {tx: len(orders) for tx, orders in events.items()}


def test_pg_and_mariadb_replicate_both_ways_and_verify_equal(
    kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
    mysql_source_url: str, mysql_replica_url: str, tmp_path: Path,
) -> None:
    run = f"e2e{random.randint(0, 10**8)}"
    pg_table, my_table = f"{run}_pg", f"{run}_my"
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {pg_table} (id bigint PRIMARY KEY, name text NOT NULL, "
                     "amount numeric(12,2), at timestamptz NOT NULL DEFAULT now())")
        conn.execute(f"INSERT INTO {pg_table} (id, name, amount) "
                     "SELECT g, 'seed ' || g, g FROM generate_series(1, 300) g")
    conn = pymysql.connect(**mysql_kwargs(mysql_source_url))  # type: ignore[arg-type]
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {my_table} (id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, "
                    "amount DECIMAL(12,2), at DATETIME(6) NOT NULL DEFAULT NOW(6)) "
                    "DEFAULT CHARSET=utf8mb4")
        cur.executemany(f"INSERT INTO {my_table} (id, name, amount) VALUES (%s, %s, %s)",
                        [(i, f"seed {i}", i) for i in range(1, 301)])
    conn.close()

    config = tmp_path / "pipeline.yaml"
    settings = pipeline_config(
        run, kafka_bootstrap, schema_registry_url,
        pg_replica_dsn=pg_replica_dsn, mysql_replica_url=mysql_replica_url,
        pg_source_dsn=pg_source_dsn, pg_tables=[pg_table],
        mysql_source_url=mysql_source_url, mysql_tables=[my_table],
        pg_extra={"proto_version": 2, "streaming": True},
    )
    for source in settings["sources"]:
        source["transaction_topic"] = True
    config.write_text(yaml.safe_dump(settings))
    log = tmp_path / "run.log"
    proc = subprocess.Popen([*CDC, "run", str(config)], cwd=ROOT, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(fn: Any, *args: Any) -> threading.Thread:
        def body() -> None:
            try:
                fn(*args)
            except BaseException as e:
                errors.append(e)
        t = threading.Thread(target=body)
        t.start()
        return t

    try:
        # The workload starts once both snapshots are in Kafka, so its changes are streamed
        # (a source that starts late would otherwise copy them all in its snapshot).
        data_topics = {f"{run}_pg": f"{run}_pg.public.{pg_table}",
                       f"{run}_my": f"{run}_my.{mysql_database(mysql_source_url)}.{my_table}"}
        deadline = time.monotonic() + 180
        while any(record_count(kafka_bootstrap, t) < 300 for t in data_topics.values()):
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "no snapshot in Kafka\n" + log.read_text()[-3000:]
            time.sleep(0.5)
        writers = [guarded(_pg_workload, pg_source_dsn, pg_table, stop, 1),
                   guarded(_mysql_workload, mysql_source_url, my_table, stop, 2)]
        time.sleep(12)
        stop.set()
        for w in writers:
            w.join(30)
        assert not errors, errors
        assert proc.poll() is None, log.read_text()[-4000:]
        # Quiesce, then verify until equal (bounded).
        deadline = time.monotonic() + 120
        results: dict[str, subprocess.CompletedProcess[str]] = {}
        while True:
            results = {s: subprocess.run([*CDC, "verify", str(config), "--source", s], cwd=ROOT,
                                         capture_output=True, text=True, timeout=120)
                       for s in (f"{run}_pg", f"{run}_my")}
            if all(r.returncode == 0 for r in results.values()):
                break
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "\n".join(
                r.stdout + r.stderr for r in results.values()) + log.read_text()[-3000:]
            time.sleep(3)
        for r in results.values():
            # Each source table compared with both replicas, by checksum.
            assert sum(line.startswith("OK ") for line in r.stdout.splitlines()) == 2, r.stdout
        for source, topic in data_topics.items():
            _check_transaction_topic(kafka_bootstrap, schema_registry_url, source, topic)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run([*CDC, "reset-source", str(config), "--name", f"{run}_pg", "--release",
                        "--yes"], cwd=ROOT, capture_output=True, timeout=60)
