"""Loop prevention end to end: two writable nodes replicating to each other through Kafka.

Each node has a source with ``skip_replicated_changes`` and a sink with
``origin: <node>`` that applies the *other* node's topic to it, all as plain
``sources``/``sinks`` of one pipeline file run as ``cdc source``/``cdc sink``
processes against the local stack: PostgreSQL<->PostgreSQL (pg-source and
pg-replica), MariaDB<->MariaDB (mysql-source and mysql-replica) and
PostgreSQL<->MariaDB (pg-source and mysql-source), each test on tables of its own.

"No echo" and "idle afterwards" are checked as conditions, not with sleeps:
after the nodes converge, a last marker row is written on each node; once the
other node has it, everything the source read before it (the sink's applies
among it) has been published or left out, so each node's topic must hold
exactly its local writes. A one-way pipeline with default settings still
publishes what a sink with an origin applied, and a source killed with
SIGKILL while sink-applied transactions sit in its log neither echoes nor
loses anything after its restart.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from cdc.serde import AvroSerde, RegistryClient
from tests.fixtures.processes import Processes, drop_slots, processes, wait_for
from tests.fixtures.services import connection_settings, mysql_kwargs
from tests.fixtures.topics import read_changes, record_count

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Node:
    """One writable database of the test, with its source name and captured table."""

    name: str
    kind: str  # postgres | mysql
    url: str
    table: str

    @property
    def namespace(self) -> str:
        return "public" if self.kind == "postgres" else self.url.rsplit("/", 1)[1]

    @property
    def topic(self) -> str:
        return f"{self.name}.{self.namespace}.{self.table}"

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.kind == "postgres":
            with psycopg.connect(self.url, autocommit=True) as conn:
                cur = conn.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        conn = pymysql.connect(**mysql_kwargs(self.url))  # type: ignore[arg-type]
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def create(self) -> None:
        self.drop()
        charset = "" if self.kind == "postgres" else " DEFAULT CHARSET=utf8mb4"
        self.run(f"CREATE TABLE {self.table} (id int PRIMARY KEY, v varchar(64) NOT NULL){charset}")

    def drop(self) -> None:
        self.run(f"DROP TABLE IF EXISTS {self.table}")

    def rows(self) -> dict[int, str]:
        return {int(i): str(v) for i, v in self.run(f"SELECT id, v FROM {self.table}")}

    def write(self, key: int, value: str) -> None:
        self.run(f"INSERT INTO {self.table} VALUES (%s, %s)", (key, value))

    def update(self, key: int, value: str) -> None:
        self.run(f"UPDATE {self.table} SET v = %s WHERE id = %s", (value, key))

    def source(self, skip: bool) -> dict[str, Any]:
        port = 5432 if self.kind == "postgres" else 3306
        conn = connection_settings(self.url, port)
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "heartbeat_interval_s": 1,
                               "tables": {"include": [f"{self.namespace}.{self.table}"]}}
        if skip:
            out["skip_replicated_changes"] = True
        if self.kind == "postgres":
            out.update(connection=conn, slot_name=f"{self.name}_slot",
                       publication_name=f"{self.name}_pub")
        else:
            out.update(connection={k: v for k, v in conn.items() if k != "database"},
                       server_id=random.randint(7000, 7999))
        return out

    def sink(self, topics: list[str]) -> dict[str, Any]:
        """The sink applying ``topics`` to this node, marked with this node's origin."""
        port = 5432 if self.kind == "postgres" else 3306
        return {"name": f"{self.name}_in", "kind": self.kind, "topics": topics,
                "target": connection_settings(self.url, port), "origin": self.name,
                "batch": {"max_wait_ms": 100}}

    def cleanup(self) -> None:
        if self.kind == "postgres":
            drop_slots(self.url, [f"{self.name}_slot"])
            self.run(f"DROP PUBLICATION IF EXISTS {self.name}_pub")
            # each origin keeps a replication origin state until dropped (a few per server)
            def dropped() -> bool:
                try:
                    self.run("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin "
                             "WHERE roname = %s OR roname LIKE %s",
                             (f"cdc_{self.name}", f"cdc_{self.name}#%"))
                    return True
                except psycopg.errors.ObjectInUse:  # the sink's backend is still exiting
                    return False

            wait_for("the sink's replication origin to be released", dropped, 30)
        self.drop()


def _config(run: str, kafka_bootstrap: str, registry_url: str, sources: list[dict[str, Any]],
            sinks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap_servers": kafka_bootstrap, "offsets_topic": f"{run}.offsets",
                  "producer": {"linger_ms": 5},
                  "topics": {"partitions": 1, "replication_factor": 1},
                  "consumer": {"session_timeout_ms": 6000}},
        "schema_registry": {"url": registry_url},
        "sources": sources, "sinks": sinks,
        "metrics": {"enabled": False}, "log": {"level": "INFO"},
    }


@dataclass
class Pair:
    a: Node
    b: Node
    path: Path
    procs: Processes
    bootstrap: str

    def start_source(self, node: Node) -> Any:
        return self.procs.start(f"source_{node.name}", "source", str(self.path), "--name", node.name)

    def start_sink(self, node: Node) -> Any:
        return self.procs.start(f"sink_{node.name}", "sink", str(self.path),
                                "--name", f"{node.name}_in")

    def converge(self, expected: dict[int, str], timeout: float = 120) -> None:
        for node in (self.a, self.b):
            wait_for(f"{node.name} ({node.kind}) to hold {expected}",
                     lambda n=node: n.rows() == expected, timeout,
                     lambda n=node: f"has {n.rows()}\n{self.procs.all_logs()}")

    def published(self, node: Node, serde: AvroSerde) -> list[tuple[int, str]]:
        """(id, v) of every change record on ``node``'s topic, in order."""
        return [(int(c.after["id"]), str(c.after["v"]))
                for c, _ in read_changes(self.bootstrap, node.topic, serde) if c.after]


def _node(run: str, side: str, kind: str, url: str, table: str) -> Node:
    return Node(f"{run}_{side}", kind, url, table)


@pytest.fixture
def run_name(unique_name: str) -> str:
    return "lp_" + unique_name.removeprefix("t_test_")[-20:].strip("_") + f"_{random.randrange(1000)}"


def _pair_nodes(pairing: str, run: str, table: str, urls: dict[str, str]) -> tuple[Node, Node]:
    a_key, b_key = {"pg-pg": ("pg_source", "pg_replica"),
                    "maria-maria": ("mysql_source", "mysql_replica"),
                    "pg-maria": ("pg_source", "mysql_source")}[pairing]
    kind = {"pg_source": "postgres", "pg_replica": "postgres",
            "mysql_source": "mysql", "mysql_replica": "mysql"}
    return (_node(run, "a", kind[a_key], urls[a_key], table),
            _node(run, "b", kind[b_key], urls[b_key], table))


@pytest.fixture
def urls(pg_source_dsn: str, pg_replica_dsn: str, mysql_source_url: str,
         mysql_replica_url: str) -> dict[str, str]:
    return {"pg_source": pg_source_dsn, "pg_replica": pg_replica_dsn,
            "mysql_source": mysql_source_url, "mysql_replica": mysql_replica_url}


@pytest.fixture
def pair_factory(tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str,
                 urls: dict[str, str], run_name: str, unique_name: str) -> Iterator[Any]:
    made: list[tuple[Node, Node]] = []

    def make(pairing: str, procs: Processes) -> Pair:
        a, b = _pair_nodes(pairing, run_name, unique_name, urls)
        made.append((a, b))
        for n in (a, b):
            n.create()
        path = tmp_path / "pipeline.yaml"
        path.write_text(yaml.safe_dump(_config(
            run_name, kafka_bootstrap, schema_registry_url,
            [a.source(skip=True), b.source(skip=True)],
            [a.sink([b.topic]), b.sink([a.topic])])))
        return Pair(a, b, path, procs, kafka_bootstrap)

    yield make
    for a, b in made:
        for n in (a, b):
            n.cleanup()


def _bidirectional(pair: Pair, serde: AvroSerde) -> None:
    a, b = pair.a, pair.b
    for n in (a, b):
        pair.start_source(n)
    a.write(1, "a1")
    b.write(2, "b2")
    for n in (a, b):  # the sinks subscribe to existing topics
        wait_for(f"{n.topic} to exist", lambda n=n: record_count(pair.bootstrap, n.topic) >= 1,
                 90, pair.procs.all_logs)
    for n in (a, b):
        pair.start_sink(n)
    pair.converge({1: "a1", 2: "b2"})
    # updates of the other node's rows, and new rows
    a.update(2, "a2")
    a.write(3, "a3")
    b.update(1, "b1")
    b.write(4, "b4")
    pair.converge({1: "b1", 2: "a2", 3: "a3", 4: "b4"})
    # the last markers: once the other node has them, each source has passed every
    # sink-applied transaction in its log
    a.write(5, "a5")
    b.write(6, "b6")
    pair.converge({1: "b1", 2: "a2", 3: "a3", 4: "b4", 5: "a5", 6: "b6"})
    assert pair.published(a, serde) == [(1, "a1"), (2, "a2"), (3, "a3"), (5, "a5")]
    assert pair.published(b, serde) == [(2, "b2"), (1, "b1"), (4, "b4"), (6, "b6")]
    for n in (a, b):
        if n.kind == "postgres":  # the slot moves past the skipped transactions too
            (lsn,) = n.run("SELECT pg_current_wal_lsn()::text")[0]
            wait_for(f"{n.name}_slot to confirm {lsn}", lambda n=n, lsn=lsn: bool(n.run(
                "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                "WHERE slot_name = %s", (lsn, f"{n.name}_slot"))[0][0]), 60,
                pair.procs.all_logs)


@pytest.mark.parametrize("pairing", [
    "pg-pg",
    pytest.param("maria-maria", marks=pytest.mark.slow),
    pytest.param("pg-maria", marks=pytest.mark.slow),
])
def test_two_nodes_converge_without_echo(pairing: str, pair_factory: Any, tmp_path: Path,
                                         schema_registry_url: str) -> None:
    serde = AvroSerde(RegistryClient(schema_registry_url))
    with processes(tmp_path) as procs:
        _bidirectional(pair_factory(pairing, procs), serde)


@pytest.mark.slow
@pytest.mark.parametrize("pairing", ["pg-pg", "maria-maria"])
def test_source_killed_with_sink_writes_in_its_log(pairing: str, pair_factory: Any,
                                                  tmp_path: Path, schema_registry_url: str) -> None:
    """kill -9 of node a's source; node b's writes are applied to a while it is down
    (so they sit in a's log ahead of its resume position), then it restarts."""
    serde = AvroSerde(RegistryClient(schema_registry_url))
    with processes(tmp_path) as procs:
        pair = pair_factory(pairing, procs)
        a, b = pair.a, pair.b
        source_a = pair.start_source(a)
        pair.start_source(b)
        a.write(1, "a1")
        b.write(2, "b2")
        for n in (a, b):
            wait_for(f"{n.topic} to exist", lambda n=n: record_count(pair.bootstrap, n.topic) >= 1,
                     90, procs.all_logs)
        for n in (a, b):
            pair.start_sink(n)
        pair.converge({1: "a1", 2: "b2"})
        source_a.kill()  # SIGKILL
        source_a.wait()
        for i in range(10, 20):
            b.write(i, f"b{i}")
        b.update(1, "b1")
        expected = {1: "b1", 2: "b2", **{i: f"b{i}" for i in range(10, 20)}}
        wait_for("a to hold b's writes", lambda: a.rows() == expected, 120, procs.all_logs)
        a.write(20, "a20")  # a local write behind them
        pair.start_source(a)
        expected[20] = "a20"
        pair.converge(expected)
        a.write(30, "a30")
        b.write(31, "b31")
        expected.update({30: "a30", 31: "b31"})
        pair.converge(expected)
        # at least once: the restart may publish a1 again, but never a change of b's
        assert {k for k, _ in pair.published(a, serde)} == {1, 20, 30}
        assert sorted(set(pair.published(a, serde))) == [(1, "a1"), (20, "a20"), (30, "a30")]
        assert {k for k, _ in pair.published(b, serde)} == {2, *range(10, 20), 1, 31}


def test_one_way_pipeline_publishes_sink_writes_by_default(
        tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str,
        pg_replica_dsn: str, run_name: str, unique_name: str) -> None:
    """Default settings: a sink with an origin writes to pg-replica, and a source capturing
    pg-replica without skip_replicated_changes publishes those rows (tagged with the origin)."""
    serde = AvroSerde(RegistryClient(schema_registry_url))
    up = Node(f"{run_name}_up", "postgres", pg_source_dsn, unique_name)
    down = Node(f"{run_name}_down", "postgres", pg_replica_dsn, unique_name)
    for n in (up, down):
        n.create()
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(_config(
        run_name, kafka_bootstrap, schema_registry_url,
        [up.source(skip=False), down.source(skip=False)], [down.sink([up.topic])])))
    try:
        with processes(tmp_path) as procs:
            pair = Pair(up, down, path, procs, kafka_bootstrap)
            pair.start_source(up)
            pair.start_source(down)
            up.write(1, "x")
            wait_for(f"{up.topic} to exist", lambda: record_count(kafka_bootstrap, up.topic) >= 1,
                     90, procs.all_logs)
            pair.start_sink(down)
            for i in range(2, 6):
                up.write(i, f"x{i}")
            want = {1: "x", **{i: f"x{i}" for i in range(2, 6)}}
            wait_for("the replica", lambda: down.rows() == want, 120, procs.all_logs)
            wait_for(f"{down.topic} to hold the sink's writes",
                     lambda: record_count(kafka_bootstrap, down.topic) >= 5, 90, procs.all_logs)
            changes = [c for c, _ in read_changes(kafka_bootstrap, down.topic, serde)]
            assert sorted(int(c.after["id"]) for c in changes if c.after) == [1, 2, 3, 4, 5]
            assert {c.origin for c in changes} == {down.name}
    finally:
        for n in (up, down):
            n.cleanup()
