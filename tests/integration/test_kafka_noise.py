"""What a person reads in the log when Kafka hiccups or a sink starts first.

* A Kafka restart under a running ``cdc run`` (a source and a sink) is one
  WARNING per process and an INFO summary when the broker is back; no ERROR,
  since everything recovers by itself (and every row still arrives).
* A sink subscribed to a topic that does not exist yet says so once, at INFO.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.fixtures.processes import replica_count
from tests.integration.sink.kafka_helpers import ensure_topic
from tests.integration.test_supervisor import (
    pipeline_config,
    release,
    start_run,
    stop_run,
    tables,
    wait_for,
)

__all__ = ["tables"]  # the fixture, used by name
pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack.py"
CDC = [sys.executable, "-m", "cdc.cli"]
LEVEL = re.compile(r"^\S+ \S+ (ERROR|WARNING|CRITICAL) ", re.MULTILINE)


def levels(text: str) -> list[str]:
    return [m.group(0) + text[m.end():].split("\n", 1)[0] for m in LEVEL.finditer(text)]


@pytest.mark.slow
def test_kafka_restart_is_one_warning_per_process_and_no_error(
        kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
        unique_name: str, tables: tuple[str, str], tmp_path: Path) -> None:
    run = "kn" + unique_name.rsplit("_", 1)[1]
    config, log = tmp_path / "cdc.yaml", tmp_path / "run.log"
    pipeline_config(config, run, kafka_bootstrap, schema_registry_url, pg_source_dsn,
                    pg_replica_dsn, tables)
    _, live = tables
    proc = start_run(config, log, "--only", f"{run}_live", "--only", f"{run}_rep")
    try:
        with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {live} SELECT g, 'a' FROM generate_series(1, 10) g")
        wait_for("rows before the restart", lambda: replica_count(pg_replica_dsn, live) == 10,
                 90, log)
        before = len(log.read_text())
        done = subprocess.run([sys.executable, str(STACK), "restart", "kafka"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {live} SELECT g, 'b' FROM generate_series(11, 20) g")
        wait_for("rows after the restart", lambda: replica_count(pg_replica_dsn, live) == 20,
                 180, log)
        wait_for("both processes to see Kafka back",
                 lambda: log.read_text().count("reachable again after") >= 2, 60, log)
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        stop_run(proc)
        release(config, f"{run}_live")
        subprocess.run([sys.executable, str(STACK), "up"], cwd=ROOT, capture_output=True,
                       timeout=600)
    during = log.read_text()[before:]
    loud = levels(during)
    errors = [line for line in loud if " ERROR " in line or " CRITICAL " in line]
    assert errors == [], during[-4000:]
    # One warning per process (source and sink), perhaps a reminder or a lost assignment.
    assert 1 <= len(loud) <= 4, "\n".join(loud)
    assert sum("unreachable" in line for line in loud) >= 1


def test_sink_before_its_topic_exists_says_so_once_at_info(
        kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
        unique_name: str, tmp_path: Path) -> None:
    topic = f"{unique_name}.public.not_yet"
    config, log = tmp_path / "cdc.yaml", tmp_path / "sink.log"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_bootstrap},
        "schema_registry": {"url": schema_registry_url},
        "sinks": [{"name": "early", "kind": "postgres", "topics": [topic],
                   "target": {"dsn": pg_replica_dsn}, "consumer_group": unique_name}],
        "metrics": {"enabled": False},
        "log": {"level": "INFO"},
    }))
    proc = subprocess.Popen([*CDC, "sink", str(config), "--name", "early"], cwd=ROOT,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for("the sink to notice the missing topic",
                 lambda: "waiting for a topic to be created" in log.read_text(), 60, log)
        # The topic appears (its source starts): the subscription picks it up.
        ensure_topic(kafka_bootstrap, topic, 1)
        wait_for("the sink to be assigned the new topic",
                 lambda: f"{topic}[0]" in log.read_text() or proc.poll() is not None, 60, log)
        assert proc.poll() is None, log.read_text()
    finally:
        stop_run(proc)  # type: ignore[arg-type]
    text = log.read_text()
    assert levels(text) == [], text
    assert text.count("waiting for a topic to be created") == 1, text
    assert "Subscribed topic not available" in text  # the INFO line names it
