"""``cdc run`` as a supervisor, against the real stack.

* A source that finishes (``initial_only``) exits 0: the sink goes on applying
  a streaming source's changes; a sink killed with -9 is restarted (the restart
  is logged with its exit code and delay) and applies again; SIGTERM stops
  every child and ``cdc run`` exits 0.
* When every child finishes cleanly, ``cdc run`` exits 0.
* ``--restart never`` keeps the stop-all behaviour for orchestrators.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.fixtures.processes import replica_count

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CDC = [sys.executable, "-m", "cdc.cli"]


def wait_for(what: str, cond: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; cdc run log:\n"
                                 + log.read_text(errors="replace")[-4000:])
        time.sleep(0.2)


def children_of(pid: int) -> list[tuple[int, str]]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (d / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out.append((int(d.name), cmd))
    return out


def processes_using(config: Path) -> list[str]:
    """Command lines of live processes started with this config file."""
    out = []
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            if d.name.isdigit() and (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if str(config) in cmd:
                    out.append(cmd)
    return out


def sink_pid(run_pid: int, sink: str) -> int | None:
    for pid, cmd in children_of(run_pid):
        if " sink " in cmd and f"--name {sink}" in cmd:
            return pid
    return None


@pytest.fixture()
def tables(pg_source_dsn: str, pg_replica_dsn: str, unique_name: str) -> Iterator[tuple[str, str]]:
    done, live = f"{unique_name}_once", f"{unique_name}_live"
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {done} (id int PRIMARY KEY, v text)")
        conn.execute(f"INSERT INTO {done} SELECT g, 'v' || g FROM generate_series(1, 40) g")
        conn.execute(f"CREATE TABLE {live} (id int PRIMARY KEY, v text)")
    yield done, live
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        for t in (done, live):
            conn.execute(f"DROP TABLE IF EXISTS {t}")
    with psycopg.connect(pg_replica_dsn, autocommit=True) as conn:
        for t in (done, live):
            conn.execute(f"DROP TABLE IF EXISTS {t}")


def pipeline_config(path: Path, run: str, kafka: str, registry: str, pg_source: str,
                    pg_replica: str, tables: tuple[str, str]) -> dict[str, Any]:
    done, live = tables
    config = {
        "kafka": {"bootstrap_servers": kafka, "offsets_topic": f"{run}.offsets",
                  "producer": {"linger_ms": 5}, "consumer": {"session_timeout_ms": 6000},
                  "topics": {"partitions": 1, "replication_factor": 1}},
        "schema_registry": {"url": registry},
        "sources": [
            {"name": f"{run}_once", "kind": "postgres", "connection": {"dsn": pg_source},
             "tables": {"include": [f"public.{done}"]}, "snapshot": {"mode": "initial_only"},
             "slot_name": f"{run}_once", "publication_name": f"{run}_once"},
            {"name": f"{run}_live", "kind": "postgres", "connection": {"dsn": pg_source},
             "tables": {"include": [f"public.{live}"]}, "heartbeat_interval_s": 1,
             "slot_name": f"{run}_live", "publication_name": f"{run}_live"},
        ],
        "sinks": [{"name": f"{run}_rep", "kind": "postgres",
                   "topics": [f"{run}_once.public.*", f"{run}_live.public.*"],
                   "target": {"dsn": pg_replica}, "batch": {"max_wait_ms": 100}}],
        "metrics": {"enabled": False},
        "log": {"level": "INFO"},
    }
    path.write_text(yaml.safe_dump(config))
    return config


def release(config: Path, *sources: str) -> None:
    for name in sources:
        subprocess.run([*CDC, "reset-source", str(config), "--name", name, "--release", "--yes"],
                       cwd=ROOT, capture_output=True, timeout=60)


def start_run(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CDC, "run", str(config), *args], cwd=ROOT, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop_run(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def test_finished_source_and_killed_sink_do_not_stop_the_pipeline(
        kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
        unique_name: str, tables: tuple[str, str], tmp_path: Path) -> None:
    run = "sv" + unique_name.rsplit("_", 1)[1]
    config, log = tmp_path / "cdc.yaml", tmp_path / "run.log"
    pipeline_config(config, run, kafka_bootstrap, schema_registry_url, pg_source_dsn,
                    pg_replica_dsn, tables)
    done, live = tables
    proc = start_run(config, log)
    try:
        wait_for("the initial_only snapshot in the replica",
                 lambda: replica_count(pg_replica_dsn, done) == 40, 90, log)
        wait_for("the initial_only source to finish",
                 lambda: f"source {run}_once finished (exit 0" in log.read_text(), 60, log)
        assert proc.poll() is None, log.read_text()[-3000:]
        # The sink still applies the streaming source's changes.
        with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {live} SELECT g, 'a' FROM generate_series(1, 10) g")
        wait_for("live rows after the source finished",
                 lambda: replica_count(pg_replica_dsn, live) == 10, 60, log)

        pid = sink_pid(proc.pid, f"{run}_rep")
        assert pid is not None, children_of(proc.pid)
        os.kill(pid, signal.SIGKILL)
        wait_for("the restart to be logged",
                 lambda: f"sink {run}_rep exited with -9" in log.read_text()
                 and "restart #1 in 1s" in log.read_text(), 30, log)
        wait_for("a new sink process", lambda: sink_pid(proc.pid, f"{run}_rep") not in (None, pid),
                 30, log)
        with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {live} SELECT g, 'b' FROM generate_series(11, 20) g")
        wait_for("rows applied by the restarted sink",
                 lambda: replica_count(pg_replica_dsn, live) == 20, 90, log)
        assert proc.poll() is None, log.read_text()[-3000:]
        assert "stopping the pipeline" not in log.read_text()
    finally:
        rc = stop_run(proc)
        release(config, f"{run}_once", f"{run}_live")
    assert rc == 0, log.read_text()[-3000:]
    assert processes_using(config) == []


def test_run_exits_zero_when_every_child_finished(
        kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
        unique_name: str, tables: tuple[str, str], tmp_path: Path) -> None:
    run = "sv" + unique_name.rsplit("_", 1)[1]
    config, log = tmp_path / "cdc.yaml", tmp_path / "run.log"
    pipeline_config(config, run, kafka_bootstrap, schema_registry_url, pg_source_dsn,
                    pg_replica_dsn, tables)
    proc = start_run(config, log, "--only", f"{run}_once")
    try:
        rc = proc.wait(120)
    finally:
        stop_run(proc)
        release(config, f"{run}_once")
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert f"source {run}_once finished (exit 0" in text and "every process has finished" in text


def test_restart_never_stops_all_at_the_first_failure(
        kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
        unique_name: str, tables: tuple[str, str], tmp_path: Path) -> None:
    run = "sv" + unique_name.rsplit("_", 1)[1]
    config, log = tmp_path / "cdc.yaml", tmp_path / "run.log"
    pipeline_config(config, run, kafka_bootstrap, schema_registry_url, pg_source_dsn,
                    pg_replica_dsn, tables)
    proc = start_run(config, log, "--restart", "never", "--only", f"{run}_live",
                     "--only", f"{run}_rep")
    try:
        wait_for("source and sink running",
                 lambda: sink_pid(proc.pid, f"{run}_rep") is not None
                 and len(children_of(proc.pid)) == 2, 60, log)
        pid = sink_pid(proc.pid, f"{run}_rep")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        rc = proc.wait(90)
    finally:
        stop_run(proc)
        release(config, f"{run}_live")
    assert rc != 0
    assert "stopping the pipeline (restart policy never)" in log.read_text()
    assert processes_using(config) == []


def test_a_sink_stopped_on_a_bad_record_is_not_restarted(
        kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
        unique_name: str, tmp_path: Path) -> None:
    """Exit 2 (errors.policy fail) would fail the same way again: logged, not restarted."""
    from confluent_kafka import Producer

    from tests.integration.sink.kafka_helpers import ensure_topic

    topic = f"{unique_name}.public.bad"
    ensure_topic(kafka_bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"\x00garbage", value=b"\x00\x00\x00\x00\x01not avro")
    assert producer.flush(30) == 0
    config, log = tmp_path / "cdc.yaml", tmp_path / "run.log"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_bootstrap},
        "schema_registry": {"url": schema_registry_url},
        "sinks": [{"name": "strict", "kind": "postgres", "topics": [topic],
                   "target": {"dsn": pg_replica_dsn}, "consumer_group": unique_name,
                   "errors": {"policy": "fail"}}],
        "metrics": {"enabled": False},
    }))
    proc = start_run(config, log)
    try:
        rc = proc.wait(120)
    finally:
        stop_run(proc)
    text = log.read_text()
    assert rc == 2, text[-3000:]
    assert "sink strict exited with 2" in text and "not restarted" in text, text[-3000:]
    assert "restart #" not in text
    assert processes_using(config) == []
