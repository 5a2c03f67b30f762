"""Sinks restarted over the replica tables they made, with real sources (issue #10).

A PostgreSQL and a MariaDB source replicate tables keyed by every key type
(int, bigint, varchar, text, uuid, numeric/decimal, date/timestamp, TIME,
composite) holding edge values of the other database (uuids MariaDB's uuid
type refuses, TIME beyond PostgreSQL's time range) into both replicas. The
sinks run as ``cdc sink`` processes; they are stopped and started again twice
over the existing tables. After each restart the sources change rows again
(inserts, updates, key changes, deletes), ``cdc verify`` must find every
replica equal to its source, and the restarted sinks must have run no DDL on
the replica tables.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from tests.fixtures.pipelines import pipeline_config
from tests.fixtures.services import mysql_kwargs

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
CDC = [sys.executable, "-m", "cdc.cli"]

# key type -> (PostgreSQL key column(s), key value of row i)
_PG_KEYS: dict[str, tuple[str, Any]] = {
    "int": ("k integer", lambda i: (i,)),
    "big": ("k bigint", lambda i: (2**40 + i,)),
    "vc": ("k varchar(40)", lambda i: (f"key {i}",)),
    "txt": ("k text", lambda i: (f"text key {i} " + "é" * (i % 7),)),
    "uid": ("k uuid", lambda i: (_uuid(i),)),
    "num": ("k numeric(12,3)", lambda i: (f"{i}.125",)),
    "ts": ("k timestamp", lambda i: (f"2024-01-02 03:04:{i % 60:02}.{i:06}",)),
    "cmp": ("a bigint, b text", lambda i: (i % 3, f"b{i}")),
}
_MY_KEYS: dict[str, tuple[str, Any]] = {
    "int": ("k int", lambda i: (i,)),
    "vc": ("k varchar(40)", lambda i: (f"key {i}",)),
    "uid": ("k uuid", lambda i: (f"{i:08x}-1234-4567-89ab-0123456789ab",)),
    "dec": ("k decimal(12,3)", lambda i: (f"{i}.125",)),
    "dt": ("k datetime(6)", lambda i: (f"2024-01-02 03:04:{i % 60:02}.{i:06}",)),
    "tm": ("k time(6)", lambda i: (f"{-838 + 37 * i % 1677}:59:59.{i:06}",)),
    "cmp": ("a int, b varchar(20)", lambda i: (i % 3, f"b{i}")),
}


def _uuid(i: int) -> str:
    # Variant 0 with a high version nibble: MariaDB's uuid type refuses these.
    return f"{i:08x}-e89b-f2d3-0456-4266141740{i % 100:02}"


def _time(i: int, gen: int) -> str:
    return f"{-838 + (i * 53 + gen * 7) % 1677}:{gen % 60:02}:59.{i:06}"


class Sources:
    """The source tables and the changes made to them."""

    def __init__(self, run: str, pg_dsn: str, my_url: str) -> None:
        self.run = run
        self.pg = psycopg.connect(pg_dsn, autocommit=True)
        self.my = pymysql.connect(**mysql_kwargs(my_url))  # type: ignore[arg-type]
        self.live: dict[str, set[int]] = {}
        self.next = 0
        self.rng = random.Random(run)

    def pg_table(self, t: str) -> str:
        return f"{self.run}_p_{t}"

    def my_table(self, t: str) -> str:
        return f"{self.run}_m_{t}"

    def create(self) -> None:
        for t, (cols, _) in _PG_KEYS.items():
            keys = ", ".join(c.split()[0] for c in cols.split(", "))
            self.pg.execute(f"CREATE TABLE {self.pg_table(t)} ({cols}, v text, u uuid, "
                            f"tm time(6), n numeric, PRIMARY KEY ({keys}))")
        with self.my.cursor() as cur:
            for t, (cols, _) in _MY_KEYS.items():
                keys = ", ".join(c.split()[0] for c in cols.split(", "))
                cur.execute(f"CREATE TABLE {self.my_table(t)} ({cols}, v text, u uuid, "
                            f"tm time(6), n decimal(20,4), PRIMARY KEY ({keys})) "
                            "DEFAULT CHARSET=utf8mb4")
        self.change(inserts=25, updates=0, deletes=0)

    def change(self, inserts: int, updates: int, deletes: int) -> None:
        """One transaction per source table: inserts, updates, a key change, deletes."""
        self.next += 1
        gen = self.next
        for side, specs in (("pg", _PG_KEYS), ("my", _MY_KEYS)):
            for t, (cols, key_of) in specs.items():
                name = self.pg_table(t) if side == "pg" else self.my_table(t)
                keys = [c.split()[0] for c in cols.split(", ")]
                live = self.live.setdefault(name, set())
                where = " AND ".join(f"{k} = %s" for k in keys)
                stmts: list[tuple[str, tuple[Any, ...]]] = []
                free = [i for i in range(45) if i not in live]
                for i in self.rng.sample(free, min(inserts, len(free))):
                    u = _uuid(i + gen) if side == "pg" else f"{i:08x}-0000-4000-8000-{gen:012x}"
                    values = (*key_of(i), f"v{i}.{gen}", u, _time(i, gen) if side == "my" else
                              f"{(i + gen) % 24}:00:00.{gen:06}", f"{gen}.{i}")
                    marks = ", ".join(["%s"] * len(values))
                    stmts.append((f"INSERT INTO {name} VALUES ({marks})", values))
                    live.add(i)
                for i in self.rng.sample(sorted(live), min(updates, len(live))):
                    stmts.append((f"UPDATE {name} SET v = %s WHERE {where}", (f"u{gen}", *key_of(i))))
                if updates and live:
                    old = self.rng.choice(sorted(live))
                    new = self.rng.choice([i for i in range(45, 90) if i not in live])
                    sets = ", ".join(f"{k} = %s" for k in keys)
                    stmts.append((f"UPDATE {name} SET {sets} WHERE {where}", (*key_of(new), *key_of(old))))
                    live.discard(old)
                    live.add(new)
                for i in self.rng.sample(sorted(live), min(deletes, len(live))):
                    stmts.append((f"DELETE FROM {name} WHERE {where}", key_of(i)))
                    live.discard(i)
                if side == "pg":
                    with self.pg.transaction():
                        for sql, params in stmts:
                            self.pg.execute(sql, params)
                else:
                    with self.my.cursor() as cur:
                        cur.execute("BEGIN")
                        for sql, params in stmts:
                            cur.execute(sql, params)
                        cur.execute("COMMIT")

    def drop(self) -> None:
        for t in _PG_KEYS:
            self.pg.execute(f"DROP TABLE IF EXISTS {self.pg_table(t)}")
        with self.my.cursor() as cur:
            for t in _MY_KEYS:
                cur.execute(f"DROP TABLE IF EXISTS {self.my_table(t)}")
        self.pg.close()
        self.my.close()


def _verify(config: Path, sources: list[str], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while True:
        results = {s: subprocess.run([*CDC, "verify", str(config), "--source", s], cwd=ROOT,
                                     capture_output=True, text=True, timeout=120) for s in sources}
        if all(r.returncode == 0 for r in results.values()):
            for r in results.values():  # each source table against both replicas
                n = len(_PG_KEYS) if "pg" in r.args[-1] else len(_MY_KEYS)
                assert sum(line.startswith("OK ") for line in r.stdout.splitlines()) == 2 * n, r.stdout
            return
        assert proc.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, "\n".join(
            r.stdout + r.stderr for r in results.values()) + log.read_text()[-3000:]
        time.sleep(3)


def test_sinks_restarted_twice_over_their_tables_run_no_ddl_and_stay_equal(
    kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
    mysql_source_url: str, mysql_replica_url: str, tmp_path: Path,
) -> None:
    run = f"rs{random.randint(0, 10**8)}"
    src = Sources(run, pg_source_dsn, mysql_source_url)
    names = [f"{run}_pg", f"{run}_my"]
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(pipeline_config(
        run, kafka_bootstrap, schema_registry_url,
        pg_replica_dsn=pg_replica_dsn, mysql_replica_url=mysql_replica_url,
        pg_source_dsn=pg_source_dsn, pg_tables=[f"{run}_p_*"],
        mysql_source_url=mysql_source_url, mysql_tables=[f"{run}_m_*"],
        partitions=2, log_level="INFO", kafka_extra={"consumer": {"session_timeout_ms": 6000}},
    )))
    src.create()
    source_log = tmp_path / "sources.log"
    sources = subprocess.Popen([*CDC, "run", str(config), "--only", names[0], "--only", names[1]],
                               cwd=ROOT, stdout=source_log.open("wb"), stderr=subprocess.STDOUT)
    sink: subprocess.Popen[bytes] | None = None
    try:
        for start in range(3):
            log = tmp_path / f"sinks-{start}.log"
            sink = subprocess.Popen([*CDC, "sink", str(config)], cwd=ROOT, stdout=log.open("wb"),
                                    stderr=subprocess.STDOUT)
            if start:
                src.change(inserts=5, updates=4, deletes=3)
            _verify(config, names, sink, log)
            assert sources.poll() is None, source_log.read_text()[-4000:]
            sink.send_signal(signal.SIGTERM)
            assert sink.wait(60) == 0, log.read_text()[-4000:]
            text = log.read_text()
            assert "Traceback" not in text, text[-4000:]
            ddl = [line for line in text.splitlines()
                   if "replica DDL:" in line and run in line]
            if start == 0:
                assert ddl, "the first start creates the replica tables"
            else:
                assert ddl == [], f"restart {start} ran DDL:\n" + "\n".join(ddl)
    finally:
        for proc in (sink, sources):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        subprocess.run([*CDC, "reset-source", str(config), "--name", names[0], "--release",
                        "--yes"], cwd=ROOT, capture_output=True, timeout=60)
        src.drop()
