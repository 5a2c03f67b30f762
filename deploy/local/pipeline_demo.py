"""`make demo`, part two: the whole pipeline on the local stack.

A PostgreSQL source and a MariaDB source, a generated workload on both,
sinks into a PostgreSQL and a MariaDB replica (each replica gets both
tables), throughput and lag shown while it runs, then `cdc verify`.

Every run uses fresh names (topics, slot, offsets topic, consumer groups) so it
can be repeated; replica tables are recreated. Set DEMO_SECONDS to change the
workload's length (default 20).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pymysql
import yaml
from confluent_kafka import Consumer, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
CDC = [sys.executable, "-m", "cdc.cli"]
PG_TABLE = "demo_pg_orders"
MY_TABLE = "demo_my_orders"


def mysql_connect(url: str, database: str | None = None) -> Any:
    u = urlparse(url)
    return pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", database=database or u.path.lstrip("/"),
                           autocommit=True, charset="utf8mb4")


def prepare(env: dict[str, str], run: str) -> Path:
    with psycopg.connect(env["PG_SOURCE_DSN"], autocommit=True) as pg:
        pg.execute(f"DROP TABLE IF EXISTS {PG_TABLE}")
        pg.execute(f"""CREATE TABLE {PG_TABLE} (
            id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2),
            status text, tags text[], placed timestamptz NOT NULL DEFAULT now(), note jsonb)""")
        pg.execute(f"INSERT INTO {PG_TABLE} (id, customer, amount, status) "
                   "SELECT g, 'customer ' || g, g * 1.5, 'new' FROM generate_series(1, 2000) g")
    my = mysql_connect(env["MYSQL_SOURCE_URL"])
    with my.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {MY_TABLE}")
        cur.execute(f"""CREATE TABLE {MY_TABLE} (
            id BIGINT PRIMARY KEY, customer VARCHAR(100) NOT NULL, amount DECIMAL(12,2),
            status ENUM('new','paid','shipped'), placed DATETIME(6) NOT NULL,
            note JSON) DEFAULT CHARSET=utf8mb4""")
        cur.executemany(f"INSERT INTO {MY_TABLE} VALUES (%s, %s, %s, 'new', NOW(6), NULL)",
                        [(i, f"customer {i}", i * 2.5) for i in range(1, 2001)])
    my.close()
    # Fresh replica tables: the sinks create them from the schemas.
    with psycopg.connect(env["PG_REPLICA_DSN"], autocommit=True) as pg:
        for t in (PG_TABLE, MY_TABLE):
            pg.execute(f"DROP TABLE IF EXISTS {t}")
    my = mysql_connect(env["MYSQL_REPLICA_URL"])
    with my.cursor() as cur:
        for t in (PG_TABLE, MY_TABLE):
            cur.execute(f"DROP TABLE IF EXISTS {t}")
    my.close()

    pg_url = urlparse(env["PG_SOURCE_DSN"])
    pgr_url = urlparse(env["PG_REPLICA_DSN"])
    my_url = urlparse(env["MYSQL_SOURCE_URL"])
    myr_url = urlparse(env["MYSQL_REPLICA_URL"])
    topics = [f"demo_pg_{run}.public.*", f"demo_my_{run}.cdc_source.*"]
    config = {
        "kafka": {"bootstrap_servers": env["KAFKA_BOOTSTRAP"],
                  "offsets_topic": f"demo.offsets.{run}",
                  "topics": {"partitions": 3, "replication_factor": 1}},
        "schema_registry": {"url": env["SCHEMA_REGISTRY_URL"]},
        "sources": [
            {"name": f"demo_pg_{run}", "kind": "postgres",
             "connection": {"host": pg_url.hostname, "port": pg_url.port,
                            "database": pg_url.path.lstrip("/"), "user": "postgres"},
             "tables": {"include": [f"public.{PG_TABLE}"]},
             "slot_name": f"demo_{run}", "publication_name": f"demo_{run}",
             "proto_version": 2, "streaming": True, "heartbeat_interval_s": 1},
            {"name": f"demo_my_{run}", "kind": "mysql",
             "connection": {"host": my_url.hostname, "port": my_url.port, "user": "root"},
             "tables": {"include": [f"cdc_source.{MY_TABLE}"]},
             "server_id": 6000 + random.randint(1, 999), "heartbeat_interval_s": 1},
        ],
        "sinks": [
            {"name": f"replica_pg_{run}", "kind": "postgres", "topics": topics,
             "target": {"host": pgr_url.hostname, "port": pgr_url.port,
                        "database": pgr_url.path.lstrip("/"), "user": "postgres"}},
            {"name": f"replica_mysql_{run}", "kind": "mysql", "topics": topics,
             "target": {"host": myr_url.hostname, "port": myr_url.port,
                        "database": myr_url.path.lstrip("/"), "user": "root"}},
        ],
        "log": {"level": "WARNING"},
    }
    folder = ROOT / ".cdc-local" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Workload:
    """Random multi-row transactions (insert 60%, update 30%, delete 10%) on both sources."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.stop = threading.Event()
        self.changes = {"postgres": 0, "mariadb": 0}
        self.errors: list[BaseException] = []

    def _pg(self) -> None:
        rnd = random.Random(1)
        next_id = 2001
        with psycopg.connect(self.env["PG_SOURCE_DSN"], autocommit=True) as conn:
            while not self.stop.is_set():
                with conn.transaction():
                    for _ in range(rnd.randint(1, 5)):
                        r = rnd.random()
                        if r < 0.6:
                            conn.execute(
                                f"INSERT INTO {PG_TABLE} (id, customer, amount, status, tags, note)"
                                " VALUES (%s, %s, %s, 'new', %s, %s::jsonb)",
                                (next_id, f"customer {next_id} ✓", rnd.randint(1, 10**6) / 100,
                                 ["a", "b"], '{"k": 1}'))
                            next_id += 1
                        elif r < 0.9:
                            conn.execute(f"UPDATE {PG_TABLE} SET status = 'paid', amount = amount + 1"
                                         " WHERE id = %s", (rnd.randrange(1, next_id),))
                        else:
                            conn.execute(f"DELETE FROM {PG_TABLE} WHERE id = %s",
                                         (rnd.randrange(1, next_id),))
                        self.changes["postgres"] += 1

    def _my(self) -> None:
        rnd = random.Random(2)
        next_id = 2001
        conn = mysql_connect(self.env["MYSQL_SOURCE_URL"])
        conn.autocommit(False)
        with conn.cursor() as cur:
            while not self.stop.is_set():
                for _ in range(rnd.randint(1, 5)):
                    r = rnd.random()
                    if r < 0.6:
                        cur.execute(f"INSERT INTO {MY_TABLE} VALUES (%s, %s, %s, 'new', NOW(6), "
                                    "JSON_OBJECT('k', 1))",
                                    (next_id, f"customer {next_id} ✓", rnd.randint(1, 10**6) / 100))
                        next_id += 1
                    elif r < 0.9:
                        cur.execute(f"UPDATE {MY_TABLE} SET status = 'paid', amount = amount + 1 "
                                    "WHERE id = %s", (rnd.randrange(1, next_id),))
                    else:
                        cur.execute(f"DELETE FROM {MY_TABLE} WHERE id = %s",
                                    (rnd.randrange(1, next_id),))
                    self.changes["mariadb"] += 1
                conn.commit()
        conn.close()

    def start(self) -> list[threading.Thread]:
        def guarded(fn: Any) -> Any:
            def run() -> None:
                try:
                    fn()
                except BaseException as e:  # reported by the main thread
                    self.errors.append(e)
            return run

        threads = [threading.Thread(target=guarded(f), daemon=True) for f in (self._pg, self._my)]
        for t in threads:
            t.start()
        return threads


def group_lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Messages not yet applied: high watermark minus the group's committed offset."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        md = c.list_topics(timeout=5)
        parts = [TopicPartition(t, p) for t in topics if t in md.topics
                 for p in md.topics[t].partitions]
        lag = 0
        for tp in c.committed(parts, timeout=5):
            _, high = c.get_watermark_offsets(tp, timeout=5)
            lag += high - (tp.offset if tp.offset >= 0 else 0)
        return lag
    finally:
        c.close()


def counts(env: dict[str, str]) -> dict[str, int]:
    out = {}
    for label, dsn in (("pg-source", env["PG_SOURCE_DSN"]), ("pg-replica", env["PG_REPLICA_DSN"])):
        with psycopg.connect(dsn, autocommit=True) as conn:
            for t in (PG_TABLE, MY_TABLE):
                try:
                    row = conn.execute(f"SELECT count(*) FROM {t}").fetchone()
                    out[f"{label}:{t}"] = row[0] if row else 0
                except psycopg.errors.UndefinedTable:
                    out[f"{label}:{t}"] = 0
    for label, url in (("maria-source", env["MYSQL_SOURCE_URL"]),
                       ("maria-replica", env["MYSQL_REPLICA_URL"])):
        conn = mysql_connect(url)
        with conn.cursor() as cur:
            for t in (PG_TABLE, MY_TABLE):
                try:
                    cur.execute(f"SELECT count(*) FROM {t}")
                    out[f"{label}:{t}"] = int(cur.fetchone()[0])
                except pymysql.err.ProgrammingError:
                    out[f"{label}:{t}"] = 0
        conn.close()
    return out


def run_demo(env: dict[str, str]) -> int:
    run = f"{int(time.time()) % 1_000_000}"
    seconds = float(os.environ.get("DEMO_SECONDS", "20"))
    config = prepare(env, run)
    print(f"\ncdc demo: the pipeline (config {config.relative_to(ROOT)})")
    log = config.parent / f"run-{run}.log"
    proc = subprocess.Popen([*CDC, "run", str(config)], cwd=ROOT, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    topics = [f"demo_pg_{run}.public.{PG_TABLE}", f"demo_my_{run}.cdc_source.{MY_TABLE}"]
    groups = {"pg replica": f"cdc-sink-replica_pg_{run}",
              "maria replica": f"cdc-sink-replica_mysql_{run}"}
    work = Workload(env)
    rc = 1
    try:
        time.sleep(3)  # snapshots of the 2,000 seed rows per table
        threads = work.start()
        t0 = time.monotonic()
        last = dict(work.changes)
        while time.monotonic() - t0 < seconds:
            time.sleep(2)
            if proc.poll() is not None:
                raise RuntimeError(f"cdc run exited with {proc.returncode}; see {log}")
            now = dict(work.changes)
            rate = {k: (now[k] - last[k]) / 2 for k in now}
            last = now
            lags = {k: group_lag(env["KAFKA_BOOTSTRAP"], g, topics) for k, g in groups.items()}
            print(f"  t={time.monotonic() - t0:5.1f}s  writes/s: postgres {rate['postgres']:7.0f}"
                  f"  mariadb {rate['mariadb']:7.0f}   lag (records): "
                  + "  ".join(f"{k} {v}" for k, v in lags.items()), flush=True)
        work.stop.set()
        for t in threads:
            t.join(30)
        if work.errors:
            raise work.errors[0]
        print(f"  workload done: {work.changes['postgres']} changes on PostgreSQL, "
              f"{work.changes['mariadb']} on MariaDB; waiting for the replicas")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            c = counts(env)
            if (c[f"pg-replica:{PG_TABLE}"] == c[f"maria-replica:{PG_TABLE}"]
                    == c[f"pg-source:{PG_TABLE}"]
                    and c[f"pg-replica:{MY_TABLE}"] == c[f"maria-replica:{MY_TABLE}"]
                    == c[f"maria-source:{MY_TABLE}"]
                    and all(group_lag(env["KAFKA_BOOTSTRAP"], g, topics) == 0
                            for g in groups.values())):
                break
            time.sleep(1)
        c = counts(env)
        for table, origin in ((PG_TABLE, "pg-source"), (MY_TABLE, "maria-source")):
            print(f"  {table}: {origin} {c[f'{origin}:{table}']} rows, pg-replica "
                  f"{c[f'pg-replica:{table}']}, maria-replica {c[f'maria-replica:{table}']}")
        rc = 0
        for source in (f"demo_pg_{run}", f"demo_my_{run}"):
            print(f"\n  cdc verify --source {source}")
            rc |= subprocess.call([*CDC, "verify", str(config), "--source", source], cwd=ROOT)
        print("\n  replicas equal their sources" if rc == 0 else "\n  DIVERGENCE (see above)")
    finally:
        work.stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.call([*CDC, "reset-source", str(config), "--name", f"demo_pg_{run}",
                         "--release", "--yes"], cwd=ROOT, stdout=subprocess.DEVNULL)
    return rc
