"""Snapshot replication end to end: PostgreSQL source -> Kafka -> PostgreSQL and MariaDB replicas.

The fast test runs ``cdc snapshot run`` twice with inserts, updates and
deletes in between and compares each replica with the source through the
database drivers. The slow ones are the acceptance of issue #13: three
scheduled runs under ``cdc run`` while readers poll both replicas and must
only ever see one run's copy (every row of both tables carries the same
change-round marker, with that round's row counts), and kill -9 of the
run's reader and of a replica's loader in the middle of a run.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from cdc.config import load_config
from cdc.snapshot.runs import RunLog
from cdc.snapshot.wiring import run_store
from tests.e2e.snapshot_fixtures import SnapshotSetup, normalise, setups
from tests.fixtures.processes import processes, run_cdc, wait_for
from tests.fixtures.services import mysql_kwargs

pytestmark = pytest.mark.integration

LIVE = {"items", "accounts", "cdc_snapshot_runs"}


@pytest.fixture()
def snap(kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str,
         pg_replica_dsn: str, mysql_replica_url: str) -> Iterator[SnapshotSetup]:
    yield from setups(pg_source_dsn=pg_source_dsn, pg_replica_dsn=pg_replica_dsn,
                      mysql_replica_url=mysql_replica_url, kafka_bootstrap=kafka_bootstrap,
                      schema_registry_url=schema_registry_url)


def _runs(config: Path) -> RunLog:
    cfg = load_config(config)
    store = run_store(cfg, cfg.sources[0])
    try:
        return store.read()
    finally:
        store.close()


def _assert_replicas_equal_source(snap: SnapshotSetup) -> None:
    expect = normalise(snap.source_rows())
    assert normalise(snap.pg_rows()) == expect
    assert normalise(snap.maria_rows()) == expect
    assert snap.pg_tables() == LIVE, "stale shadow or previous tables left on the PG replica"
    assert snap.maria_tables() == LIVE, "stale shadow or previous tables left on MariaDB"


def test_snapshot_run_switches_both_replicas(snap: SnapshotSetup, tmp_path: Path) -> None:
    config = snap.config(tmp_path / "pipeline.yaml")
    first = run_cdc("snapshot", "run", str(config), timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    _assert_replicas_equal_source(snap)

    snap.change()  # inserts, updates, deletes
    second = run_cdc("snapshot", "run", str(config), timeout=240)
    assert second.returncode == 0, second.stdout + second.stderr
    _assert_replicas_equal_source(snap)  # rows deleted at the source are gone

    listed = run_cdc("snapshot", "list", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["state"] for r in runs] == ["published", "published"]
    assert runs[1]["rows"] == sum(snap.expected[1].values())
    assert runs[1]["tables"] == {f"{snap.run}.{t}": n for t, n in snap.expected[1].items()}
    assert runs[1]["position"]["kind"] == "postgres"
    for r in runs:
        assert {k: v["state"] for k, v in r["replicas"].items()} == {
            f"{snap.run}_to_pg": "switched", f"{snap.run}_to_maria": "switched"}
    status = run_cdc("snapshot", "status", str(config), "--json")
    assert status.returncode == 0, status.stderr
    (state,) = json.loads(status.stdout)
    assert state["last_published"] == runs[1]["run_id"]
    assert all(r["up_to_date"] for r in state["replicas"].values())


class Readers:
    """Threads polling both replicas; every observation must be one round's copy."""

    def __init__(self, snap: SnapshotSetup) -> None:
        self.snap = snap
        self.stop = threading.Event()
        self.seen: dict[str, set[int]] = {"pg": set(), "maria": set()}
        self.observations = {"pg": 0, "maria": 0}
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._pg, daemon=True),
                        threading.Thread(target=self._maria, daemon=True)]

    def __enter__(self) -> Readers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _check(self, where: str, markers: list[int], counts: dict[str, int]) -> None:
        self.observations[where] += 1
        if not markers and not any(counts.values()):
            return
        if len(markers) != 1:
            self.errors.append(f"{where}: mixed copy, markers {markers} counts {counts}")
            return
        expected = self.snap.expected.get(markers[0])
        if expected is not None and counts != expected:
            self.errors.append(f"{where}: round {markers[0]} copy with counts {counts}, "
                               f"expected {expected}")
        self.seen[where].add(markers[0])

    def _pg(self) -> None:
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.snap.pg_replica_dsn, autocommit=True) as c:
                    while not self.stop.is_set():
                        self._check("pg", *self.snap.pg_observe(c))
            except psycopg.errors.UndefinedTable:
                time.sleep(0.05)  # before the first switch
            except psycopg.Error as e:
                self.errors.append(f"pg: {e}")
                return

    def _maria(self) -> None:
        kw = {**mysql_kwargs(self.snap.mysql_replica_url), "database": self.snap.run}
        while not self.stop.is_set():
            try:
                with pymysql.connect(**kw) as m:
                    cur = m.cursor()
                    while not self.stop.is_set():
                        self._check("maria", *self.snap.maria_observe(cur))
            except pymysql.err.ProgrammingError as e:
                if e.args and e.args[0] == 1146:  # no such table: before the first switch
                    time.sleep(0.05)
                    continue
                self.errors.append(f"maria: {e}")
                return
            except pymysql.Error as e:
                self.errors.append(f"maria: {e}")
                return


def _switched(config: Path, snap: SnapshotSetup, count: int) -> bool:
    """Whether ``count`` runs are published and both replicas switched to the last."""
    log = _runs(config)
    done = [r for r in log.runs_of(snap.source) if r.state == "published"]
    if len(done) < count:
        return False
    reps = log.replicas_of(snap.source, done[count - 1].run_id)
    return len(reps) == 2 and all(r.state == "switched" for r in reps.values())


@pytest.mark.slow
def test_scheduled_runs_with_readers_never_see_a_mix(snap: SnapshotSetup, tmp_path: Path) -> None:
    """Acceptance: three scheduled runs under ``cdc run``, changes between runs."""
    port = random.randint(30000, 39000)
    # 30 s apart and 300 s per run: at load 40 a `cdc run` takes a minute to start its
    # processes, and each change round must still land between two runs.
    interval_s = 30
    config = snap.config(tmp_path / "pipeline.yaml", interval_s=interval_s, metrics_port=port)
    with processes(tmp_path) as procs, Readers(snap) as readers:
        procs.start("run", "run", str(config))
        for n in (1, 2, 3):
            wait_for(f"run {n} switched on both replicas", lambda n=n: _switched(config, snap, n),
                     300, procs.all_logs)
            run = [r for r in _runs(config).runs_of(snap.source) if r.state == "published"][n - 1]
            # The source as of the run's point: the last change round committed before it.
            _assert_replicas_equal_source(snap)
            assert run.rows == sum(snap.expected[snap.round].values())
            if n < 3:
                changed_at = time.time() * 1000
                snap.change()
                nxt = run.started_ms + interval_s * 1000
                assert changed_at < nxt, "the change round overlapped the next run"
        readers.stop.set()
        # cdc run: the source's scheduler on the base port, then each sink's loader.
        assert _runs_metric(_metrics(port), "published") == 3.0, _metrics(port)
        for i in (1, 2):
            assert _runs_metric(_metrics(port + i), "switched") == 3.0, _metrics(port + i)
        text = _metrics(port)
        assert any(line.startswith("cdc_snapshot_rows{") and 'kind="replication"' in line
                   for line in text.splitlines()), text
    assert not readers.errors, readers.errors[:5]
    assert readers.seen["pg"] >= {1, 2} and readers.seen["maria"] >= {1, 2}, readers.seen
    assert min(readers.observations.values()) > 50, readers.observations


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def _runs_metric(text: str, outcome: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("cdc_snapshot_runs_total{") and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def _kill(proc: Any) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


@pytest.mark.slow
def test_reader_killed_mid_run_keeps_previous_copy(snap: SnapshotSetup, tmp_path: Path) -> None:
    """kill -9 of the run's reader: replicas keep the previous copy; the next run completes."""
    config = snap.config(tmp_path / "pipeline.yaml", chunk_size=500)
    first = run_cdc("snapshot", "run", str(config), timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    before = normalise(snap.pg_rows())
    with psycopg.connect(snap.pg_source_dsn, autocommit=True) as c:  # a run long enough to kill
        c.execute(f"INSERT INTO {snap.run}.items SELECT g, 0, repeat('x', 200), g "
                  "FROM generate_series(100000, 400000) g")
    with processes(tmp_path) as procs:
        proc = procs.start("killed-run", "snapshot", "run", str(config))
        wait_for("the run to be producing rows",
                 lambda: "snapshot of " + f"{snap.run}.items" in procs.log(proc), 120,
                 lambda: procs.log(proc))
        time.sleep(1.0)
        _kill(proc)
    assert normalise(snap.pg_rows()) == before
    assert normalise(snap.maria_rows()) == before
    again = run_cdc("snapshot", "run", str(config), timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    _assert_replicas_equal_source(snap)
    states = [r.state for r in _runs(config).runs_of(snap.source)]
    assert states == ["published", "failed", "published"], states


def _shadow_rows(snap: SnapshotSetup, replica: str) -> int:
    """Rows (an estimate is enough) in the items shadow table; -1 when there is none."""
    if replica == "pg":
        with psycopg.connect(snap.pg_replica_dsn, autocommit=True) as c:
            row = c.execute("SELECT to_regclass(%s) IS NOT NULL",
                            (f"{snap.run}.items__cdc_next",)).fetchone()
            if not row or not row[0]:
                return -1
            got = c.execute(f"SELECT count(*) FROM {snap.run}.items__cdc_next").fetchone()
            return int(got[0]) if got else 0
    with pymysql.connect(**{**mysql_kwargs(snap.mysql_replica_url), "database": snap.run}) as m:
        cur = m.cursor()
        cur.execute("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                    "AND TABLE_NAME = 'items__cdc_next'", (snap.run,))
        if not cur.fetchone()[0]:
            return -1
        cur.execute("SELECT count(*) FROM `items__cdc_next`")
        return int(cur.fetchone()[0])


@pytest.mark.slow
@pytest.mark.parametrize("replica", ["pg", "maria"])
def test_replica_loader_killed_mid_load_recovers(snap: SnapshotSetup, tmp_path: Path,
                                                 replica: str) -> None:
    """kill -9 of a replica's loader while it fills the shadow table: the live table is
    untouched, and the restarted loader drops the stale shadow and completes the switch."""
    config = snap.config(tmp_path / "pipeline.yaml", chunk_size=5000)
    first = run_cdc("snapshot", "run", str(config), timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    rows_of = snap.pg_rows if replica == "pg" else snap.maria_rows
    tables_of = snap.pg_tables if replica == "pg" else snap.maria_tables
    before = normalise(rows_of())
    with psycopg.connect(snap.pg_source_dsn, autocommit=True) as c:
        c.execute(f"INSERT INTO {snap.run}.items SELECT g, 0, repeat('y', 100), g "
                  "FROM generate_series(100000, 250000) g")
    snap.change()
    # Publish only (no replica); the replica's loader runs as `cdc sink`, and is killed.
    one = snap.config(tmp_path / "one.yaml", chunk_size=5000, sinks=(replica,))
    source_only = snap.config(tmp_path / "source-only.yaml", chunk_size=5000, sinks=())
    published = run_cdc("snapshot", "run", str(source_only), timeout=600)
    assert published.returncode == 0, published.stdout + published.stderr
    sink_name = f"{snap.run}_to_{replica}"
    with processes(tmp_path) as procs:
        sink = procs.start("sink", "sink", str(one), "--name", sink_name)
        wait_for("the loader to be filling the shadow table",
                 lambda: _shadow_rows(snap, replica) > 0, 120, lambda: procs.log(sink))
        _kill(sink)
        assert normalise(rows_of()) == before  # the live table is the previous copy
        again = procs.start("sink-again", "sink", str(one), "--name", sink_name)
        wait_for("the restarted loader to switch",
                 lambda: normalise(rows_of()) == normalise(snap.source_rows()), 300,
                 lambda: procs.log(again))
        wait_for("the previous copy dropped", lambda: tables_of() == LIVE, 60,
                 lambda: procs.log(again))
        procs.stop(again)
    log = _runs(config)
    last = log.runs_of(snap.source)[-1]
    assert log.replicas_of(snap.source, last.run_id)[sink_name].state == "switched"


def test_mariadb_source_copies_at_its_consistent_snapshot(
        kafka_bootstrap: str, schema_registry_url: str, mysql_source_url: str,
        pg_replica_dsn: str, tmp_path: Path) -> None:
    """A MariaDB source (START TRANSACTION WITH CONSISTENT SNAPSHOT + binlog position)
    into a PostgreSQL replica: the run records the binlog position, the rows match."""
    import yaml

    from tests.e2e.snapshot_fixtures import run_name
    from tests.fixtures.services import connection_settings

    run = run_name()
    server = {**mysql_kwargs(mysql_source_url), "database": None}
    with pymysql.connect(**server) as m:
        cur = m.cursor()
        cur.execute(f"CREATE DATABASE `{run}`")
        cur.execute(f"CREATE TABLE `{run}`.items (id INT PRIMARY KEY, val VARCHAR(40), "
                    "amount DECIMAL(12,2)) DEFAULT CHARSET=utf8mb4")
        cur.execute(f"INSERT INTO `{run}`.items VALUES " + ", ".join(
            f"({i}, 'v{i}', {i}.25)" for i in range(1, 301)))
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_bootstrap, "offsets_topic": f"{run}.offsets",
                  "topics": {"partitions": 2, "replication_factor": 1}},
        "schema_registry": {"url": schema_registry_url},
        "sources": [{"name": f"{run}_my", "kind": "mysql",
                     "connection": {k: v for k, v in connection_settings(
                         mysql_source_url, 3306).items() if k != "database"},
                     "tables": {"include": [f"{run}.*"]}, "server_id": 7301,
                     "snapshot_replication": {"runs_topic": f"{run}.snapshot-runs"}}],
        "sinks": [{"name": f"{run}_to_pg", "kind": "postgres", "topics": [f"{run}_my.{run}.*"],
                   "target": connection_settings(pg_replica_dsn, 5432),
                   "target_schema": run}],
        "metrics": {"enabled": False},
    }))
    try:
        done = run_cdc("snapshot", "run", str(config), timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        with pymysql.connect(**server) as m:
            cur = m.cursor()
            cur.execute(f"SELECT id, val, amount FROM `{run}`.items ORDER BY id")
            expect = [tuple(r) for r in cur.fetchall()]
        with psycopg.connect(pg_replica_dsn, autocommit=True) as c:
            got = [tuple(r) for r in c.execute(
                f"SELECT id, val, amount FROM {run}.items ORDER BY id").fetchall()]
        assert got == expect and len(got) == 300
        (listed,) = json.loads(run_cdc("snapshot", "list", str(config), "--json").stdout)
        assert listed["position"]["kind"] == "mysql" and listed["rows"] == 300
    finally:
        with pymysql.connect(**server) as m:
            m.cursor().execute(f"DROP DATABASE IF EXISTS `{run}`")
        with psycopg.connect(pg_replica_dsn, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {run} CASCADE")
