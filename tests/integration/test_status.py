"""``cdc status`` against a running pipeline of the local stack.

A PostgreSQL source streams into a PostgreSQL replica (``cdc source`` and
``cdc sink`` processes). Caught up, ``cdc status`` exits 0 and its JSON has
the documented shape; with the sink stopped and rows written, the lag shows
per partition (records and seconds) and the threshold makes it exit 1; with
the sink running again it returns to 0. An unreachable replica exits 3. The
configured password appears in no output.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.fixtures.pipelines import pipeline_config
from tests.fixtures.processes import (
    CDC,
    drop_slots,
    processes,
    replica_count,
    run_cdc,
    wait_for,
)

pytestmark = pytest.mark.integration
SECRET = "st4tus-S3cret-pw"


@pytest.fixture()
def table(pg_source_dsn: str, pg_replica_dsn: str, unique_name: str) -> Iterator[str]:
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {unique_name} (id int PRIMARY KEY, v text)")
        conn.execute(f"INSERT INTO {unique_name} SELECT g, 'v' || g FROM generate_series(1, 30) g")
    yield unique_name
    drop_slots(pg_source_dsn, [f"{unique_name}_slot"])
    for dsn in (pg_source_dsn, pg_replica_dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {unique_name}")


def _config(tmp_path: Path, run: str, table: str, kafka: str, registry: str, pg_source: str,
            pg_replica: str, **status: Any) -> Path:
    config = pipeline_config(run, kafka, registry, pg_replica_dsn=pg_replica,
                             mysql_replica_url="mysql://root@127.0.0.1:1/x",
                             pg_source_dsn=pg_source, pg_tables=[table], partitions=2,
                             log_level="INFO", metrics=False)
    config["sinks"] = [config["sinks"][0]]  # the PostgreSQL replica only
    # Trust authentication ignores it; it must still never be printed.
    config["sources"][0]["connection"]["password"] = SECRET
    config["sinks"][0]["target"]["password"] = SECRET
    config["sinks"][0]["errors"] = {"policy": "dead_letter"}
    config["status"] = {"max_sink_lag_records": 5, "timeout_s": 10, **status}
    path = tmp_path / f"{run}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _status(path: Path) -> tuple[int, dict[str, Any], str]:
    got = run_cdc("status", str(path), "--json")
    assert SECRET not in got.stdout + got.stderr
    try:
        doc = json.loads(got.stdout)
    except ValueError:
        raise AssertionError(f"not JSON: {got.stdout!r} {got.stderr!r}") from None
    return got.returncode, doc, got.stdout


def test_status_lag_thresholds_and_json(
    tmp_path: Path, table: str, unique_name: str, kafka_bootstrap: str,
    schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
) -> None:
    run = unique_name
    path = _config(tmp_path, run, table, kafka_bootstrap, schema_registry_url, pg_source_dsn,
                   pg_replica_dsn)
    with processes(tmp_path) as procs:
        source = procs.start("source", "source", str(path), "--name", f"{run}_pg")
        sink = procs.start("sink", "sink", str(path), "--name", f"{run}_to_pg")
        wait_for("the snapshot in the replica", lambda: replica_count(pg_replica_dsn, table) == 30,
                 90, procs.all_logs)

        # Caught up: exit 0, and the documented shape.
        def caught_up() -> bool:
            return _status(path)[0] == 0

        wait_for("status exit 0", caught_up, 30, procs.all_logs)
        rc, doc, _ = _status(path)
        assert rc == 0 and doc["breaches"] == [] and doc["errors"] == []
        assert [s["name"] for s in doc["sources"]] == [f"{run}_pg"]
        src = doc["sources"][0]
        assert src["snapshot"] == "done" and src["position"] and src["error"] is None
        assert 0 <= src["checkpoint_age_s"] < 60
        assert src["lag"]["retained_wal_bytes"] is not None and src["lag"]["retained_wal_bytes"] >= 0
        assert src["lag"]["wal_budget_bytes"] is None
        (snk,) = doc["sinks"]
        assert snk["name"] == f"{run}_to_pg" and snk["error"] is None
        assert snk["lag_records"] == 0 and snk["lag_seconds"] == 0
        assert snk["dead_letters"] == 0 and snk["last_applied_position"]
        parts = snk["partitions"]
        assert sorted((p["topic"], p["partition"]) for p in parts) == [
            (f"{run}_pg.public.{table}", 0), (f"{run}_pg.public.{table}", 1)]
        assert sum(p["end_offset"] for p in parts) >= 30
        assert all(p["applied_offset"] == p["end_offset"] - 1 for p in parts)

        # The sink stops; the source goes on: the lag shows and exit 1.
        assert procs.stop(sink) == 0
        with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {table} SELECT g, 'w' || g FROM generate_series(31, 50) g")

        def lagging() -> bool:
            return sum(p["lag_records"] for p in _status(path)[1]["sinks"][0]["partitions"]) >= 20

        wait_for("the lag of 20 records", lagging, 60, procs.all_logs)
        rc, doc, _ = _status(path)
        assert rc == 1, doc
        assert any("max_sink_lag_records" in b for b in doc["breaches"])
        snk = doc["sinks"][0]
        assert snk["lag_records"] == 20
        assert snk["lag_seconds"] > 0
        lagged = [p for p in snk["partitions"] if p["lag_records"]]
        assert all(p["lag_seconds"] > 0 for p in lagged)
        # The table for people says the same, without the secret.
        table_out = run_cdc("status", str(path))
        assert table_out.returncode == 1
        assert "THRESHOLDS EXCEEDED" in table_out.stdout and f"{run}_to_pg" in table_out.stdout
        assert SECRET not in table_out.stdout + table_out.stderr

        # Running again, it catches up: exit 0.
        sink = procs.start("sink2", "sink", str(path), "--name", f"{run}_to_pg")
        wait_for("status exit 0 again", caught_up, 60, procs.all_logs)
        assert replica_count(pg_replica_dsn, table) == 50
        assert source.poll() is None
        logs = procs.all_logs()
    assert SECRET not in logs


def test_status_unreachable_replica_exits_3(
    tmp_path: Path, table: str, unique_name: str, kafka_bootstrap: str,
    schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
) -> None:
    path = _config(tmp_path, unique_name, table, kafka_bootstrap, schema_registry_url,
                   pg_source_dsn, pg_replica_dsn)
    config = yaml.safe_load(path.read_text())
    config["sinks"][0]["target"]["port"] = 1  # nothing listens there
    path.write_text(yaml.safe_dump(config))
    rc, doc, out = _status(path)
    assert rc == 3
    assert doc["sinks"][0]["error"] and "127.0.0.1" in doc["sinks"][0]["error"]
    assert doc["sources"][0]["error"] is None  # the source was reached: no stored position yet
    assert doc["sources"][0]["snapshot"] == "none" and doc["sources"][0]["position"] is None
    table_out = run_cdc("status", str(path))
    assert table_out.returncode == 3 and "ERROR" in table_out.stdout
    assert SECRET not in out + table_out.stdout + table_out.stderr


def test_status_no_kafka_exits_3(tmp_path: Path, unique_name: str,
                                          schema_registry_url: str, pg_source_dsn: str,
                                          pg_replica_dsn: str) -> None:
    path = _config(tmp_path, unique_name, "t", "127.0.0.1:1", schema_registry_url,
                   pg_source_dsn, pg_replica_dsn, timeout_s=2)
    rc, doc, _ = _status(path)
    assert rc == 3
    assert doc["errors"] and "Kafka at 127.0.0.1:1" in doc["errors"][0]
    assert doc["sources"][0]["error"] == "Kafka unreachable"


def test_status_watch_refreshes_until_interrupted(
        tmp_path: Path, unique_name: str, schema_registry_url: str, pg_source_dsn: str,
        pg_replica_dsn: str) -> None:
    path = _config(tmp_path, unique_name, "t", "127.0.0.1:1", schema_registry_url,
                   pg_source_dsn, pg_replica_dsn, timeout_s=1)
    out = tmp_path / "watch.out"
    with out.open("wb") as f:
        proc = subprocess.Popen([*CDC, "status", str(path), "--watch", "0.5"], stdout=f,
                                stderr=subprocess.STDOUT)
    try:
        wait_for("two reports", lambda: out.read_text().count("cdc status at") >= 2, 30,
                 out.read_text)
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
    assert rc == 3  # the last report's code: Kafka unreachable
    assert SECRET not in out.read_text()
