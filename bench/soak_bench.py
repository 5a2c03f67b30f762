"""Soak benchmark: RSS of a real source and a real sink process over millions of events.

    python bench/soak_bench.py [--events 3000000] [--kind postgres|mysql]
                               [--batch 20000] [--sample-s 1]

A ``cdc source`` and a ``cdc sink`` process (the commands operators run, the
native path unless ``CDC_NATIVE=0``) stream a table of the local stack's
source database into its replica while a writer keeps the source busy with
server-side batches: each batch inserts ``--batch`` 10-column rows, updates
them and deletes them again (three change events per row, no tombstones), so
the tables stay small and only the processes' memory can grow. The writer
stays at most a few batches ahead of the source.

Every ``--sample-s`` the resident set size (``VmRSS``) of both processes is
read from ``/proc`` together with the progress: events the source produced
(its ``cdc_source_events_total`` metric) and records the sink applied (its
``cdc_offsets`` checkpoints in the replica). Reported per process: RSS after
warm-up (the first 20% of the events), peak RSS, and the growth per million
events: the least-squares slope of RSS against events over the samples after
warm-up. A flat line (a few MB per million at most, allocator noise) is the
goal; a leak in the C code shows up as a steady slope.

Needs the local stack (``make up``; ``CDC_PORT_OFFSET`` like the tests).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pymysql
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.services import mysql_kwargs, resolve_endpoints  # noqa: E402

CDC = [sys.executable, "-m", "cdc.cli"]
PG_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, qty integer, name text, price numeric(10,2),
  created timestamp, day date, ratio double precision, active boolean, code varchar(50), seq bigint)"""
PG_BATCH = [
    """INSERT INTO {t} SELECT g, g % 1000, 'product number ' || g, (g % 100000) / 100.0,
         timestamp '2024-01-01' + g * interval '1 second', date '2024-01-01' + (g % 365),
         g / 7.0, g % 2 = 0, 'C' || g, g * 10 FROM generate_series({a}, {b}) g""",
    "UPDATE {t} SET qty = qty + 1, name = name || ' u', seq = seq + 1 WHERE id BETWEEN {a} AND {b}",
    "DELETE FROM {t} WHERE id BETWEEN {a} AND {b}",
]
MY_DDL = """CREATE TABLE {t} (id BIGINT PRIMARY KEY, qty INT, name VARCHAR(120), price DECIMAL(10,2),
  created DATETIME(6), day DATE, ratio DOUBLE, active TINYINT(1), code VARCHAR(50), seq BIGINT)
  DEFAULT CHARSET=utf8mb4"""
MY_BATCH = [
    """INSERT INTO {t} SELECT seq, seq % 1000, CONCAT('product number ', seq), (seq % 100000) / 100,
         TIMESTAMPADD(SECOND, seq, '2024-01-01'), DATE_ADD('2024-01-01', INTERVAL seq % 365 DAY),
         seq / 7, seq % 2, CONCAT('C', seq), seq * 10 FROM seq_{a}_to_{b}""",
    "UPDATE {t} SET qty = qty + 1, name = CONCAT(name, ' u'), seq = seq + 1 "
    "WHERE id BETWEEN {a} AND {b}",
    "DELETE FROM {t} WHERE id BETWEEN {a} AND {b}",
]


def rss_mb(pid: int) -> float:
    """Resident set size of a process and its children (``cdc sink`` may fork), in MB."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if m:
            total += int(m.group(1)) / 1024
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def source_events(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0
    m = re.search(r"^cdc_source_events_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    return int(float(m.group(1))) if m else 0


@dataclass
class Series:
    name: str
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (t, events, rss)

    def report(self, warm: int) -> dict[str, float]:
        after = [(e, r) for _, e, r in self.samples if e >= warm]
        peak = max((r for _, _, r in self.samples), default=0.0)
        if len(after) < 3:
            return {"peak": peak, "warm": after[0][1] if after else 0.0, "slope": float("nan")}
        n = len(after)
        mx = sum(e for e, _ in after) / n
        my = sum(r for _, r in after) / n
        var = sum((e - mx) ** 2 for e, _ in after)
        slope = sum((e - mx) * (r - my) for e, r in after) / var if var else float("nan")
        return {"peak": peak, "warm": after[0][1], "end": after[-1][1], "slope": slope * 1e6}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.eps = resolve_endpoints()
        self.run = f"soak{random.randint(0, 10**6)}"
        self.table = f"{self.run}_t"
        self.kind = args.kind
        self.dir = Path(tempfile.mkdtemp(prefix="cdc-soak-"))
        self.metrics_port = free_port()
        self.written = 0
        self.stop = threading.Event()
        self.ready = threading.Event()  # never set: an interruptible sleep
        self.done = threading.Event()
        self.started_at = (0.0, 0)
        self.errors: list[BaseException] = []

    # -------------------------------------------------------------- setup
    def config(self) -> Path:
        if self.kind == "postgres":
            u = urlparse(self.eps.pg_source_dsn)
            conn = {"host": u.hostname, "port": u.port, "user": u.username or "postgres",
                    "database": u.path.strip("/")}
            src: dict[str, Any] = {
                "name": self.run, "kind": "postgres", "connection": conn,
                "tables": {"include": [f"public.{self.table}"]},
                "slot_name": f"{self.run}_slot", "publication_name": f"{self.run}_pub",
                "proto_version": 2, "streaming": True,
            }
            topics = [f"{self.run}.public.*"]
        else:
            u = urlparse(self.eps.mysql_source_url)
            self.my_db = u.path.strip("/")
            src = {
                "name": self.run, "kind": "mysql",
                "connection": {"host": u.hostname, "port": u.port, "user": u.username or "root"},
                "tables": {"include": [f"{self.my_db}.{self.table}"]},
                "server_id": random.randint(50000, 59999),
            }
            topics = [f"{self.run}.{self.my_db}.*"]
        src.update({"snapshot": {"mode": "never"}, "tombstones_on_delete": False,
                    "heartbeat_interval_s": 1})
        r = urlparse(self.eps.pg_replica_dsn)
        cfg = {
            "kafka": {"bootstrap_servers": self.eps.kafka_bootstrap,
                      "offsets_topic": f"{self.run}.offsets",
                      "topics": {"partitions": 3, "replication_factor": 1}},
            "schema_registry": {"url": self.eps.schema_registry_url},
            "sources": [src],
            "sinks": [{"name": f"{self.run}_sink", "kind": "postgres", "topics": topics,
                       "target": {"host": r.hostname, "port": r.port,
                                  "user": r.username or "postgres", "database": r.path.strip("/")}}],
            "metrics": {"host": "127.0.0.1", "port": self.metrics_port},
            "log": {"level": "WARNING"},
        }
        path = self.dir / "soak.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def create_table(self) -> None:
        if self.kind == "postgres":
            with psycopg.connect(self.eps.pg_source_dsn, autocommit=True) as c:
                c.execute(PG_DDL.format(t=self.table))
        else:
            conn = pymysql.connect(**mysql_kwargs(self.eps.mysql_source_url))  # type: ignore[arg-type]
            with conn.cursor() as cur:
                cur.execute(MY_DDL.format(t=self.table))
            conn.close()

    # -------------------------------------------------------------- workload
    def _execute(self, conn: Any, sql: str) -> None:
        if self.kind == "postgres":
            conn.execute(sql)
        else:
            with conn.cursor() as cur:
                cur.execute(sql)

    def writer(self, produced: Any, applied: Any) -> None:
        """Batches of insert + update + delete, at most four batches before the sink.

        (Throttled on the slower of source and sink, so a lagging sink's fetch
        buffers are not mistaken for growth.)

        First a probe row until the source reports an event: a source with
        ``snapshot: never`` captures only what is written after it started.
        """
        batch = self.args.batch
        ahead = 4 * 3 * batch
        total = self.args.events
        if self.kind == "postgres":
            conn: Any = psycopg.connect(self.eps.pg_source_dsn, autocommit=True)
        else:
            conn = pymysql.connect(**mysql_kwargs(self.eps.mysql_source_url))  # type: ignore[arg-type]
        try:
            while produced() == 0 and not self.stop.is_set():
                self._execute(conn, f"DELETE FROM {self.table} WHERE id = 0")
                self._execute(conn, f"INSERT INTO {self.table} (id) VALUES (0)")
                self.ready.wait(2)
            self.started_at = (time.monotonic(), produced())
            nxt = 1
            written = 0
            stmts = PG_BATCH if self.kind == "postgres" else MY_BATCH
            while written < total and not self.stop.is_set():
                while written + self.started_at[1] - min(produced(), applied()) > ahead \
                        and not self.stop.is_set():
                    time.sleep(0.2)
                n = max(1, min(batch, (total - written) // 3))
                a, b = nxt, nxt + n - 1
                for sql in stmts:
                    self._execute(conn, sql.format(t=self.table, a=a, b=b))
                    written += n
                nxt = b + 1
            self.written = written
        except BaseException as e:
            self.errors.append(e)
        finally:
            self.done.set()
            conn.close()

    def sink_applied(self, conn: Any) -> int:
        row = conn.execute(
            "SELECT coalesce(sum(kafka_offset + 1), 0) FROM cdc_offsets WHERE consumer_group = %s",
            (f"cdc-sink-{self.run}_sink",),
        ).fetchone()
        return int(row[0])

    # -------------------------------------------------------------- run
    def main(self) -> int:
        config = self.config()
        self.create_table()
        log_src = (self.dir / "source.log").open("wb")
        log_sink = (self.dir / "sink.log").open("wb")
        source = subprocess.Popen([*CDC, "source", str(config), "--name", self.run], cwd=ROOT,
                                  stdout=log_src, stderr=subprocess.STDOUT)
        # Its own metrics port: on the config's one, whichever process binds first wins, and
        # the source's events counter (the writer's pace) must be the source's.
        sink = subprocess.Popen([*CDC, "sink", str(config), "--name", f"{self.run}_sink",
                                 "--metrics-port", str(free_port())],
                                cwd=ROOT, stdout=log_sink, stderr=subprocess.STDOUT)
        src_series, sink_series = Series("source"), Series("sink")
        state = {"produced": 0, "applied": 0}
        writer = threading.Thread(
            target=self.writer, args=(lambda: state["produced"], lambda: state["applied"])
        )
        replica = psycopg.connect(self.eps.pg_replica_dsn, autocommit=True)
        started = time.monotonic()
        total = self.args.events
        try:
            writer.start()
            applied = 0
            last_print = 0.0
            while True:
                time.sleep(self.args.sample_s)
                for p, what in ((source, "source"), (sink, "sink")):
                    if p.poll() is not None:
                        raise RuntimeError(f"{what} exited with {p.returncode}; see {self.dir}")
                if self.errors:
                    raise RuntimeError(f"writer failed: {self.errors[0]!r}")
                now = time.monotonic() - started
                state["produced"] = source_events(self.metrics_port)
                try:
                    applied = self.sink_applied(replica)
                except psycopg.errors.UndefinedTable:
                    applied = 0
                state["applied"] = applied
                src_series.samples.append((now, state["produced"], rss_mb(source.pid)))
                sink_series.samples.append((now, applied, rss_mb(sink.pid)))
                if now - last_print >= 15:
                    last_print = now
                    print(f"{now:6.0f}s produced "
                          f"{state['produced']:>9,} applied {applied:>9,}  RSS source "
                          f"{src_series.samples[-1][2]:6.1f} MB sink {sink_series.samples[-1][2]:6.1f} MB",
                          flush=True)
                if self.done.is_set() and state["produced"] >= self.written + self.started_at[1] \
                        and applied >= state["produced"]:
                    break
        finally:
            self.stop.set()
            for p in (source, sink):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in (source, sink):
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
            if writer.is_alive():
                writer.join(30)
            replica.close()
            self.cleanup(config)
        elapsed = time.monotonic() - self.started_at[0]
        warm = self.started_at[1] + total // 5
        print(f"\nsoak: {total:,} events ({self.kind} source -> PostgreSQL sink, "
              f"CDC_NATIVE={os.environ.get('CDC_NATIVE', '1')}) in {elapsed:.0f} s, "
              f"{total / elapsed:,.0f} events/s end to end")
        print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
              f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
        print(f"{'process':8} {'RSS after warm-up':>18} {'peak RSS':>10} {'end RSS':>9} "
              f"{'growth per 1M events':>21}")
        for s in (src_series, sink_series):
            r = s.report(warm)
            print(f"{s.name:8} {r['warm']:15.1f} MB {r['peak']:7.1f} MB {r.get('end', 0):6.1f} MB "
                  f"{r['slope']:+17.1f} MB")
        return 0

    def cleanup(self, config: Path) -> None:
        subprocess.run([*CDC, "reset-source", str(config), "--name", self.run, "--release",
                        "--yes"], cwd=ROOT, capture_output=True, timeout=120)
        try:
            if self.kind == "postgres":
                with psycopg.connect(self.eps.pg_source_dsn, autocommit=True) as c:
                    c.execute(f"DROP TABLE IF EXISTS {self.table}")
            else:
                conn = pymysql.connect(**mysql_kwargs(self.eps.mysql_source_url))  # type: ignore[arg-type]
                with conn.cursor() as cur:
                    cur.execute(f"DROP TABLE IF EXISTS {self.table}")
                conn.close()
            with psycopg.connect(self.eps.pg_replica_dsn, autocommit=True) as c:
                c.execute(f"DROP TABLE IF EXISTS {self.table}")
        except Exception as e:
            print(f"cleanup: {e}", file=sys.stderr)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # stop and clean up like Ctrl-C


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=3_000_000, help="change events in total")
    ap.add_argument("--kind", choices=["postgres", "mysql"], default="postgres")
    ap.add_argument("--batch", type=int, default=20_000, help="rows per writer batch")
    ap.add_argument("--sample-s", type=float, default=1.0, help="seconds between RSS samples")
    return Bench(ap.parse_args()).main()


if __name__ == "__main__":
    sys.exit(main())
