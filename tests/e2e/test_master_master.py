"""Master-master acceptance: writable nodes converge through Kafka, conflicts are logged.

* The shipped examples (``examples/master-master-pg.yaml``,
  ``examples/master-master-pg-mariadb.yaml``) run unchanged with ``cdc run FILE``
  (only addresses come from ``CDC_*`` overrides, as a user on another port
  would give them): a write on each node reaches the other, nothing echoes,
  and ``cdc verify`` finds the nodes equal. The PostgreSQL one is the
  representative in CI (not slow); the PostgreSQL<->MariaDB one is marked slow.
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
from tests.fixtures.processes import Processes, processes, wait_for
from tests.fixtures.topics import read_changes

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
        for step in (lambda n=n: n.drop(table), n.cleanup):
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


@pytest.mark.parametrize("example", [
    "master-master-pg",  # the representative in CI
    pytest.param("master-master-pg-mariadb", marks=pytest.mark.slow),
])
def test_example_runs_with_cdc_run(example: str, tmp_path: Path, kafka_bootstrap: str,
                                   schema_registry_url: str, pg_source_dsn: str,
                                   pg_replica_dsn: str, mysql_source_url: str,
                                   unique_name: str) -> None:
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


# --------------------------------------------------------------------------- convergence

HOT = {"insert_insert": 1001, "update_update": 1002, "update_delete": 1003,
       "delete_update": 1004, "delete_delete": 1005}
WARM = range(1, 121)  # keys every node writes at random


def _pipeline(run: str, kafka: str, registry: str, nodes: list[Node],
              table: str) -> dict[str, Any]:
    entries = []
    for n in nodes:
        conn = n.connection()
        entry: dict[str, Any] = {
            "name": n.name, "kind": n.kind, "connection": conn,
            "source": {"heartbeat_interval_s": 1, "snapshot": {"mode": "never"}},
            "sink": {"batch": {"max_wait_ms": 100}},
        }
        if n.kind == "mysql":
            db = conn.pop("database")
            entry["source"]["server_id"] = random.randint(7000, 7999)
            entry["sink"]["target"] = {"database": db}
        entries.append(entry)
    return {
        "kafka": {"bootstrap_servers": kafka, "offsets_topic": f"{run}.offsets",
                  "producer": {"linger_ms": 5},
                  "topics": {"partitions": 2, "replication_factor": 1},
                  "consumer": {"session_timeout_ms": 6000}},
        "schema_registry": {"url": registry},
        "master_master": {"tables": {"include": [f"{NS}.{table}"]},
                          "conflicts": {"resolution": "last_writer_wins"},
                          "nodes": entries},
        "metrics": {"enabled": False},
    }


class Mesh:
    """The ``cdc source`` and ``cdc sink`` processes of every node, killable one by one."""

    def __init__(self, procs: Processes, path: Path, nodes: list[Node]) -> None:
        self.procs, self.path, self.nodes = procs, path, nodes
        self.sources: dict[str, subprocess.Popen[bytes]] = {}
        self.sinks: dict[str, subprocess.Popen[bytes]] = {}

    def start_source(self, n: Node) -> None:
        self.sources[n.name] = self.procs.start(f"source_{n.name}", "source", str(self.path),
                                                "--name", n.name)

    def start_sink(self, n: Node) -> None:
        self.sinks[n.name] = self.procs.start(f"sink_{n.name}", "sink", str(self.path),
                                              "--name", f"{n.name}_sink")

    def start_all(self, table: str) -> None:
        """Every node's source and sink, until ``table``'s changes stream both ways."""
        for n in self.nodes:
            self.start_source(n)
            self.start_sink(n)
        _until_streaming(self.nodes, table, self.procs)

    def kill(self, role: str, n: Node) -> None:
        """kill -9, then start it again at once (a supervisor would)."""
        proc = (self.sources if role == "source" else self.sinks)[n.name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        (self.start_source if role == "source" else self.start_sink)(n)

    def running(self) -> bool:
        return all(p.poll() is None for p in [*self.sources.values(), *self.sinks.values()])


def _writer(n: Node, table: str, stop: threading.Event, seed: int, count: list[int]) -> None:
    rnd = random.Random(seed)
    while not stop.is_set():
        k = rnd.choice(WARM)
        r = rnd.random()
        try:
            if r < 0.5:
                n.upsert(table, k, f"{n.name} {rnd.randrange(10**6)}", rnd.randrange(100))
            elif r < 0.8:
                n.update(table, k, f"{n.name} u{rnd.randrange(10**6)}")
            else:
                n.delete(table, k)
            count[0] += 1
        except Exception as e:  # a deadlock with a sink's apply: the app would retry
            print(f"writer {n.name}: {e}")
        time.sleep(rnd.uniform(0.005, 0.03))


def _conflict_cases(a: Node, b: Node, others: list[Node], table: str) -> None:
    """Every conflict case on the hot keys, written on a and b while no sink runs."""
    a.insert(table, HOT["insert_insert"], "ii a")
    b.insert(table, HOT["insert_insert"], "ii b")
    a.update(table, HOT["update_update"], "uu a")
    b.update(table, HOT["update_update"], "uu b")
    for o in others:  # a third node joins the update/update
        o.update(table, HOT["update_update"], f"uu {o.name}")
    a.update(table, HOT["update_delete"], "ud a")
    b.delete(table, HOT["update_delete"])
    a.delete(table, HOT["delete_update"])
    b.update(table, HOT["delete_update"], "du b")
    a.delete(table, HOT["delete_delete"])
    b.delete(table, HOT["delete_delete"])


def _converge_under_faults(nodes: list[Node], tmp_path: Path, kafka: str, registry: str,
                           run: str, table: str, seconds: float = 65) -> None:
    for n in nodes:
        n.cleanup()
        n.create(table)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(_pipeline(run, kafka, registry, nodes, table)))
    try:
        with processes(tmp_path) as procs:
            mesh = Mesh(procs, path, nodes)
            mesh.start_all(table)
            a, b, rest = nodes[0], nodes[1], nodes[2:]
            for k in (HOT["update_update"], HOT["update_delete"], HOT["delete_update"],
                      HOT["delete_delete"]):
                a.insert(table, k, "seed")
            _wait_equal(nodes, table, 120, procs)
            stop = threading.Event()
            counts = [[0] for _ in nodes]
            writers = [threading.Thread(target=_writer, args=(n, table, stop, i, counts[i]),
                                        daemon=True) for i, n in enumerate(nodes)]
            for w in writers:
                w.start()
            start = time.monotonic()
            step = seconds / (2 * len(nodes) + 2)
            schedule: list[tuple[float, tuple[Node, Node] | None]] = []
            for i, n in enumerate(nodes):  # kill -9 a source and a sink of every node
                other = nodes[(i + 1) % len(nodes)]
                schedule.append(((2 * i + 1) * step, (n, other)))
            schedule.append(((2 * len(nodes) + 0.5) * step, None))  # the conflict cases
            for at, action in sorted(schedule, key=lambda s: s[0]):
                time.sleep(max(0.0, start + at - time.monotonic()))
                if action is not None:
                    mesh.kill("source", action[0])
                    mesh.kill("sink", action[1])
                    continue
                for n in nodes:  # all sinks down: the hot-key writes are concurrent
                    mesh.sinks[n.name].send_signal(signal.SIGKILL)
                    mesh.sinks[n.name].wait(30)
                _conflict_cases(a, b, rest, table)
                time.sleep(2)  # let the sources publish them while no sink applies
                for n in nodes:
                    mesh.start_sink(n)
            time.sleep(max(0.0, start + seconds - time.monotonic()))
            stop.set()
            for w in writers:
                w.join(30)
            assert all(c[0] > 100 for c in counts), counts
            assert mesh.running(), procs.all_logs()
            rows = _wait_equal(nodes, table, 300, procs)
            assert HOT["insert_insert"] in rows and HOT["delete_delete"] not in rows
            _verify(path, nodes, {}, table)
            logged = set().union(*(n.conflict_keys(table) for n in nodes))
            missing = set(HOT.values()) - logged
            assert not missing, (f"conflict logs lack hot keys {sorted(missing)}; logged "
                                 f"{sorted(logged)[:50]}")
    finally:
        _cleanup(nodes, table)


@pytest.fixture
def run_name(unique_name: str) -> str:
    return "mm" + unique_name[-7:]


@pytest.mark.slow
@pytest.mark.parametrize("pairing", ["pg-pg", "maria-maria", "pg-maria"])
def test_two_nodes_converge_under_concurrent_writes_and_kill_9(
        pairing: str, tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str,
        pg_source_dsn: str, pg_replica_dsn: str, mysql_source_url: str, mysql_replica_url: str,
        run_name: str, unique_name: str) -> None:
    urls = {"pg_source": (pg_source_dsn, "postgres"), "pg_replica": (pg_replica_dsn, "postgres"),
            "mysql_source": (mysql_source_url, "mysql"),
            "mysql_replica": (mysql_replica_url, "mysql")}
    a_key, b_key = {"pg-pg": ("pg_source", "pg_replica"),
                    "maria-maria": ("mysql_source", "mysql_replica"),
                    "pg-maria": ("pg_source", "mysql_source")}[pairing]
    nodes = [Node(f"{run_name}_a", urls[a_key][1], urls[a_key][0]),
             Node(f"{run_name}_b", urls[b_key][1], urls[b_key][0])]
    _converge_under_faults(nodes, tmp_path, kafka_bootstrap, schema_registry_url, run_name,
                           unique_name)


@pytest.fixture
def third_pg() -> Iterator[str]:
    """A third PostgreSQL server: the pg-source of the stack at port offset + 500."""
    env = {**os.environ, "CDC_PORT_OFFSET": str(OFFSET + 500)}
    stack = [sys.executable, str(ROOT / "deploy" / "local" / "stack.py")]
    subprocess.run([*stack, "start", "pg-source"], check=True, env=env, timeout=300,
                   capture_output=True)
    lines = subprocess.run([*stack, "env"], check=True, env=env, capture_output=True,
                           text=True).stdout.splitlines()
    dsn = next(line.split("=", 1)[1] for line in lines if line.startswith("PG_SOURCE_DSN="))
    try:
        yield dsn
    finally:
        subprocess.run([*stack, "stop", "pg-source"], env=env, timeout=120, check=False,
                       capture_output=True)


@pytest.mark.slow
def test_three_postgres_nodes_converge_under_concurrent_writes_and_kill_9(
        tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str,
        pg_replica_dsn: str, third_pg: str, run_name: str, unique_name: str) -> None:
    nodes = [Node(f"{run_name}_a", "postgres", pg_source_dsn),
             Node(f"{run_name}_b", "postgres", pg_replica_dsn),
             Node(f"{run_name}_c", "postgres", third_pg)]
    _converge_under_faults(nodes, tmp_path, kafka_bootstrap, schema_registry_url, run_name,
                           unique_name, seconds=75)
