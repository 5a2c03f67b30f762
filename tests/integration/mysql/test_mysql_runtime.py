"""The MySQL/MariaDB source through the real runtime, Kafka, registry and offsets topic.

The same checks as the PostgreSQL runtime tests (tests/integration/postgres/
test_pg_runtime.py): every change of a snapshot plus stream arrives in Kafka
and replays to the table's final rows; ``cdc source`` killed with SIGKILL at
random points while a writer commits loses nothing and repeats only what came
after the durable positions.

The helpers here (config file, process start, durable position, replay) are
shared with tests/integration/test_broker_restart.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
import pytest
import yaml
from confluent_kafka.admin import AdminClient

from cdc.events import Op
from cdc.offsets.store import OffsetStore
from cdc.runtime.source_runner import RunnerSettings, SnapshotMode, SourceRunner
from cdc.serde import AvroSerde, DecodedChange, RegistryClient
from cdc.spi import Position
from cdc.transport.producer import EventProducer
from cdc.transport.topics import TopicManager, TopicSpec
from connectors.mysql.config import MySqlSourceConfig
from connectors.mysql.position import GtidSet, MySqlPosition
from connectors.mysql.source import MySqlSource
from tests.fixtures.services import mysql_kwargs
from tests.fixtures.topics import read_changes

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
CDC = ROOT / ".venv" / "bin" / "cdc"
DATABASE = "cdc_source"

Rows = dict[Any, dict[str, Any]]


# --------------------------------------------------------------------------- helpers


class MyEnv:
    """A unique source name, server id and table on the shared MariaDB; dropped at the end."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = re.sub("_+", "_", name)  # source names allow no "__"
        self.kwargs = {k: v for k, v in mysql_kwargs(url).items() if k != "autocommit"}
        self.kwargs["database"] = self.kwargs.get("database") or DATABASE
        self.database = str(self.kwargs["database"])
        self.server_id = random.randint(100_000, 4_000_000_000)
        self.conn = pymysql.connect(**self.kwargs, autocommit=True)
        self.tables: list[str] = []
        self.topics: list[str] = []

    def _live(self) -> Any:
        """The connection, opened again if the server was restarted under it."""
        try:
            self.conn.ping(False)
        except pymysql.err.Error:
            self.conn = pymysql.connect(**self.kwargs, autocommit=True)
        return self.conn

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._live().cursor() as cur:
            cur.execute(statement, args or None)
            return list(cur.fetchall())

    def table(self, ddl: str) -> str:
        self.sql(f"DROP TABLE IF EXISTS {self.name}")
        self.sql(ddl.format(t=self.name))
        self.tables.append(self.name)
        self.topics.append(f"{self.name}.{self.database}.{self.name}")
        return self.name

    def gtid_now(self) -> GtidSet:
        """The server's binlog GTID state: every transaction committed so far."""
        (text,) = self.sql("SELECT @@GLOBAL.gtid_binlog_pos")[0]
        return GtidSet.parse(str(text or ""))

    def config_entry(self, **overrides: Any) -> dict[str, Any]:
        """The source's config entry, as it stands in a YAML file."""
        kw = self.kwargs
        return {
            "name": self.name,
            "kind": "mysql",
            "connection": {"host": kw["host"], "port": kw["port"], "user": kw["user"],
                           "password": kw.get("password") or None,
                           "database": self.database},
            "tables": {"include": [f"{self.database}.{t}" for t in self.tables]},
            "snapshot": {"mode": "initial", "chunk_size": 1000},
            "heartbeat_interval_s": 0.5,
            "server_id": self.server_id,
            **overrides,
        }

    def config(self, **overrides: Any) -> MySqlSourceConfig:
        return MySqlSourceConfig.model_validate(self.config_entry(**overrides))

    def state(self, table: str) -> Rows:
        with self._live().cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(f"SELECT * FROM {table}")
            return {r["id"]: dict(r) for r in cur.fetchall()}

    def cleanup(self, kafka: str) -> None:
        for t in self.tables:
            self.sql(f"DROP TABLE IF EXISTS {t}")
        self.conn.close()
        topics = [*self.topics, f"{self.name}.offsets"]
        admin = AdminClient({"bootstrap.servers": kafka})
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best effort: a topic never created
                fut.result(30)


@pytest.fixture()
def my(mysql_source_url: str, kafka_bootstrap: str, unique_name: str) -> Iterator[MyEnv]:
    env = MyEnv(mysql_source_url, unique_name)
    try:
        yield env
    finally:
        env.cleanup(kafka_bootstrap)


def consume(bootstrap: str, topic: str, serde: AvroSerde) -> list[DecodedChange]:
    """Every change record of ``topic``, tombstones left out."""
    return [change for change, _ in read_changes(bootstrap, topic, serde)]


def replay(changes: list[DecodedChange], key: str = "id") -> Rows:
    """Apply changes in source order (a position names one change; repeats collapse)."""
    state: Rows = {}
    by_position = {c.position: c for c in changes}
    for pos in sorted(by_position):  # type: ignore[type-var]
        c = by_position[pos]
        if c.op in (Op.READ, Op.CREATE, Op.UPDATE):
            assert c.after is not None
            if c.before is not None and c.before[key] != c.after[key]:
                state.pop(c.before[key], None)
            state[c.after[key]] = dict(c.after)
        elif c.op is Op.DELETE:
            assert c.before is not None
            state.pop(c.before[key], None)
        elif c.op is Op.TRUNCATE:
            state.clear()
    return state


def assert_repeats_only_after(changes: list[DecodedChange], durables: list[Position]) -> None:
    """A change may repeat once per kill (or crash) that happened before it was durable."""
    seen = Counter(c.position for c in changes)
    for pos, n in seen.items():
        assert pos is not None
        allowed = 1 + sum(1 for d in durables if pos > d)
        assert n <= allowed, f"{pos} appears {n} times; durable positions were {durables}"


def write_config(path: Path, kafka: str, registry: str, source: dict[str, Any],
                 offsets_topic: str) -> Path:
    config = {
        "kafka": {"bootstrap_servers": kafka, "offsets_topic": offsets_topic,
                  "producer": {"linger_ms": 5},
                  "topics": {"partitions": 3, "replication_factor": 1}},
        "schema_registry": {"url": registry},
        "sources": [source],
        "log": {"level": "INFO"},
    }
    file = path / "pipeline.yaml"
    file.write_text(yaml.safe_dump(config))
    return file


def start_source(config: Path, name: str, log: Path) -> subprocess.Popen[bytes]:
    """``cdc source CONFIG --name NAME`` as a child process, output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([str(CDC), "source", str(config), "--name", name], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def durable(store: OffsetStore, name: str) -> Position | None:
    stored = store.load(name)
    return None if stored is None else stored.position


def wait_for(what: str, check: Callable[[], bool], timeout: float,
             proc: subprocess.Popen[bytes] | None = None, log: Path | None = None,
             interval: float = 0.2) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` (and the process log's tail)."""
    deadline = time.monotonic() + timeout
    while not check():
        tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
        if proc is not None:
            assert proc.poll() is None, f"the source exited with {proc.returncode}:\n{tail}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{tail}"
        time.sleep(interval)


def moved_from(store: OffsetStore, name: str, first: Position | None) -> Callable[[], bool]:
    """Whether the stored durable position of ``name`` is set and differs from ``first``."""

    def check() -> bool:
        now = durable(store, name)
        return now is not None and now != first

    return check


def covers(position: Position | None, gtids: GtidSet) -> bool:
    """The durable position includes every transaction of ``gtids``."""
    return isinstance(position, MySqlPosition) and position.gtid_set.contains(gtids)


class Writer(threading.Thread):
    """Commits transactions of 1-4 inserts (and sometimes an update) until stopped.

    ``connect`` opens a DB-API connection (PyMySQL or psycopg, not autocommit).
    A connection error (a restarted server) abandons the transaction and the
    writer goes on with a new connection; such a transaction may or may not
    have committed, so the table, not ``committed``, is the truth, and the ids
    it used are never reused.
    """

    def __init__(self, connect: Callable[[], Any], table: str, *,
                 errors: tuple[type[BaseException], ...], seed: int = 3,
                 pause_s: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.connect = connect
        self.table = table
        self.errors = errors
        self.rnd = random.Random(seed)
        self.pause_s = pause_s
        self.stop = threading.Event()
        self.committed: list[int] = []
        self.failures = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test through finish()
            self.error = e

    def _run(self) -> None:
        rnd, t = self.rnd, self.table
        next_id, tx = 1000, 0
        conn: Any = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = self.connect()
                tx += 1
                ids: list[int] = []
                with conn.cursor() as cur:
                    for _ in range(rnd.randint(1, 4)):
                        ids.append(next_id + len(ids))
                        cur.execute(f"INSERT INTO {t} (id, tx, v) VALUES (%s, %s, 'x')",
                                    (ids[-1], tx))
                    if rnd.random() < 0.3:
                        cur.execute(f"UPDATE {t} SET v = CONCAT(v, 'y') WHERE id = %s",
                                    (rnd.randrange(1, next_id),))
                conn.commit()
                next_id += len(ids)
                self.committed.append(tx)
            except self.errors:
                self.failures += 1
                next_id += 4  # past any id the abandoned transaction may have committed
                if conn is not None:
                    with contextlib.suppress(Exception):  # already broken
                        conn.close()
                conn = None
                time.sleep(0.2)
                continue
            time.sleep(self.pause_s)
        if conn is not None:
            conn.close()

    def finish(self) -> None:
        self.stop.set()
        self.join(30)
        assert not self.is_alive(), "the writer did not stop"
        if self.error is not None:
            raise self.error


# --------------------------------------------------------------------------- tests


DDL = """CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL,
         amount DECIMAL(12,2), created DATETIME(6), day DATE, ok TINYINT(1), ratio DOUBLE,
         doc JSON, raw VARBINARY(16), ts TIMESTAMP(3) NULL) DEFAULT CHARSET=utf8mb4"""
INSERT = """INSERT INTO {t} SELECT seq, CONCAT('row ', seq), seq * 1.25,
            '2024-01-01 00:00:00.123456' + INTERVAL seq MINUTE, '2024-01-01' + INTERVAL seq DAY,
            seq % 2, seq / 3, JSON_OBJECT('g', seq), UNHEX(MD5(seq)),
            '2024-05-01 12:00:00.250' + INTERVAL seq SECOND FROM seq_1_to_200"""


def _canonical(rows: Rows) -> Rows:
    """PyMySQL's values as the canonical ones (TIMESTAMP is UTC: the stack runs in UTC)."""
    for row in rows.values():
        if row.get("ts") is not None:
            row["ts"] = row["ts"].replace(tzinfo=UTC)
    return rows


def test_source_runner_delivers_every_change_to_kafka(
    my: MyEnv, kafka_bootstrap: str, schema_registry_url: str
) -> None:
    t = my.table(DDL)
    my.sql(INSERT.format(t=t))
    config = my.config()
    src = MySqlSource.from_config(config)
    stop = threading.Event()
    checkpoints: list[MySqlPosition] = []
    runner = SourceRunner(
        my.name, src,
        AvroSerde(RegistryClient(schema_registry_url),
                  topic_naming=lambda _prefix, table: config.topic_for(table)),
        EventProducer(kafka_bootstrap, {"linger.ms": 5}),
        OffsetStore(kafka_bootstrap, f"{my.name}.offsets"),
        TopicManager(kafka_bootstrap),
        RunnerSettings(snapshot_mode=SnapshotMode.INITIAL, checkpoint_interval_s=0.2,
                       topic_spec=TopicSpec(partitions=3)),
        stop=stop, on_checkpoint=lambda p: checkpoints.append(p),  # type: ignore[arg-type]
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for("the snapshot's checkpoint", lambda: bool(checkpoints or failure), 60)
        assert not failure, failure
        for i in range(201, 301):
            my.sql(f"INSERT INTO {t} (id, name, amount, ok) VALUES ({i}, 'new', {i}.5, 1)")
        my.sql(f"UPDATE {t} SET name = 'updated', amount = amount + 1 WHERE id % 7 = 0")
        my.sql(f"DELETE FROM {t} WHERE id % 11 = 0")
        my.sql("BEGIN")
        my.sql(f"INSERT INTO {t} (id, name) VALUES (1000, 'in a tx')")
        my.sql(f"UPDATE {t} SET id = 1001 WHERE id = 1000")  # a primary-key change
        my.sql(f"UPDATE {t} SET ratio = -0.5, raw = '' WHERE id = 1")
        my.sql("COMMIT")
        end = my.gtid_now()
        wait_for("checkpoints to cover the last transaction",
                 lambda: bool(failure) or covers(checkpoints[-1] if checkpoints else None, end),
                 60)
        assert not failure, failure
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    assert not failure, failure
    assert src.acknowledged is not None and src.acknowledged.gtid_set.contains(end)
    assert runner.stats.snapshot_rows == 200

    serde = AvroSerde(RegistryClient(schema_registry_url))
    changes = consume(kafka_bootstrap, f"{my.name}.{my.database}.{t}", serde)
    ops = Counter(c.op for c in changes)
    # The key change 1000 -> 1001 is a delete of the old key and a create of the new one.
    assert ops == {Op.READ: 200, Op.CREATE: 100 + 2, Op.UPDATE: 42 + 1, Op.DELETE: 27 + 1}, ops
    assert len({c.position for c in changes}) == len(changes), "no duplicates in a clean run"
    moved = [c for c in changes if c.key == {"id": 1000}]
    assert [c.op for c in moved] == [Op.CREATE, Op.DELETE]
    assert all(c.transaction is not None for c in changes if c.op is not Op.READ)
    got = replay(changes)
    want = _canonical(my.state(t))
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == want[k], k
    assert got[1]["raw"] == b"" and got[1001]["name"] == "in a tx"


def test_kill_9_during_a_stream_loses_nothing(
    my: MyEnv, kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path
) -> None:
    t = my.table("CREATE TABLE {t} (id INT PRIMARY KEY, tx INT NOT NULL, v VARCHAR(200))")
    my.sql(f"INSERT INTO {t} SELECT seq, 0, 'snapshot' FROM seq_1_to_500")
    config = write_config(tmp_path, kafka_bootstrap, schema_registry_url,
                          my.config_entry(), f"{my.name}.offsets")
    log = tmp_path / "source.log"
    store = OffsetStore(kafka_bootstrap, f"{my.name}.offsets")

    writer = Writer(lambda: pymysql.connect(**my.kwargs, autocommit=False), t,
                    errors=(pymysql.err.OperationalError, pymysql.err.InterfaceError))
    writer.start()
    durables: list[Position] = []
    try:
        for _ in range(3):
            proc = start_source(config, my.name, log)
            try:
                first = durable(store, my.name)
                # Kill at a random point once this run has checkpointed something new.
                wait_for("a new checkpoint", moved_from(store, my.name, first), 60, proc, log)
                time.sleep(random.uniform(0.2, 1.5))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            now = durable(store, my.name)
            assert now is not None
            durables.append(now)
    finally:
        writer.finish()
    assert len(writer.committed) > 50, "the writer kept committing"
    end = my.gtid_now()
    proc = start_source(config, my.name, log)
    try:
        wait_for("the final run to catch up", lambda: covers(durable(store, my.name), end),
                 60, proc, log, interval=0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0, log.read_text()[-3000:]

    serde = AvroSerde(RegistryClient(schema_registry_url))
    changes = consume(kafka_bootstrap, f"{my.name}.{my.database}.{t}", serde)
    assert replay(changes) == my.state(t), "every committed change is in Kafka"
    assert_repeats_only_after(changes, durables)
