"""Multi-dimensional PostgreSQL arrays through the whole pipeline.

PostgreSQL lets any array column hold any number of dimensions. A source table
with ``integer[]``, ``text[]``, ``numeric[]`` (with NaN and Infinity) and
``date[]`` columns holds 1-, 2- and 3-dimensional values with NULL elements,
both before the source starts (snapshot) and written while it streams
(inserts, updates between dimensionalities, a delete). The real PostgreSQL
source, Kafka, the registry and `cdc sink` carry them into a PostgreSQL replica
(real multi-dimensional arrays) and a MariaDB replica (JSON); `cdc verify`
must find both equal to the source, and the source must keep running.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from tests.fixtures.pipelines import pipeline_config
from tests.fixtures.services import mysql_kwargs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CDC = [sys.executable, "-m", "cdc.cli"]

DDL = "(id int PRIMARY KEY, ia integer[], ta text[], na numeric[], da date[] NOT NULL)"
INSERT = "INSERT INTO {t} (id, ia, ta, na, da) VALUES (%s, %s, %s, %s, %s)"
# Array literals, so the source sees exactly these dimensionalities.
ROWS: list[tuple[Any, ...]] = [
    (1, "{1,NULL,3}", '{"a",NULL,"b c"}', "{1.50,NaN}", "{2024-02-29}"),
    (2, "{{1,2},{3,NULL}}", '{{"x","é\\"{}"},{NULL,""}}', "{{NaN,-Infinity},{0.001,NULL}}",
     "{{2024-01-01,NULL},{1970-01-01,infinity}}"),
    (3, "{{{1},{2}},{{NULL},{4}}}", '{{{"NULL"}},{{"x,y"}}}', "{{{1e-20}},{{NULL}}}",
     "{{{2000-01-01}}}"),
    (4, None, "{}", None, "{}"),
]
STREAMED: list[tuple[Any, ...]] = [
    (11, "{{-2147483648,2147483647}}", '{{"🦆"},{NULL}}', "{{Infinity}}", "{{NULL}}"),
    (12, "{{{NULL,NULL}},{{7,8}}}", "{{{a}}}", "{{{NaN}},{{12345678901234567890.5}}}",
     "{{{2024-02-29,1999-12-31}}}"),
    (13, "{5}", "{{q}}", "{1}", "{{{2001-01-01}}}"),
]


@dataclass
class Pipeline:
    run: str
    pg_dsn: str
    config: Path
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return f"{self.run}_grid"

    def pg(self, sql: str, params: Any = ()) -> None:
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            conn.execute(sql.format(t=self.table), params)

    def start(self, name: str, kind: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([*CDC, kind, str(self.config), "--name", name],
                                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def tail(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def alive(self) -> None:
        for name, p in self.procs.items():
            assert p.poll() is None, f"{name} exited {p.returncode}: {self.tail(name)}"

    def stop(self, name: str) -> None:
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def verify_equal(self, timeout: float = 150) -> None:
        """Wait until `cdc verify` finds both replicas equal to the source."""
        deadline = time.monotonic() + timeout
        while True:
            r = subprocess.run([*CDC, "verify", str(self.config), "--source", f"{self.run}_pg"],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
            if r.returncode == 0:
                assert sum(line.startswith("OK ") for line in r.stdout.splitlines()) == 2, r.stdout
                return
            self.alive()
            assert time.monotonic() < deadline, r.stdout + r.stderr + "".join(
                self.tail(n) for n in self.procs)
            time.sleep(1)


@pytest.fixture()
def pipeline(kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str,
             pg_replica_dsn: str, mysql_replica_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    run = f"na{random.randint(0, 10**8)}"
    p = Pipeline(run, pg_source_dsn, tmp_path / "pipeline.yaml", tmp_path)
    p.pg(f"CREATE TABLE {{t}} {DDL}")
    for row in ROWS:  # there before the source starts: the snapshot reads them
        p.pg(INSERT, row)
    p.config.write_text(yaml.safe_dump(pipeline_config(
        run, kafka_bootstrap, schema_registry_url,
        pg_replica_dsn=pg_replica_dsn, mysql_replica_url=mysql_replica_url,
        pg_source_dsn=pg_source_dsn, pg_tables=[p.table], partitions=1,
        batch={"max_wait_ms": 50, "max_rows": 50},
    )))
    try:
        yield p
    finally:
        for name in list(p.procs):
            p.stop(name)
        subprocess.run([*CDC, "reset-source", str(p.config), "--name", f"{run}_pg", "--release",
                        "--yes"], cwd=ROOT, capture_output=True, timeout=60)
        p.pg("DROP TABLE IF EXISTS {t}")
        with psycopg.connect(pg_replica_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {p.table}")
        my = pymysql.connect(**mysql_kwargs(mysql_replica_url))  # type: ignore[arg-type]
        with my.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {p.table}")
        my.close()


def test_multidimensional_arrays_reach_both_replicas(
    pipeline: Pipeline, pg_replica_dsn: str, mysql_replica_url: str
) -> None:
    p = pipeline
    p.start(f"{p.run}_pg", "source")
    p.start(f"{p.run}_to_pg", "sink")
    p.start(f"{p.run}_to_maria", "sink")
    p.verify_equal()  # the snapshot
    for row in STREAMED:
        p.pg(INSERT, row)
    p.pg("UPDATE {t} SET ia = %s, na = %s WHERE id = 1", ("{{{9}}}", "{{NaN}}"))  # 1 -> 3 dims
    p.pg("UPDATE {t} SET ia = %s, ta = %s WHERE id = 2", ("{1,2}", "{x}"))  # 2 -> 1
    p.pg("DELETE FROM {t} WHERE id = 3")
    p.verify_equal()
    p.alive()
    # The PostgreSQL replica holds real multi-dimensional arrays...
    with psycopg.connect(pg_replica_dsn) as conn:
        got = conn.execute(
            f"SELECT id, array_ndims(ia), ia::text, na::text, da::text FROM {p.table} ORDER BY id"
        ).fetchall()
    by_id = {r[0]: r[1:] for r in got}
    assert set(by_id) == {1, 2, 4, 11, 12, 13}
    assert by_id[1][:3] == (3, "{{{9}}}", "{{NaN}}")
    assert by_id[12][1] == "{{{NULL,NULL}},{{7,8}}}"
    assert by_id[2][3] == "{{2024-01-01,NULL},{1970-01-01,infinity}}"
    # ...and the MariaDB replica their nested JSON.
    my = pymysql.connect(**mysql_kwargs(mysql_replica_url))  # type: ignore[arg-type]
    try:
        with my.cursor() as cur:
            cur.execute(f"SELECT ia, na FROM {p.table} WHERE id = 12")
            ia, na = cur.fetchone()  # type: ignore[misc]
    finally:
        my.close()
    assert json.loads(ia) == [[[None, None]], [[7, 8]]]
    assert json.loads(na) == [[["NaN"]], [["12345678901234567890.5"]]]
