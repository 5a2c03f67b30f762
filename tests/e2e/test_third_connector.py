"""A third database through the real engine, which does not know it (issue #16).

The ledger (``tests/fixtures/ledger``) is a toy database with its own
position type (byte offset of a transaction line plus an index) and its own
source block. It is registered the way a separately installed connector
package would be: a ``.dist-info`` directory with a ``cdc.connectors`` entry
point on the ``PYTHONPATH`` of the ``cdc`` processes. It then runs through the
real ``cdc source``, Kafka, the schema registry, the offsets topic and two
real ``cdc sink`` processes into a PostgreSQL and a MariaDB replica, across
kill -9 of the source and of a sink. An independent reader compares every
replica row with the ledger's own state. Nothing under ``cdc/`` names it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from cdc.sink.checkpoint import CHECKPOINT_TABLE
from tests.fixtures.ledger import KIND
from tests.fixtures.ledger import log as ledger_log
from tests.fixtures.pipelines import pipeline_config
from tests.fixtures.processes import CDC, ROOT, Processes
from tests.fixtures.services import mysql_kwargs

pytestmark = pytest.mark.integration
COLUMNS = [["id", "int64"], ["name", "string"], ["qty", "int32"], ["price", "decimal(10,2)"],
           ["at", "timestamptz"], ["payload", "bytes"]]


def test_the_engine_source_names_no_ledger() -> None:
    """The toy is unknown to the engine: no file under cdc/ mentions it."""
    hits = [str(p.relative_to(ROOT)) for p in (ROOT / "cdc").rglob("*")
            if p.suffix in (".py", ".c", ".md", ".toml") and KIND in p.read_text().lower()]
    assert hits == []


def _install_entry_point(site: Path) -> None:
    """What ``pip install`` of a package declaring the entry point leaves on disk."""
    info = site / "cdc_ledger_connector-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cdc-ledger-connector\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[cdc.connectors]\n{KIND} = tests.fixtures.ledger:CONNECTOR\n")


class Ledger:
    """A ledger, its pipeline (one source, two sinks) and the processes."""

    def __init__(self, tmp: Path, run: str, config: dict[str, Any]) -> None:
        self.run, self.tmp = run, tmp
        self.log = tmp / "ledger.jsonl"
        self.table = f"{run}_items"
        ledger_log.create(self.log, {f"shop.{self.table}": {"columns": COLUMNS, "key": ["id"]},
                                     "shop.uncaptured": {"columns": [["id", "int64"]],
                                                         "key": ["id"]}})
        self.config = tmp / "pipeline.yaml"
        self.config.write_text(yaml.safe_dump(config))
        site = tmp / "site"
        _install_entry_point(site)
        self.procs = Processes(tmp, {"PYTHONPATH": f"{site}:{ROOT}"})
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.tx = 0
        self.rng = random.Random(16)
        self.ids: set[int] = set()
        self.lock = threading.Lock()

    @property
    def names(self) -> dict[str, str]:
        return {f"{self.run}_ledger": "source", f"{self.run}_to_pg": "sink",
                f"{self.run}_to_maria": "sink"}

    def start(self, name: str) -> None:
        self.running[name] = self.procs.start(name, self.names[name], str(self.config),
                                              "--name", name)

    def kill(self, name: str) -> None:
        p = self.running[name]
        p.kill()
        p.wait(60)

    def alive(self) -> None:
        for name, p in self.running.items():
            assert p.poll() is None, f"{name} exited {p.returncode}: {self.procs.log(p)[-3000:]}"

    def row(self, i: int) -> dict[str, Any]:
        r = self.rng
        return {"id": i, "name": r.choice(["a", "é'\\\" 🙂", "", "x" * 300]),
                "qty": r.randint(-2**31, 2**31 - 1), "price": f"{r.randint(-10**10 + 1, 10**10 - 1) / 100:.2f}",
                "at": dt.datetime(2024, 2, 29, 12, r.randint(0, 59), tzinfo=dt.UTC).isoformat(),
                "payload": r.randbytes(r.randint(0, 20)).hex()}

    def commit(self, n: int) -> None:
        """One transaction of ``n`` random creates/updates/deletes (and an uncaptured change)."""
        with self.lock:
            changes: list[tuple[str, str, dict[str, Any]]] = []
            for _ in range(n):
                i = self.rng.randint(1, 400)
                t = f"shop.{self.table}"
                if i in self.ids and self.rng.random() < 0.3:
                    changes.append((t, "d", {"id": i}))
                    self.ids.discard(i)
                else:
                    changes.append((t, "u" if i in self.ids else "c", self.row(i)))
                    self.ids.add(i)
            changes.append(("shop.uncaptured", "c", {"id": self.tx}))
            self.tx += 1
            ledger_log.append(self.log, self.tx, changes)

    def expected(self) -> dict[int, tuple[Any, ...]]:
        rows = ledger_log.state(self.log)[f"shop.{self.table}"]
        return {k[0]: (r["name"], r["qty"], decimal.Decimal(r["price"]),
                       dt.datetime.fromisoformat(r["at"]), bytes.fromhex(r["payload"]))
                for k, r in rows.items()}


def _pg_rows(dsn: str, table: str) -> dict[int, tuple[Any, ...]] | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
            return None
        return {r[0]: (r[1], r[2], r[3], r[4], bytes(r[5]))
                for r in conn.execute(f"SELECT id, name, qty, price, at, payload FROM {table}")}


def _maria_rows(url: str, table: str) -> dict[int, tuple[Any, ...]] | None:
    conn = pymysql.connect(**mysql_kwargs(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = %s "
                        "AND table_schema = DATABASE()", (table,))
            if cur.fetchone() == (0,):
                return None
            cur.execute(f"SELECT id, name, qty, price, at, payload FROM {table}")
            # TIMESTAMPTZ arrives on MariaDB as a UTC DATETIME.
            return {r[0]: (r[1], r[2], r[3], r[4].replace(tzinfo=dt.UTC), bytes(r[5]))
                    for r in cur.fetchall()}
    finally:
        conn.close()


@pytest.fixture()
def ledger(kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
           mysql_replica_url: str, tmp_path: Path) -> Iterator[Ledger]:
    run = f"lg{random.randint(0, 10**8)}"
    config = pipeline_config(run, kafka_bootstrap, schema_registry_url,
                             pg_replica_dsn=pg_replica_dsn, mysql_replica_url=mysql_replica_url,
                             batch={"max_wait_ms": 50, "max_rows": 40},
                             # A killed sink's partitions move on after 6 s, not 45.
                             kafka_extra={"consumer": {"session_timeout_ms": 6000}})
    config["sources"] = [{
        "name": f"{run}_ledger", "kind": KIND,
        "connection": {"dsn": f"ledger://{tmp_path / 'ledger.jsonl'}"},
        "tables": {"include": ["shop.*"], "exclude": ["shop.uncaptured"]},
        "heartbeat_interval_s": 1,
    }]
    for sink in config["sinks"]:
        sink["topics"] = [f"{run}_ledger.shop.*"]
    lg = Ledger(tmp_path, run, config)
    try:
        yield lg
    finally:
        lg.procs.close()
        with psycopg.connect(pg_replica_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {lg.table}")
        conn2 = pymysql.connect(**mysql_kwargs(mysql_replica_url))
        with conn2.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {lg.table}")
        conn2.close()


def _converged(lg: Ledger, pg_replica_dsn: str, mysql_replica_url: str,
               timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        want = lg.expected()
        got = {"pg": _pg_rows(pg_replica_dsn, lg.table),
               "maria": _maria_rows(mysql_replica_url, lg.table)}
        if all(g == want for g in got.values()):
            return
        lg.alive()
        if time.monotonic() > deadline:
            diffs = {k: (None if g is None else sorted(set(g.items()) ^ set(want.items()))[:6])
                     for k, g in got.items()}
            pytest.fail(f"replicas differ from the ledger: {diffs}\n{lg.procs.all_logs()}")
        time.sleep(0.5)


def test_a_third_connector_streams_through_the_real_engine_kafka_and_sinks(
    ledger: Ledger, pg_replica_dsn: str, mysql_replica_url: str
) -> None:
    lg = ledger
    check = subprocess.run([*CDC, "check", str(lg.config)], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, env=lg.procs.env)
    assert check.returncode == 0 and "ready" in check.stdout, check.stdout + check.stderr
    for _ in range(30):  # the snapshot
        lg.commit(5)
    for name in lg.names:
        lg.start(name)
    _converged(lg, pg_replica_dsn, mysql_replica_url)

    # Streaming, with kill -9 of the source and then of a sink while transactions commit.
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            lg.commit(lg.rng.randint(1, 12))
            time.sleep(0.01)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for victim in (f"{lg.run}_ledger", f"{lg.run}_to_pg", f"{lg.run}_ledger"):
            time.sleep(1.5)
            lg.kill(victim)
            lg.start(victim)
        time.sleep(1.5)
    finally:
        stop.set()
        t.join()
    _converged(lg, pg_replica_dsn, mysql_replica_url)

    # The replica's checkpoint holds the ledger's own position, stored and read back
    # by the engine through the connector.
    with psycopg.connect(pg_replica_dsn, autocommit=True) as conn:
        texts = [r[0] for r in conn.execute(
            f"SELECT source_position FROM {CHECKPOINT_TABLE} WHERE consumer_group = %s",
            (f"cdc-sink-{lg.run}_to_pg",))]
    assert texts and all(json.loads(x)["kind"] == KIND for x in texts if x), texts
