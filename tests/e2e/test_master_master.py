"""Master-master acceptance: writable nodes converge through Kafka, conflicts are logged.

* The shipped examples (``examples/master-master-pg.yaml``,
  ``examples/master-master-pg-mariadb.yaml``) run unchanged with ``cdc run FILE``
  (only addresses come from ``CDC_*`` overrides, as a user on another port
  would give them): a write on each node reaches the other, nothing echoes,
  and ``cdc verify`` finds the nodes equal. The PostgreSQL one is the fast
  representative in CI.
* Convergence (slow): PostgreSQL<->PostgreSQL, MariaDB<->MariaDB,
  PostgreSQL<->MariaDB and a three-node PostgreSQL mesh (the third server is
  a pg-source started at port offset + 500), each under concurrent random
  writes on every node for at least a minute with kill -9 of a source and a
  sink of each node, and with every conflict case written on hot keys while
  the sinks are down (so those writes are certainly concurrent). After
  quiesce, every node holds the same rows (read with the databases' own
  drivers) and ``cdc verify`` agrees, and the conflict logs of the nodes
  together name every hot key.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc.serde import AvroSerde, RegistryClient
from tests.e2e.mm_nodes import NS, Node
from tests.fixtures.topics import read_changes
from tests.fixtures.processes import Processes, processes, run_cdc, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
OFFSET = int(os.environ.get("CDC_PORT_OFFSET", "0"))


def _wait_equal(nodes: list[Node], table: str, timeout: float, procs: Processes,
                expect: dict[int, tuple[str, int]] | None = None) -> dict[int, tuple[str, int]]:
    """Wait until every node holds the same rows (and ``expect``, if given)."""
    last: list[dict[int, tuple[str, int]]] = []

    def same() -> bool:
        last[:] = [n.rows(table) for n in nodes]
        return all(r == last[0] for r in last) and (expect is None or last[0] == expect)

    def why() -> str:
        diff = {n.name: {k: v for k, v in r.items() if any(o.get(k) != v for o in last)}
                for n, r in zip(nodes, last, strict=True)}
        return f"differing rows: {str(diff)[:3000]}\n{procs.all_logs()}"

    wait_for(f"{', '.join(n.name for n in nodes)} to hold the same rows of {table}", same,
             timeout, why)
    return last[0]


def _until_streaming(nodes: list[Node], table: str, procs: Processes,
                     timeout: float = 180) -> None:
    """Write a probe row on each node until every other node has it, then remove them.

    Sources start streaming from "now" (``snapshot: never``): a probe written
    before a source streams is never published, so it is written again.
    """
    for i, n in enumerate(nodes):
        key, deadline = -1 - i, time.monotonic() + timeout
        while True:
            n.upsert(table, key, f"probe {n.name}", int(time.monotonic()))
            want = n.rows(table)[key]
            end = time.monotonic() + 3
            while time.monotonic() < end and not all(o.rows(table).get(key) == want
                                                     for o in nodes):
                time.sleep(0.2)
            if all(o.rows(table).get(key) == want for o in nodes):
                break
            assert time.monotonic() < deadline, f"{n.name} never streamed\n{procs.all_logs()}"
    for i, n in enumerate(nodes):
        n.delete(table, -1 - i)
    _wait_equal(nodes, table, 60, procs, {})


def _published(bootstrap: str, registry_url: str, topic: str) -> list[tuple[str, int]]:
    """(op, id) of every change record on ``topic`` but the probes (ids < 0)."""
    serde = AvroSerde(RegistryClient(registry_url))
    out = []
    for c, _ in read_changes(bootstrap, topic, serde):
        row = c.after or c.before or {}
        if int(row["id"]) > 0:
            out.append((str(c.op), int(row["id"])))
    return out


def _verify(path: Path, nodes: list[Node], env: dict[str, str], table: str) -> None:
    for n in nodes:
        res = subprocess.run([sys.executable, "-m", "cdc.cli", "verify", str(path), "--source",
                              n.name, "--table", f"{NS}.{table}"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                             env={**os.environ, **env}, check=False)
        assert res.returncode == 0, f"cdc verify --source {n.name}:\n{res.stdout}\n{res.stderr}"


def _cleanup(nodes: list[Node], table: str) -> None:
    for n in nodes:
        for step in (lambda n=n: n.drop(table), n.cleanup):  # type: ignore[misc]
            try:
                step()
            except Exception as e:  # one failed step must not leave the others undone
                print(f"cleanup of {n.name}: {e}")


# --------------------------------------------------------------------------- the examples


def _example_env(kafka: str, registry: str, nodes: list[Node], run: str) -> dict[str, str]:
    env = {"CDC_KAFKA__BOOTSTRAP_SERVERS": kafka, "CDC_SCHEMA_REGISTRY__URL": registry,
           "CDC_KAFKA__OFFSETS_TOPIC": f"{run}.offsets", "CDC_METRICS__ENABLED": "false"}
    for n in nodes:
        env[f"CDC_MASTER_MASTER__NODES__{n.name.upper()}__CONNECTION__PORT"] = str(n.port)
        env[f"CDC_MASTER_MASTER__NODES__{n.name.upper()}__SINK"] = \
            "{batch: {max_wait_ms: 50}, consumer_group: " + f"{run}_{n.name}" + "}"
    return env


@pytest.mark.parametrize("example", ["master-master-pg", "master-master-pg-mariadb"])
def test_example_runs_with_cdc_run(example: str, tmp_path: Path, kafka_bootstrap: str,
                                   schema_registry_url: str, pg_source_dsn: str,
                                   pg_replica_dsn: str, mysql_source_url: str,
                                   unique_name: str) -> None:
    if example == "master-master-pg-mariadb" and "CI" in os.environ:
        pytest.skip("the PostgreSQL example is the representative in CI")  # pragma: no cover
    path = ROOT / "examples" / f"{example}.yaml"
    b = (Node("pg_replica", "postgres", pg_replica_dsn) if example == "master-master-pg"
         else Node("mysql_source", "mysql", mysql_source_url))
    nodes = [Node("pg_source", "postgres", pg_source_dsn), b]
    table = unique_name
    run = f"mmx_{unique_name[-12:]}"
    for n in nodes:
        n.cleanup()
        n.create(table)
    env = _example_env(kafka_bootstrap, schema_registry_url, nodes, run)
    try:
        with processes(tmp_path, env) as procs:
            cdc = procs.start("run", "run", str(path))
            a = nodes[0]
            _until_streaming(nodes, table, procs)
            for n, key in ((a, 1), (b, 2)):
                n.insert(table, key, f"from {n.name}")
            _wait_equal(nodes, table, 180, procs,
                        {1: ("from pg_source", 0), 2: (f"from {b.name}", 0)})
            b.update(table, 1, "changed on b")
            a.delete(table, 2)
            a.insert(table, 3, "three")
            rows = _wait_equal(nodes, table, 120, procs,
                               {1: ("changed on b", 1), 3: ("three", 0)})
            # idle afterwards: a marker on each node arrives, then the topics hold only
            # each node's own writes (no echo)
            a.insert(table, 10, "marker a")
            b.insert(table, 11, "marker b")
            rows = _wait_equal(nodes, table, 120, procs)
            assert set(rows) == {1, 3, 10, 11}
            assert cdc.poll() is None, procs.all_logs()
            published = {n.name: sorted(_published(kafka_bootstrap, schema_registry_url,
                                                   f"{n.name}.{NS}.{table}")) for n in nodes}
            # each node's topic holds its own writes only (no echo of the other's)
            assert published == {"pg_source": [("c", 1), ("c", 3), ("c", 10), ("d", 2)],
                                 b.name: [("c", 2), ("c", 11), ("u", 1)]}, published
            _verify(path, nodes, env, table)
            procs.stop(cdc)
    finally:
        _cleanup(nodes, table)
