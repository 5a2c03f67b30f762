"""The retained-WAL guardrail of a PostgreSQL source, on the local stack.

An open transaction on the source keeps the slot's restart_lsn where it is
while WAL is generated in an uncaptured table, so the retained WAL grows
past a small budget: the running source logs a WARNING at the fraction, then
(action ``stop``) stops with exit status 78 and an ERROR naming the budget and
the fix. With action ``warn`` and a budget already exceeded, the source keeps
streaming, logs the ERROR, and serves the gauges the dashboard uses.
"""

from __future__ import annotations

import random
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.fixtures.pipelines import pipeline_config
from tests.fixtures.processes import drop_slots, processes, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture()
def tables(pg_source_dsn: str, unique_name: str) -> Iterator[tuple[str, str]]:
    captured, filler = unique_name, f"{unique_name}_fill"
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {captured} (id int PRIMARY KEY, v text)")
        conn.execute(f"INSERT INTO {captured} VALUES (1, 'one')")
        conn.execute(f"CREATE TABLE {filler} (id serial PRIMARY KEY, pad text)")
    yield captured, filler
    drop_slots(pg_source_dsn, [f"{unique_name}_slot"])
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {captured}, {filler}")


def _config(tmp_path: Path, run: str, table: str, kafka: str, registry: str, pg_source: str,
            pg_replica: str, budget: dict[str, Any], metrics_port: int | None = None) -> Path:
    config = pipeline_config(run, kafka, registry, pg_replica_dsn=pg_replica,
                             mysql_replica_url="mysql://root@127.0.0.1:1/x",
                             pg_source_dsn=pg_source, pg_tables=[table], partitions=1,
                             log_level="INFO", metrics=metrics_port is not None,
                             pg_extra={"wal_budget": budget})
    config["sinks"] = config["sinks"][:1]
    if metrics_port is not None:
        config["metrics"] = {"port": metrics_port}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _retained(dsn: str, slot: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT (pg_current_wal_lsn() - restart_lsn)::int8 FROM "
                           "pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        return int(row[0]) if row and row[0] is not None else -1


def _fill(dsn: str, table: str, kib: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {table} (pad) SELECT repeat(md5(g::text), 32) "
                     f"FROM generate_series(1, %s) g", (kib,))


def test_wal_budget_stop(
    tmp_path: Path, tables: tuple[str, str], unique_name: str, kafka_bootstrap: str,
    schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
) -> None:
    captured, filler = tables
    slot = f"{unique_name}_slot"
    budget = 4 * 1024 * 1024
    path = _config(tmp_path, unique_name, captured, kafka_bootstrap, schema_registry_url,
                   pg_source_dsn, pg_replica_dsn,
                   {"max_bytes": budget, "warn_fraction": 0.5, "action": "stop",
                    "check_interval_s": 0.5})
    with processes(tmp_path) as procs, psycopg.connect(pg_source_dsn) as blocker:
        source = procs.start("source", "source", str(path), "--name", f"{unique_name}_pg")
        wait_for("streaming", lambda: "streaming slot" in procs.log(source), 60, procs.all_logs)
        assert "WAL retained by slot" not in procs.log(source)
        # An open transaction pins restart_lsn; WAL then grows with every write.
        blocker.execute(f"INSERT INTO {filler} (pad) VALUES ('pin')")
        while _retained(pg_source_dsn, slot) < budget * 0.6:
            _fill(pg_source_dsn, filler, 256)
        wait_for("the WARNING", lambda: "WARNING" in procs.log(source)
                 and f"WAL retained by slot {slot}" in procs.log(source), 30, procs.all_logs)
        assert source.poll() is None  # a warning only
        while _retained(pg_source_dsn, slot) < budget * 1.1:
            _fill(pg_source_dsn, filler, 256)
        wait_for("the source to stop", lambda: source.poll() is not None, 30, procs.all_logs)
        assert source.returncode == 78
        log = procs.log(source)
        assert "ERROR" in log and "limit reached, stopping (action: stop)" in log
        assert "cdc reset-source" in log and "wal_budget.max_bytes" in log
        blocker.rollback()


def test_wal_budget_warn(
    tmp_path: Path, tables: tuple[str, str], unique_name: str, kafka_bootstrap: str,
    schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
) -> None:
    captured, _ = tables
    port = random.randint(20000, 29999)
    path = _config(tmp_path, unique_name, captured, kafka_bootstrap, schema_registry_url,
                   pg_source_dsn, pg_replica_dsn,
                   {"max_bytes": 1, "action": "warn", "check_interval_s": 0.5},
                   metrics_port=port)
    with processes(tmp_path) as procs:
        source = procs.start("source", "source", str(path), "--name", f"{unique_name}_pg")
        wait_for("the ERROR", lambda: "limit reached, still streaming (action: warn)"
                 in procs.log(source), 60, procs.all_logs)

        def scrape() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return str(r.read().decode())
            except OSError:
                return ""

        wait_for("the metrics", lambda: "cdc_source_wal_budget_bytes" in scrape(), 30,
                 procs.all_logs)
        text = scrape()
        gauges = {line.split("{")[0]: float(line.rsplit(" ", 1)[1])
                  for line in text.splitlines() if line.startswith("cdc_source_")}
        assert gauges["cdc_source_wal_budget_bytes"] == 1
        assert gauges["cdc_source_retained_wal_bytes"] >= 1
        # Still streaming: a new row is captured and produced.
        events = gauges.get("cdc_source_events_total", gauges.get("cdc_source_events", 0))
        with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {captured} VALUES (2, 'two')")

        def produced_more() -> bool:
            now = {line.split("{")[0]: float(line.rsplit(" ", 1)[1])
                   for line in scrape().splitlines() if line.startswith("cdc_source_events")}
            return max(now.values(), default=0) > events

        wait_for("the new row produced", produced_more, 30, procs.all_logs)
        assert source.poll() is None
