"""Tables without a primary key through the whole pipeline, in all four directions.

A PostgreSQL table (REPLICA IDENTITY FULL) and a MariaDB table (FULL row
image), both without a primary key, hold duplicate rows, NULLs and values of
several types; they are snapshotted, then changed by statements that touch
one of two identical rows, and replicated into a PostgreSQL and a MariaDB
replica. `cdc verify` compares them as multisets. The fast test restarts the
sinks over the existing replica tables; the slow one kills sinks and sources
with SIGKILL under a random duplicate-heavy workload and finds no duplicate
and no lost row.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pymysql
import pytest
import yaml

from tests.fixtures.pipelines import pipeline_config
from tests.fixtures.services import mysql_kwargs
from tests.integration.sink.kafka_helpers import end_offsets

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CDC = [sys.executable, "-m", "cdc.cli"]

PG_DDL = ("(a int, s text, n numeric(10,2), f float8, ts timestamptz, j jsonb, b bytea)")
MY_DDL = ("(a INT, s VARCHAR(100), n DECIMAL(10,2), f DOUBLE, ts DATETIME(6), j JSON, "
          "b VARBINARY(40)) DEFAULT CHARSET=utf8mb4")
INSERT = "INSERT INTO {t} (a, s, n, f, ts, j, b) VALUES (%s, %s, %s, %s, %s, %s, %s)"
# Rows whose values fit both databases (no NaN/Infinity, no time zone beyond UTC).
POOL: list[tuple[Any, ...]] = [
    (1, "same", "1.50", 0.1, "2024-02-29 12:00:00.123456", '{"k": [1, "x"]}', b"\x00\xff"),
    (2, "é'\\\" 🙂", "-0.01", -2.5e300, "1970-01-01 00:00:00", '{"a": null}', b""),
    (None, None, None, None, None, None, None),
    (3, "", "99999999.99", 5e-324, "2038-01-19 03:14:08", "[]", b"'\\"),
    (1, "same", "1.50", 0.1, None, None, None),
]


def _pg_row(r: tuple[Any, ...]) -> tuple[Any, ...]:
    ts = None if r[4] is None else r[4] + "+00"
    return (*r[:4], ts, *r[5:])


@dataclass
class Keyless:
    """The two source tables, their pipeline config and its processes."""

    run: str
    pg_dsn: str
    my_url: str
    config: Path
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def pg_table(self) -> str:
        return f"{self.run}_pg"

    @property
    def my_table(self) -> str:
        return f"{self.run}_my"

    @property
    def sources(self) -> list[str]:
        return [f"{self.run}_pg", f"{self.run}_my"]

    @property
    def sinks(self) -> list[str]:
        return [f"{self.run}_to_pg", f"{self.run}_to_maria"]

    def pg(self, sql: str, params: Any = ()) -> None:
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            conn.execute(sql.format(t=self.pg_table), params)

    def my(self, sql: str, params: Any = ()) -> None:
        conn = pymysql.connect(**mysql_kwargs(self.my_url))  # type: ignore[arg-type]
        try:
            with conn.cursor() as cur:
                cur.execute(sql.format(t=self.my_table), params)
            conn.commit()
        finally:
            conn.close()

    def both_insert(self, row: tuple[Any, ...]) -> None:
        self.pg(INSERT, _pg_row(row))
        self.my(INSERT, row)

    def start(self, name: str, kind: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([*CDC, kind, str(self.config), "--name", name],
                                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        for s in self.sources:
            self.start(s, "source")
        for s in self.sinks:
            self.start(s, "sink")

    def alive(self) -> None:
        for name, p in self.procs.items():
            assert p.poll() is None, f"{name} exited {p.returncode}: {self.tail(name)}"

    def tail(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def verify_equal(self, timeout: float = 150) -> None:
        """Wait until `cdc verify` finds both replicas equal to both sources."""
        deadline = time.monotonic() + timeout
        while True:
            results = {s: subprocess.run([*CDC, "verify", str(self.config), "--source", s],
                                         cwd=ROOT, capture_output=True, text=True, timeout=120)
                       for s in self.sources}
            if all(r.returncode == 0 for r in results.values()):
                for r in results.values():
                    assert sum(line.startswith("OK ") for line in r.stdout.splitlines()) == 2
                return
            self.alive()
            assert time.monotonic() < deadline, "\n".join(
                r.stdout + r.stderr for r in results.values()) + "".join(
                self.tail(n) for n in self.procs)
            time.sleep(2)


@pytest.fixture()
def keyless(kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str,
            pg_replica_dsn: str, mysql_source_url: str, mysql_replica_url: str,
            tmp_path: Path) -> Iterator[Keyless]:
    run = f"kl{random.randint(0, 10**8)}"
    k = Keyless(run, pg_source_dsn, mysql_source_url, tmp_path / "pipeline.yaml", tmp_path)
    k.pg(f"CREATE TABLE {{t}} {PG_DDL}")
    k.pg("ALTER TABLE {t} REPLICA IDENTITY FULL")
    k.my(f"CREATE TABLE {{t}} {MY_DDL}")
    for row in (POOL[0], POOL[0], POOL[2], POOL[2], POOL[1]):  # snapshot: duplicates, NULLs
        k.both_insert(row)
    k.config.write_text(yaml.safe_dump(pipeline_config(
        run, kafka_bootstrap, schema_registry_url,
        pg_replica_dsn=pg_replica_dsn, mysql_replica_url=mysql_replica_url,
        pg_source_dsn=pg_source_dsn, pg_tables=[k.pg_table],
        mysql_source_url=mysql_source_url, mysql_tables=[k.my_table],
        batch={"max_wait_ms": 50, "max_rows": 50},
    )))
    try:
        yield k
    finally:
        for name in list(k.procs):
            k.stop(name)
        subprocess.run([*CDC, "reset-source", str(k.config), "--name", f"{run}_pg", "--release",
                        "--yes"], cwd=ROOT, capture_output=True, timeout=60)
        k.pg("DROP TABLE IF EXISTS {t}")
        k.my("DROP TABLE IF EXISTS {t}")
        with psycopg.connect(pg_replica_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {k.pg_table}, {k.my_table}")
        conn2 = pymysql.connect(**mysql_kwargs(mysql_replica_url))  # type: ignore[arg-type]
        with conn2.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {k.pg_table}, {k.my_table}")
        conn2.close()


def _one_of_two(k: Keyless) -> None:
    """Statements that change ONE of two identical rows, on both sources."""
    k.both_insert(POOL[3])
    k.both_insert(POOL[3])
    pg_one = "WHERE ctid = (SELECT ctid FROM {t} WHERE s = %s LIMIT 1)"
    k.pg("UPDATE {t} SET s = 'one of two', f = 0.5 " + pg_one, ("same",))
    k.my("UPDATE {t} SET s = 'one of two', f = 0.5 WHERE s = %s LIMIT 1", ("same",))
    k.pg("DELETE FROM {t} " + pg_one, ("",))
    k.my("DELETE FROM {t} WHERE s = %s LIMIT 1", ("",))
    # A row of NULLs: updated NULL-safely (one of the two), then one deleted.
    k.pg("UPDATE {t} SET a = 7 WHERE ctid = (SELECT ctid FROM {t} WHERE a IS NULL LIMIT 1)")
    k.my("UPDATE {t} SET a = 7 WHERE a IS NULL LIMIT 1")
    k.pg("DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE a IS NULL LIMIT 1)")
    k.my("DELETE FROM {t} WHERE a IS NULL LIMIT 1")
    # A transaction that inserts a duplicate and deletes it again, and a multi-row update.
    with psycopg.connect(k.pg_dsn) as conn:
        conn.execute(INSERT.format(t=k.pg_table), _pg_row(POOL[1]))
        conn.execute(f"DELETE FROM {k.pg_table} WHERE ctid = (SELECT ctid FROM {k.pg_table} "
                     "WHERE a = 2 LIMIT 1)")
    k.my(INSERT, POOL[1])
    k.my("DELETE FROM {t} WHERE a = 2 LIMIT 1")
    k.pg("UPDATE {t} SET n = n - 1 WHERE n IS NOT NULL")
    k.my("UPDATE {t} SET n = n - 1 WHERE n IS NOT NULL")


def test_keyless_tables_replicate_in_four_directions_across_sink_restarts(
    keyless: Keyless, kafka_bootstrap: str,
) -> None:
    k = keyless
    k.start_all()
    _one_of_two(k)
    k.verify_equal()
    # Every change of a keyless table is in partition 0, none is a tombstone.
    my_db = urlparse(k.my_url).path.strip("/")
    for topic in (f"{k.run}_pg.public.{k.pg_table}", f"{k.run}_my.{my_db}.{k.my_table}"):
        ends = end_offsets(kafka_bootstrap, topic, 3)
        assert ends[0] > 0 and ends[1] == ends[2] == 0, ends
    # Restart the sinks over their existing keyless replica tables; change more.
    for s in k.sinks:
        k.stop(s)
    k.both_insert(POOL[4])
    k.both_insert(POOL[4])
    for s in k.sinks:
        k.start(s, "sink")
    k.pg("DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE f = 0.1 AND ts IS NULL LIMIT 1)")
    k.my("DELETE FROM {t} WHERE f = 0.1 AND ts IS NULL LIMIT 1")
    k.verify_equal()
    # Sources whose offsets are reset snapshot their tables again: each keyless replica
    # table is replaced by the new snapshot, not appended to (the row inserted meanwhile
    # reaches the replicas only through it).
    for s in k.sources:
        k.stop(s)
        subprocess.run([*CDC, "reset-source", str(k.config), "--name", s, "--yes"], cwd=ROOT,
                       check=True, capture_output=True, timeout=60)
    k.both_insert(POOL[0])
    for s in k.sources:
        k.start(s, "source")
    k.verify_equal()
    k.alive()


def _workload(k: Keyless, stop: threading.Event, seed: int,
              run_sql: Callable[[str, Any], None], pg: bool) -> None:
    rnd = random.Random(seed)
    one = ("WHERE ctid = (SELECT ctid FROM {t} WHERE a IS NOT DISTINCT FROM %s LIMIT 1)" if pg
           else "WHERE a <=> %s LIMIT 1")
    while not stop.is_set():
        r = rnd.random()
        row = rnd.choice(POOL)
        if r < 0.5:
            run_sql(INSERT, _pg_row(row) if pg else row)
        elif r < 0.75:
            run_sql("UPDATE {t} SET s = %s, f = %s " + one,
                    (rnd.choice(["u", "same", None]), rnd.choice([0.1, None, 1e10]), row[0]))
        else:
            run_sql("DELETE FROM {t} " + one, (row[0],))
        time.sleep(0.005)


@pytest.mark.slow
def test_keyless_tables_survive_kill_9_without_duplicate_or_lost_rows(keyless: Keyless) -> None:
    """SIGKILL of each sink several times (and of each source once) under a workload of
    duplicate rows: every replica ends equal to its source as a multiset."""
    k = keyless
    k.start_all()
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(fn: Callable[..., None], *args: Any) -> threading.Thread:
        def body() -> None:
            try:
                fn(*args)
            except BaseException as e:
                errors.append(e)
        t = threading.Thread(target=body)
        t.start()
        return t

    writers = [guarded(_workload, k, stop, 1, k.pg, True),
               guarded(_workload, k, stop, 2, k.my, False)]
    try:
        rnd = random.Random(3)
        for round_ in range(6):
            time.sleep(rnd.uniform(1.5, 4))
            victims = list(k.sinks) if round_ % 3 else [*k.sinks, rnd.choice(k.sources)]
            for name in victims:
                k.stop(name, signal.SIGKILL)
            time.sleep(rnd.uniform(0.2, 1.5))
            for name in victims:
                k.start(name, "source" if name in k.sources else "sink")
        time.sleep(3)
    finally:
        stop.set()
        for w in writers:
            w.join(30)
    assert not errors, errors
    k.verify_equal(timeout=240)
