"""The replication pipelines `make bench-compare` runs side by side, behind one interface.

(A) ``native``: PostgreSQL's publication/subscription, pg-source -> pg-replica.
(B) ``debezium``: Debezium's PostgreSQL source + Debezium's JDBC sink in Kafka
    Connect. Pluggable: it needs the project's Connect worker start API (issue
    #15's interop work); until that is in the tree it reports itself
    unavailable and the run goes on without it.
(C) ``cdc``: ``cdc source`` + ``cdc sink`` processes on the same broker.

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
from typing import Any
from urllib.parse import urlparse

import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[2]
CDC = [sys.executable, "-m", "cdc.cli"]

COLUMNS = ("id", "qty", "name", "price", "created", "day", "ratio", "active", "code", "seq")
TABLE_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, qty integer, name text,
  price numeric(10,2), created timestamp without time zone, day date, ratio double precision,
  active boolean, code character varying(50), seq bigint)"""


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

    def __init__(self, eps: Any, table: str) -> None:
        self.eps = eps
        self.table = table

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


def _one(conn: psycopg.Connection[Any], sql: str, params: Any = ()) -> Any:
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
    label = "debezium"

    def prepare(self) -> None:
        raise Unavailable(
            "needs the project's Kafka Connect worker start API (Debezium PostgreSQL source + "
            "JDBC sink with Apicurio's Avro converter), which is not in this checkout yet")


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


class Cdc(Pipeline):
    label = "cdc"

    def prepare(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cdc-compare-"))
        self.metrics = _free_port()
        self.name = self.table
        u, r = urlparse(self.eps.pg_source_dsn), urlparse(self.eps.pg_replica_dsn)
        cfg = {
            "kafka": {"bootstrap_servers": self.eps.kafka_bootstrap,
                      "offsets_topic": f"{self.name}.offsets",
                      "topics": {"partitions": 3, "replication_factor": 1}},
            "schema_registry": {"url": self.eps.schema_registry_url},
            "sources": [{
                "name": self.name, "kind": "postgres",
                "connection": {"host": u.hostname, "port": u.port, "user": u.username or "postgres",
                               "database": u.path.strip("/")},
                "tables": {"include": [f"public.{self.table}"]},
                "slot_name": f"{self.name}_slot", "publication_name": f"{self.name}_pub",
                "proto_version": 2, "streaming": True, "snapshot": {"mode": "never"},
                "tombstones_on_delete": False, "heartbeat_interval_s": 1,
            }],
            "sinks": [{
                "name": f"{self.name}_sink", "kind": "postgres", "topics": [f"{self.name}.public.*"],
                "target": {"host": r.hostname, "port": r.port, "user": r.username or "postgres",
                           "database": r.path.strip("/")},
            }],
            "metrics": {"host": "127.0.0.1", "port": self.metrics},
            "log": {"level": "WARNING"},
        }
        # One file per process: each serves its metrics on its own port (the source's
        # events counter is read from it).
        self.config = self.dir / "source.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.sink_config = self.dir / "sink.yaml"
        self.sink_config.write_text(yaml.safe_dump(
            {**cfg, "metrics": {"host": "127.0.0.1", "port": _free_port()}}))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.src = psycopg.connect(self.eps.pg_source_dsn, autocommit=True)
        self.rep = psycopg.connect(self.eps.pg_replica_dsn, autocommit=True)
        self.resume()
        # Capture starts once the source has its slot; a probe row proves the whole path
        # (and makes the sink create the replica table).
        wait("cdc source slot", lambda: _one(
            self.src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
            [f"{self.name}_slot"]) == 1, 120, 0.2)
        self.src.execute(f"INSERT INTO {self.table} (id) VALUES (-1)")
        wait("cdc probe row at the replica", self._probe_applied, 180, 0.2)
        self.src.execute(f"DELETE FROM {self.table} WHERE id = -1")
        wait("cdc probe delete at the replica", lambda: not self._probe_applied(), 120, 0.2)

    def _probe_applied(self) -> bool:
        try:
            return bool(_one(self.rep, f"SELECT count(*) FROM {self.table} WHERE id = -1"))
        except psycopg.errors.UndefinedTable:
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
        wal = _one(self.src, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                   [f"{self.name}_slot"])
        if wal:
            out["walsender"] = int(wal)
        back = _one(self.rep, "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                    [f"cdc-sink-{self.name}_sink"])
        if back:
            out["replica backend"] = int(back)
        for svc in ("kafka", "registry"):
            pid = stack_pid(svc)
            if pid:
                out[svc] = pid
        return out

    def source_events(self) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        m = re.search(r"^cdc_source_events_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
        return int(float(m.group(1))) if m else None

    def teardown(self) -> None:
        self.pause()
        subprocess.run([*CDC, "reset-source", str(self.config), "--name", self.name, "--release",
                        "--yes"], cwd=ROOT, capture_output=True, timeout=120)
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.eps.kafka_bootstrap})
        topics = [f"{self.name}.public.{self.table}", f"{self.name}.offsets"]
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best effort: a benchmark's topics
                fut.result(30)
        self.src.close()
        self.rep.close()


PIPELINES: dict[str, type[Pipeline]] = {"native": Native, "debezium": Debezium, "cdc": Cdc}
