"""The replication pipelines `make bench-compare` runs side by side, behind one interface.

(A) ``native``: PostgreSQL's publication/subscription, pg-source -> pg-replica.
(B) ``debezium``: Debezium's PostgreSQL source + Debezium's JDBC sink in one Kafka
    Connect standalone worker (deploy/local/connect.py), Avro through Apicurio's
    converter; it reports itself unavailable (and the run goes on) if the worker
    cannot start.
(C) ``cdc``: ``cdc source`` + ``cdc sink`` processes on the same broker.

The same three for MariaDB (``--db mariadb``): (A) MariaDB's own replication
(mysql-replica replicating the benchmark table from mysql-source's binlog, by
file and position, filtered to that table), (B) Debezium's MariaDB source + its
JDBC sink, (C) cdc's MariaDB source + sink.

Each pipeline replicates one table of the benchmark (created on the source by
the caller) into the replica database under the same name, and can be paused
and resumed (a backlog is written while paused, then timed as it drains).
:meth:`Pipeline.pids` names every process that does the pipeline's work, for
CPU and RSS accounting.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[2]
CDC = [sys.executable, "-m", "cdc.cli"]

COLUMNS = ("id", "qty", "name", "price", "created", "day", "ratio", "active", "code", "seq")
TABLE_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, qty integer, name text,
  price numeric(10,2), created timestamp without time zone, day date, ratio double precision,
  active boolean, code character varying(50), seq bigint)"""


MY_TABLE_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, qty int, name text,
  price decimal(10,2), created datetime(6), day date, ratio double, active boolean,
  code varchar(50), seq bigint) DEFAULT CHARSET=utf8mb4"""


class MyConn:
    """A PyMySQL connection with psycopg's ``execute(sql, params) -> cursor`` face."""

    def __init__(self, url: str) -> None:
        import pymysql

        from tests.fixtures.services import mysql_kwargs

        self.conn = pymysql.connect(**mysql_kwargs(url))

    def execute(self, sql: str, params: Any = None) -> Any:
        cur = self.conn.cursor()
        cur.execute(sql, params or None)
        return cur

    def close(self) -> None:
        self.conn.close()


def mysql_db(url: str) -> str:
    return urlparse(url).path.strip("/")


def _stack() -> Any:
    """deploy/local/stack.py (loaded by deploy/local/connect.py): the MariaDB servers' pids."""
    from tests.fixtures.debezium import connect_module

    return connect_module().stack


class Unavailable(Exception):
    """A pipeline that cannot run on this checkout (its reason is reported)."""


def wait(what: str, check: Any, timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


class Pipeline:
    label = ""
    # The Connect worker's heap for Debezium ("shipped" or a maximum such as "768m").
    connect_heap = "shipped"
    # The heap flags the Connect worker ran with (Debezium only).
    heap: str | None = None

    def __init__(self, eps: Any, table: str) -> None:
        self.eps = eps
        self.table = table
        # The replica's table as the benchmark names it on the replica connection.
        self.replica_table = table

    def prepare(self) -> None:
        """Set up capture (from now on) and the replica table; leaves it running."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def pids(self) -> dict[str, int]:
        return {}

    def source_events(self) -> int | None:
        """Changes the capture side has put into Kafka so far, if it can say."""
        return None

    def teardown(self) -> None: ...


def _missing_my_table() -> type[Exception]:
    import pymysql

    missing: type[Exception] = pymysql.err.ProgrammingError
    return missing


_MissingMyTable = _missing_my_table()


def _one(conn: Any, sql: str, params: Any = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


class Native(Pipeline):
    label = "native"

    def prepare(self) -> None:
        self.src = psycopg.connect(self.eps.pg_source_dsn, autocommit=True)
        self.rep = psycopg.connect(self.eps.pg_replica_dsn, autocommit=True)
        self.rep.execute(TABLE_DDL.format(t=self.table))
        self.src.execute(f"CREATE PUBLICATION {self.table} FOR TABLE {self.table}")
        self.rep.execute(
            f"CREATE SUBSCRIPTION {self.table} CONNECTION '{self.eps.pg_source_dsn}' "
            f"PUBLICATION {self.table} WITH (copy_data = false)")
        self._pids: dict[str, int] = {}

    def _refresh(self) -> None:
        wal = _one(self.src, "SELECT pid FROM pg_stat_replication WHERE application_name = %s",
                   [self.table])
        app = _one(self.rep, "SELECT pid FROM pg_stat_subscription WHERE subname = %s "
                   "AND relid IS NULL AND pid IS NOT NULL", [self.table])
        if wal and app:
            self._pids = {"walsender": int(wal), "apply worker": int(app)}

    def pause(self) -> None:
        self.rep.execute(f"ALTER SUBSCRIPTION {self.table} DISABLE")
        wait("native apply worker gone", lambda: _one(
            self.rep, "SELECT count(*) FROM pg_stat_subscription WHERE subname = %s "
            "AND pid IS NOT NULL", [self.table]) == 0, 60)
        self._pids = {}

    def resume(self) -> None:
        self.rep.execute(f"ALTER SUBSCRIPTION {self.table} ENABLE")
        def running() -> bool:
            self._refresh()
            return bool(self._pids)

        with contextlib.suppress(TimeoutError):
            wait("native apply worker", running, 10)

    def pids(self) -> dict[str, int]:
        if not self._pids:
            self._refresh()
        return dict(self._pids)

    def teardown(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.rep.execute(f"ALTER SUBSCRIPTION {self.table} DISABLE")
        with contextlib.suppress(psycopg.Error):
            self.rep.execute(f"ALTER SUBSCRIPTION {self.table} SET (slot_name = NONE)")
            self.rep.execute(f"DROP SUBSCRIPTION IF EXISTS {self.table}")
        for _ in range(50):  # the walsender may hold the slot a moment longer
            try:
                self.src.execute("SELECT pg_drop_replication_slot(slot_name) FROM "
                                 "pg_replication_slots WHERE slot_name = %s", [self.table])
                break
            except psycopg.Error:
                time.sleep(0.1)
        self.src.execute(f"DROP PUBLICATION IF EXISTS {self.table}")
        self.src.close()
        self.rep.close()


class Debezium(Pipeline):
    """Debezium's PostgreSQL source + Debezium's JDBC sink, both in one Kafka Connect
    standalone worker (deploy/local/connect.py), Avro keys and values through Apicurio's
    converter (Confluent framing). Pause/resume pauses and resumes both connectors through
    the worker's REST API (``PUT /connectors/NAME/pause`` and ``/resume``; the worker JVM
    stays up and warm). ``/stop`` was tried first: stopping the PostgreSQL source during a
    backlog blocked the standalone worker's REST API for minutes at a load of 33. While
    paused, Debezium's PostgreSQL source keeps its replication connection and may decode
    up to its queue (``max.queue.size``, 8,192 records) ahead. The replica table is created here with
    the source's DDL (as for native replication), so the parity check compares like types.
    Connector settings are Debezium's defaults apart from those named below (no snapshot,
    no tombstones, the converters, upsert by record key in the sink).
    """

    label = "debezium"
    plugins: tuple[str, ...] = ()
    # Debezium's defaults apart from these (and the converters): no snapshot, no tombstones.
    EXTRA: ClassVar[dict[str, str]] = {"snapshot.mode": "no_data", "tombstones.on.delete": "false"}

    def _connect_src(self) -> Any:
        return psycopg.connect(self.eps.pg_source_dsn, autocommit=True)

    def _connect_rep(self) -> Any:
        return psycopg.connect(self.eps.pg_replica_dsn, autocommit=True)

    def _create_replica_table(self) -> None:
        self.rep.execute(TABLE_DDL.format(t=self.table))

    def _source_config(self) -> dict[str, Any]:
        from tests.fixtures.debezium import pg_source_config

        self.slot = f"{self.table}_slot"
        self.topic = f"{self.prefix}.public.{self.table}"
        return pg_source_config(
            self.eps.pg_source_dsn, prefix=self.prefix, tables=[self.table], slot=self.slot,
            extra=self.EXTRA)

    def _jdbc(self) -> tuple[str, str, str]:
        r = psycopg.conninfo.conninfo_to_dict(self.eps.pg_replica_dsn)
        return (f"jdbc:postgresql://{r.get('host')}:{r.get('port')}/{r.get('dbname')}",
                str(r.get("user", "postgres")), str(r.get("password", "")))

    def prepare(self) -> None:
        try:
            from tests.fixtures.debezium import connect_module

            mod = connect_module()
            self.worker = mod.ConnectWorker()
            h = self.connect_heap
            self.heap = (mod.SHIPPED_HEAP if h == "shipped" else h if h.startswith("-")
                         else f"-Xms256m -Xmx{h}")
            # Started (or restarted with this heap) here: stopped again by teardown.
            self.started = (not self.worker.running()
                            or self.worker.heap_options() != self.heap.split())
            mod.install((*mod.DEFAULT_PARTS, *self.plugins))  # before the start: no restart
            self.worker.start(timeout=900, heap=self.heap)
        except Exception as e:  # no Maven, no Java, no cache: the run goes on without B
            raise Unavailable(f"the Kafka Connect worker did not start: {e}") from e
        from tests.fixtures.debezium import jdbc_sink_config, wait_topics

        self.src = self._connect_src()
        self.rep = self._connect_rep()
        self._create_replica_table()
        self.prefix = f"{self.table}_dz"
        self.source_name, self.sink_name = f"{self.table}_src", f"{self.table}_jdbc"
        self.worker.deploy(self.source_name, self._source_config())
        self.worker.wait_running(self.source_name, 300)
        self._wait_streaming()
        # The first record creates the topic; the sink subscribes to it by name. The probe
        # row is updated until it arrives (a source may take its start position late).
        self.src.execute(f"INSERT INTO {self.table} (id, seq) VALUES (-1, 0)")
        deadline = time.monotonic() + 300
        while True:
            try:
                wait_topics(self.eps.kafka_bootstrap, [self.topic], 5)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                self.src.execute(f"UPDATE {self.table} SET seq = seq + 1 WHERE id = -1")
        self.worker.deploy(self.sink_name, jdbc_sink_config(*self._jdbc(), topics=[self.topic]))
        self.worker.wait_running(self.sink_name, 300)
        wait("debezium probe row at the replica", self._probe_applied, 300, 0.2)
        self.src.execute(f"DELETE FROM {self.table} WHERE id = -1")
        wait("debezium probe delete at the replica", lambda: not self._probe_applied(), 300, 0.2)
        from confluent_kafka import Consumer

        self.consumer = Consumer({"bootstrap.servers": self.eps.kafka_bootstrap,
                                  "group.id": f"{self.table}-offsets"})
        self.base = self._end_offsets()

    def _wait_streaming(self) -> None:
        wait("debezium slot", lambda: _one(
            self.src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
            [self.slot]) == 1, 300, 0.2)

    def _probe_applied(self) -> bool:
        return bool(_one(self.rep, f"SELECT count(*) FROM {self.replica_table} WHERE id = -1"))

    def _end_offsets(self) -> int:
        from confluent_kafka import TopicPartition

        md = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        return sum(self.consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                       timeout=10)[1] for p in md.partitions)

    def _state(self, name: str) -> str:
        return str(self.worker.status(name)["connector"]["state"])

    def _paused(self, name: str) -> bool:
        st = self.worker.status(name)
        return all(s.get("state") == "PAUSED" for s in [st["connector"], *st.get("tasks", [])])

    def pause(self) -> None:
        for name in (self.source_name, self.sink_name):
            self.worker.pause(name)
        for name in (self.source_name, self.sink_name):
            wait(f"{name} paused", lambda n=name: self._paused(n), 600, 0.2)

    def resume(self) -> None:
        self.base = self._end_offsets()
        for name in (self.source_name, self.sink_name):
            self.worker.resume(name)

    def check(self) -> None:
        """Raise if a connector has FAILED (asked of the worker at most every 2 s)."""
        now = time.monotonic()
        if now - getattr(self, "_checked", 0.0) < 2:
            return
        self._checked = now
        for name in (self.source_name, self.sink_name):
            self.worker.assert_running(name)

    def _db_pids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        wal = _one(self.src, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                   [self.slot])
        if wal:
            out["walsender"] = int(wal)
        rows = self.rep.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'PostgreSQL JDBC Driver' "
            "AND datname = current_database() ORDER BY pid").fetchall()
        for i, (pid,) in enumerate(rows):
            out[f"replica backend {i + 1}"] = int(pid)
        return out

    def pids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        jvm = self.worker.pid()
        if jvm:
            out["connect worker (source + sink)"] = jvm
        out.update(self._db_pids())
        for svc in ("kafka", "registry"):
            pid = stack_pid(svc)
            if pid:
                out[svc] = pid
        return out

    def source_events(self) -> int | None:
        """Records in the table's topic since the last resume (its end offsets)."""
        try:
            return self._end_offsets() - self.base
        except Exception:  # a broker hiccup: no reading this time
            return None

    def _drop_capture(self) -> None:
        for _ in range(100):  # the walsender may hold the slot a moment longer
            try:
                self.src.execute("SELECT pg_drop_replication_slot(slot_name) FROM "
                                 "pg_replication_slots WHERE slot_name = %s", [self.slot])
                break
            except psycopg.Error:
                time.sleep(0.2)
        self.src.execute(f"DROP PUBLICATION IF EXISTS {self.slot}_pub")

    def teardown(self) -> None:
        if not hasattr(self, "source_name"):  # unavailable: nothing was deployed
            return
        for name in (self.sink_name, self.source_name):
            with contextlib.suppress(Exception):
                self.worker.delete(name)
        with contextlib.suppress(Exception):
            self.consumer.close()
        self._drop_capture()
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.eps.kafka_bootstrap})
        topics = [self.topic, f"{self.prefix}.schema-history"]
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best effort: a benchmark's topics
                fut.result(30)
        if self.started:  # leave a worker someone else started running
            self.worker.stop()
        self.src.close()
        self.rep.close()


class DebeziumMaria(Debezium):
    """Debezium's MariaDB source (connector 3.5.0: 3.6 is not served, and its MySQL
    connector 3.6 refuses MariaDB 10.11) + its JDBC sink, one Connect worker, Avro through
    Apicurio's converter; the same settings as for PostgreSQL."""

    plugins = ("debezium-mariadb",)
    # Only the benchmark table's DDL in the schema history: another table of the source
    # database with types its DDL parser does not know (a test's `uuid`/`inet6` columns)
    # stopped the connector at start, before its first record.
    EXTRA: ClassVar[dict[str, str]] = {
        **Debezium.EXTRA, "schema.history.internal.store.only.captured.tables.ddl": "true",
    }

    def _connect_src(self) -> Any:
        return MyConn(self.eps.mysql_source_url)

    def _connect_rep(self) -> Any:
        return MyConn(self.eps.mysql_replica_url)

    def _create_replica_table(self) -> None:
        self.rep.execute(MY_TABLE_DDL.format(t=self.table))

    def _source_config(self) -> dict[str, Any]:
        from tests.fixtures.debezium import mariadb_source_config

        self.topic = f"{self.prefix}.{mysql_db(self.eps.mysql_source_url)}.{self.table}"
        return mariadb_source_config(
            self.eps.mysql_source_url, prefix=self.prefix, tables=[self.table],
            server_id=5000 + int(time.time()) % 1000, bootstrap=self.eps.kafka_bootstrap,
            extra=self.EXTRA)

    def _jdbc(self) -> tuple[str, str, str]:
        u = urlparse(self.eps.mysql_replica_url)
        return (f"jdbc:mariadb://{u.hostname}:{u.port}/{u.path.strip('/')}", u.username or "root",
                u.password or "")

    def _wait_streaming(self) -> None:
        pass  # no slot: the probe row is updated until it arrives

    def _db_pids(self) -> dict[str, int]:
        return mariadb_pids()

    def _drop_capture(self) -> None:
        pass


def mariadb_pids() -> dict[str, int]:
    """Both MariaDB servers, whole: replication there runs in threads of mariadbd, not in
    processes of its own, so every MariaDB pipeline counts both servers entirely."""
    st = _stack()
    out: dict[str, int] = {}
    for label, server in (("source mariadbd", st.MYSQL_SOURCE), ("replica mariadbd",
                                                                 st.MYSQL_REPLICA)):
        pid = server.pid()
        if pid:
            out[label] = int(pid)
    return out


class NativeMaria(Pipeline):
    """MariaDB replication: mysql-replica replicates mysql-source's binlog from the current
    file and position (no GTID), filtered with ``replicate_do_table`` to the benchmark table,
    which the replica holds in a database of the source's name (replication keeps the
    database name). Pause/resume: STOP/START SLAVE."""

    label = "native"

    def prepare(self) -> None:
        self.src = MyConn(self.eps.mysql_source_url)
        self.rep = MyConn(self.eps.mysql_replica_url)
        db = mysql_db(self.eps.mysql_source_url)
        self.replica_table = f"{db}.{self.table}"
        self.rep.execute(f"CREATE DATABASE IF NOT EXISTS {db} DEFAULT CHARACTER SET utf8mb4")
        self.rep.execute(MY_TABLE_DDL.format(t=self.replica_table))
        with contextlib.suppress(Exception):
            self.rep.execute("STOP SLAVE")
        self.rep.execute(f"SET GLOBAL replicate_do_table = '{self.replica_table}'")
        row = self.src.execute("SHOW MASTER STATUS").fetchone()
        u = urlparse(self.eps.mysql_source_url)
        self.rep.execute(
            "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, "
            "MASTER_PASSWORD = %s, MASTER_LOG_FILE = %s, MASTER_LOG_POS = %s, "
            "MASTER_USE_GTID = no",
            [u.hostname, u.port, u.username or "root", u.password or "", row[0], int(row[1])])
        self.resume()
        self.src.execute(f"INSERT INTO {self.table} (id) VALUES (-1)")
        wait("native probe row", lambda: bool(_one(
            self.rep, f"SELECT count(*) FROM {self.replica_table} WHERE id = -1")), 120, 0.2)
        self.src.execute(f"DELETE FROM {self.table} WHERE id = -1")
        wait("native probe delete", lambda: not _one(
            self.rep, f"SELECT count(*) FROM {self.replica_table} WHERE id = -1"), 120, 0.2)

    def _slave(self) -> dict[str, Any]:
        cur = self.rep.execute("SHOW SLAVE STATUS")
        row = cur.fetchone()
        return {} if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))

    def pause(self) -> None:
        self.rep.execute("STOP SLAVE")

    def resume(self) -> None:
        self.rep.execute("START SLAVE")

    def check(self) -> None:
        st = self._slave()
        for k in ("Last_IO_Error", "Last_SQL_Error"):
            if st.get(k):
                raise RuntimeError(f"native MariaDB replication: {k}: {st[k]}")

    def pids(self) -> dict[str, int]:
        return mariadb_pids()

    def teardown(self) -> None:
        if not hasattr(self, "rep"):
            return
        for sql in ("STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL replicate_do_table = ''"):
            with contextlib.suppress(Exception):
                self.rep.execute(sql)
        self.src.close()
        self.rep.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_pid(name: str) -> int | None:
    """The pid of a local-stack service (kafka, registry) of this port offset."""
    import os

    base = Path(os.environ.get("CDC_LOCAL_DIR", ROOT / ".cdc-local"))
    off = int(os.environ.get("CDC_PORT_OFFSET", "0"))
    run = (base if off == 0 else base / f"stack-{off}") / "run" / f"{name}.pid"
    try:
        return int(run.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def set_path(tree: Any, path: str, value: Any) -> None:
    """Set ``value`` at dotted ``path`` in a config tree (list items by index)."""
    parts = path.split(".")
    node = tree
    for i, p in enumerate(parts):
        key: Any = int(p) if isinstance(node, list) else p
        if i == len(parts) - 1:
            node[key] = value
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            node = node[key]


class Cdc(Pipeline):
    label = "cdc"
    # (path, value) changes to the generated config (bench-compare --cdc-set), for A/B runs.
    overrides: ClassVar[list[tuple[str, Any]]] = []

    def _endpoints(self) -> tuple[dict[str, Any], dict[str, Any], str]:
        """The source and sink entries of the pipeline file, and the topic."""
        u, r = urlparse(self.eps.pg_source_dsn), urlparse(self.eps.pg_replica_dsn)
        source = {
            "name": self.name, "kind": "postgres",
            "connection": {"host": u.hostname, "port": u.port, "user": u.username or "postgres",
                           "database": u.path.strip("/")},
            "tables": {"include": [f"public.{self.table}"]},
            "slot_name": f"{self.name}_slot", "publication_name": f"{self.name}_pub",
            "proto_version": 2, "streaming": True, "snapshot": {"mode": "never"},
            "tombstones_on_delete": False, "heartbeat_interval_s": 1,
        }
        sink = {"name": f"{self.name}_sink", "kind": "postgres", "topics": [f"{self.name}.public.*"],
                "target": {"host": r.hostname, "port": r.port, "user": r.username or "postgres",
                           "database": r.path.strip("/")}}
        return source, sink, f"{self.name}.public.{self.table}"

    def _connect(self) -> None:
        self.src: Any = psycopg.connect(self.eps.pg_source_dsn, autocommit=True)
        self.rep: Any = psycopg.connect(self.eps.pg_replica_dsn, autocommit=True)

    def _wait_streaming(self) -> None:
        wait("cdc source slot", lambda: _one(
            self.src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
            [f"{self.name}_slot"]) == 1, 120, 0.2)

    def prepare(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cdc-compare-"))
        self.metrics = _free_port()
        self.name = self.table
        source, sink, self.topic = self._endpoints()
        cfg = {
            "kafka": {"bootstrap_servers": self.eps.kafka_bootstrap,
                      "offsets_topic": f"{self.name}.offsets",
                      "topics": {"partitions": 3, "replication_factor": 1}},
            "schema_registry": {"url": self.eps.schema_registry_url},
            "sources": [source],
            "sinks": [sink],
            "metrics": {"host": "127.0.0.1", "port": self.metrics},
            "log": {"level": "WARNING"},
        }
        for key, value in self.overrides:
            set_path(cfg, key, value)
        # One file per process: each serves its metrics on its own port (the source's
        # events counter is read from it).
        self.config = self.dir / "source.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.sink_config = self.dir / "sink.yaml"
        self.sink_config.write_text(yaml.safe_dump(
            {**cfg, "metrics": {"host": "127.0.0.1", "port": _free_port()}}))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._connect()
        self.resume()
        # Capture starts once the source streams; a probe row proves the whole path (and
        # makes the sink create the replica table). It is updated until it arrives (a
        # MariaDB source takes its start position when it is up).
        self._wait_streaming()
        self.src.execute(f"INSERT INTO {self.table} (id, seq) VALUES (-1, 0)")
        deadline = time.monotonic() + 180
        while True:
            try:
                wait("cdc probe row at the replica", self._probe_applied, 5, 0.2)
                break
            except TimeoutError:
                self.check()
                if time.monotonic() > deadline:
                    raise
                self.src.execute(f"UPDATE {self.table} SET seq = seq + 1 WHERE id = -1")
        self.src.execute(f"DELETE FROM {self.table} WHERE id = -1")
        wait("cdc probe delete at the replica", lambda: not self._probe_applied(), 120, 0.2)

    def _probe_applied(self) -> bool:
        try:
            return bool(_one(self.rep, f"SELECT count(*) FROM {self.table} WHERE id = -1"))
        except (psycopg.errors.UndefinedTable, _MissingMyTable):
            return False

    def _start(self, what: str) -> None:
        log = (self.dir / f"{what}.log").open("ab")
        args = ["--name", self.name] if what == "source" else ["--name", f"{self.name}_sink"]
        config = self.config if what == "source" else self.sink_config
        self.procs[what] = subprocess.Popen([*CDC, what, str(config), *args], cwd=ROOT,
                                            stdout=log, stderr=subprocess.STDOUT)

    def resume(self) -> None:
        self._start("source")
        self._start("sink")

    def pause(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = {}

    def check(self) -> None:
        for what, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"cdc {what} exited with {p.returncode}; see {self.dir}")

    def pids(self) -> dict[str, int]:
        out = {f"cdc {w}": p.pid for w, p in self.procs.items() if p.poll() is None}
        out.update(self._db_pids())
        for svc in ("kafka", "registry"):
            pid = stack_pid(svc)
            if pid:
                out[svc] = pid
        return out

    def _db_pids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        wal = _one(self.src, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                   [f"{self.name}_slot"])
        if wal:
            out["walsender"] = int(wal)
        back = _one(self.rep, "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                    [f"cdc-sink-{self.name}_sink"])
        if back:
            out["replica backend"] = int(back)
        return out

    def source_events(self) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        m = re.search(r"^cdc_source_events_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
        return int(float(m.group(1))) if m else None

    def _drop_publication(self) -> None:
        """The publication the source created (``reset-source --release`` drops the slot
        only: a user's publication may serve others)."""
        with contextlib.suppress(Exception):
            self.src.execute(f"DROP PUBLICATION IF EXISTS {self.name}_pub")

    def teardown(self) -> None:
        self.pause()
        subprocess.run([*CDC, "reset-source", str(self.config), "--name", self.name, "--release",
                        "--yes"], cwd=ROOT, capture_output=True, timeout=120)
        self._drop_publication()
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.eps.kafka_bootstrap})
        topics = [self.topic, f"{self.name}.offsets"]
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best effort: a benchmark's topics
                fut.result(30)
        self.src.close()
        self.rep.close()


class CdcMaria(Cdc):
    """cdc's MariaDB source (binlog) + its MariaDB sink; the replica table is created here
    with the source's DDL (as for the other MariaDB pipelines)."""

    def _drop_publication(self) -> None:
        pass  # (binlogs: nothing to drop)

    def _endpoints(self) -> tuple[dict[str, Any], dict[str, Any], str]:
        import random

        from tests.fixtures.services import connection_settings

        db = mysql_db(self.eps.mysql_source_url)
        source = {
            "name": self.name, "kind": "mysql",
            "connection": {k: v for k, v in connection_settings(
                self.eps.mysql_source_url, 3306).items() if k != "database"},
            "tables": {"include": [f"{db}.{self.table}"]},
            "server_id": random.randint(7000, 7999), "snapshot": {"mode": "never"},
            "tombstones_on_delete": False, "heartbeat_interval_s": 1,
        }
        sink = {"name": f"{self.name}_sink", "kind": "mysql", "topics": [f"{self.name}.{db}.*"],
                "target": connection_settings(self.eps.mysql_replica_url, 3306)}
        return source, sink, f"{self.name}.{db}.{self.table}"

    def _connect(self) -> None:
        self.src = MyConn(self.eps.mysql_source_url)
        self.rep = MyConn(self.eps.mysql_replica_url)
        self.rep.execute(MY_TABLE_DDL.format(t=self.table))

    def _wait_streaming(self) -> None:
        pass  # no slot: the probe row is updated until it arrives

    def _db_pids(self) -> dict[str, int]:
        return mariadb_pids()


PIPELINES: dict[str, dict[str, type[Pipeline]]] = {
    "postgres": {"native": Native, "debezium": Debezium, "cdc": Cdc},
    "mariadb": {"native": NativeMaria, "debezium": DebeziumMaria, "cdc": CdcMaria},
}
