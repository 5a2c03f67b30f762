"""The binlog guardrail of a MariaDB source and its lag in ``cdc status``, on the local stack.

A streaming source whose durable position is among the ``warn_files`` oldest
binlogs logs a WARNING naming the fix; ``cdc status`` reports the binlog bytes
after its stored position. Once the source is stopped and the server purges
the binlog of that position, ``cdc status`` reports it purged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
import yaml

from tests.fixtures.pipelines import mysql_database, pipeline_config
from tests.fixtures.processes import processes, run_cdc, wait_for
from tests.fixtures.services import mysql_kwargs

pytestmark = pytest.mark.integration


@pytest.fixture()
def table(mysql_source_url: str, unique_name: str) -> Iterator[str]:
    conn = pymysql.connect(**mysql_kwargs(mysql_source_url))  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {unique_name} (id int PRIMARY KEY, v text) "
                        "DEFAULT CHARSET=utf8mb4")
            cur.execute(f"INSERT INTO {unique_name} VALUES (1, 'one'), (2, 'two')")
        conn.commit()
        yield unique_name
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {unique_name}")
    finally:
        conn.close()


def _sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    conn = pymysql.connect(**mysql_kwargs(url))  # type: ignore[arg-type]
    try:
        rows: list[tuple[object, ...]] = []
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
                rows = list(cur.fetchall())
        conn.commit()
        return rows
    finally:
        conn.close()


def _mysql_status(path: Path) -> dict[str, object]:
    got = run_cdc("status", str(path), "--json")
    doc = json.loads(got.stdout)
    (source,) = doc["sources"]
    assert source["error"] is None, source
    return dict(source)


def test_binlog_guard_warns_and_status_sees_purge(
    tmp_path: Path, table: str, unique_name: str, kafka_bootstrap: str,
    schema_registry_url: str, mysql_source_url: str, pg_replica_dsn: str,
    mysql_replica_url: str,
) -> None:
    run = unique_name
    config = pipeline_config(run, kafka_bootstrap, schema_registry_url,
                             pg_replica_dsn=pg_replica_dsn, mysql_replica_url=mysql_replica_url,
                             mysql_source_url=mysql_source_url, mysql_tables=[table],
                             partitions=1, log_level="INFO", metrics=False)
    config["sinks"] = []
    config["sources"][0]["binlog_guard"] = {"warn_files": 1000, "check_interval_s": 0.5}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    db = mysql_database(mysql_source_url)
    with processes(tmp_path) as procs:
        source = procs.start("source", "source", str(path), "--name", f"{run}_my")
        wait_for("streaming", lambda: "streaming from" in procs.log(source), 60, procs.all_logs)
        _sql(mysql_source_url, f"INSERT INTO {db}.{table} VALUES (3, 'three')")
        wait_for("the guard's WARNING", lambda: "the server keeps (warn_files: 1000)"
                 in procs.log(source), 60, procs.all_logs)
        log = procs.log(source)
        assert "WARNING" in log and "binlog_expire_logs_seconds" in log
        assert procs.stop(source) == 0

    status = _mysql_status(path)
    assert status["snapshot"] == "done" and status["position"]
    lag = status["lag"]
    assert isinstance(lag, dict)
    assert lag["binlog_purged"] == 0 and lag["lag_bytes"] is not None and lag["lag_bytes"] >= 0

    # The server moves on and purges the binlog the stored position is in.
    kept = {str(r[0]) for r in _sql(mysql_source_url, "SHOW BINARY LOGS")}
    _sql(mysql_source_url, "FLUSH BINARY LOGS", "FLUSH BINARY LOGS")
    newest = str(_sql(mysql_source_url, "SHOW BINARY LOGS")[-1][0])

    def purged() -> bool:
        # The server keeps a file another binlog reader (another test's source) still
        # reads: purge again until those readers have moved on.
        _sql(mysql_source_url, f"PURGE BINARY LOGS TO '{newest}'")
        return not kept & {str(r[0]) for r in _sql(mysql_source_url, "SHOW BINARY LOGS")}

    wait_for("the old binlogs to be purged", purged, 60,
             lambda: str(_sql(mysql_source_url, "SHOW PROCESSLIST")))
    lag = _mysql_status(path)["lag"]
    assert isinstance(lag, dict)
    assert lag["binlog_purged"] == 1 and lag["lag_bytes"] is None
