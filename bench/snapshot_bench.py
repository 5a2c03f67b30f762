"""Initial-snapshot throughput: source -> Kafka -> PostgreSQL replica against pg_dump | psql.

    python bench/snapshot_bench.py [--rows 10000000] [--chunk 10000] [--partitions 3]
                                   [--rounds 1] [--keep-topic]

One 10-column table of ``--rows`` rows in the local stack's PostgreSQL source is
copied into its PostgreSQL replica twice per round, in the same run:

* ``pg_dump -t TABLE SOURCE | psql REPLICA`` (the same server binaries as the
  stack): the baseline, wall clock from start to psql's exit;
* cdc: a ``cdc source`` process (``snapshot.mode: initial_only``) and a ``cdc
  sink`` process (the commands operators run); wall clock from the source's
  start until the sink's checkpoints in the replica cover every row.

Reported: rows/s of each and their ratio (our goal: cdc at least 30% of
pg_dump | psql), plus the source's own snapshot time from its log. Rounds
alternate the order (baseline first, then cdc first) so load drifts on a shared
machine hit both. Needs the local stack (``make up``; ``CDC_PORT_OFFSET`` like
the tests). The topic is deleted afterwards unless ``--keep-topic``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.services import resolve_endpoints  # noqa: E402

CDC = [sys.executable, "-m", "cdc.cli"]
DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, qty integer, name text, price numeric(10,2),
  created timestamp, day date, ratio double precision, active boolean, code varchar(50), seq bigint)"""
FILL = """INSERT INTO {t} SELECT g, g % 1000, 'product number ' || g, (g % 100000) / 100.0,
  timestamp '2024-01-01' + g * interval '1 second', date '2024-01-01' + (g % 365),
  g / 7.0, g % 2 = 0, 'C' || g, g * 10 FROM generate_series({a}, {b}) g"""


def pg_bin(name: str) -> str:
    sys.path.insert(0, str(ROOT / "deploy" / "local"))
    import stack  # type: ignore[import-not-found]

    return str(stack.pg_bindir() / name)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.eps = resolve_endpoints()
        self.run = f"snapb{random.randint(0, 10**6)}"
        self.table = f"{self.run}_t"
        self.dir = Path(tempfile.mkdtemp(prefix="cdc-snapbench-"))

    def config(self, name: str) -> Path:
        u = urlparse(self.eps.pg_source_dsn)
        r = urlparse(self.eps.pg_replica_dsn)
        cfg: dict[str, Any] = {
            "kafka": {"bootstrap_servers": self.eps.kafka_bootstrap,
                      "offsets_topic": f"{name}.offsets",
                      "topics": {"partitions": self.args.partitions, "replication_factor": 1}},
            "schema_registry": {"url": self.eps.schema_registry_url},
            "sources": [{
                "name": name, "kind": "postgres",
                "connection": {"host": u.hostname, "port": u.port,
                               "user": u.username or "postgres", "database": u.path.strip("/")},
                "tables": {"include": [f"public.{self.table}"]},
                "slot_name": f"{name}_slot", "publication_name": f"{name}_pub",
                "snapshot": {"mode": "initial_only", "chunk_size": self.args.chunk},
            }],
            "sinks": [{"name": f"{name}_sink", "kind": "postgres", "topics": [f"{name}.public.*"],
                       "target": {"host": r.hostname, "port": r.port,
                                  "user": r.username or "postgres",
                                  "database": r.path.strip("/")}}],
            "metrics": {"enabled": False},
            "log": {"level": "INFO"},
        }
        path = self.dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def create(self) -> None:
        n = self.args.rows
        t0 = time.monotonic()
        with psycopg.connect(self.eps.pg_source_dsn, autocommit=True) as c:
            c.execute(DDL.format(t=self.table))
            step = 1_000_000
            for a in range(1, n + 1, step):
                c.execute(FILL.format(t=self.table, a=a, b=min(n, a + step - 1)))
            c.execute(f"VACUUM ANALYZE {self.table}")
            size = c.execute("SELECT pg_size_pretty(pg_total_relation_size(%s))",
                             (self.table,)).fetchone()
        print(f"source table {self.table}: {n:,} rows, {size[0] if size else '?'} "
              f"(filled in {time.monotonic() - t0:.0f} s)", flush=True)

    def drop_replica(self) -> None:
        with psycopg.connect(self.eps.pg_replica_dsn, autocommit=True) as c:
            c.execute(f"DROP TABLE IF EXISTS {self.table}")

    def baseline(self) -> float:
        self.drop_replica()
        t0 = time.monotonic()
        dump = subprocess.Popen([pg_bin("pg_dump"), "-d", self.eps.pg_source_dsn, "-t",
                                 f"public.{self.table}", "--no-owner", "--no-privileges"],
                                stdout=subprocess.PIPE)
        psql = subprocess.run([pg_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d",
                               self.eps.pg_replica_dsn], stdin=dump.stdout,
                              stdout=subprocess.DEVNULL, check=False)
        assert dump.stdout is not None
        dump.stdout.close()
        if dump.wait() != 0 or psql.returncode != 0:
            raise RuntimeError(f"pg_dump | psql failed ({dump.returncode}, {psql.returncode})")
        elapsed = time.monotonic() - t0
        with psycopg.connect(self.eps.pg_replica_dsn, autocommit=True) as c:
            row = c.execute(f"SELECT count(*) FROM {self.table}").fetchone()
        assert row is not None and row[0] == self.args.rows, row
        self.drop_replica()
        return elapsed

    def cdc(self, round_no: int) -> tuple[float, float]:
        """Seconds until the replica holds every row, and the source's snapshot seconds."""
        self.drop_replica()
        name = f"{self.run}r{round_no}"
        config = self.config(name)
        logs = {k: (self.dir / f"{name}.{k}.log") for k in ("source", "sink")}
        sink = subprocess.Popen([*CDC, "sink", str(config), "--name", f"{name}_sink"], cwd=ROOT,
                                stdout=logs["sink"].open("wb"), stderr=subprocess.STDOUT)
        replica = psycopg.connect(self.eps.pg_replica_dsn, autocommit=True)
        t0 = time.monotonic()
        source = subprocess.Popen([*CDC, "source", str(config), "--name", name], cwd=ROOT,
                                  stdout=logs["source"].open("wb"), stderr=subprocess.STDOUT)
        try:
            last_print = t0
            while True:
                time.sleep(0.5)
                if sink.poll() is not None:
                    raise RuntimeError(f"sink exited with {sink.returncode}; see {logs['sink']}")
                if source.poll() not in (None, 0):
                    raise RuntimeError(f"source exited with {source.returncode}; see "
                                       f"{logs['source']}")
                try:
                    row = replica.execute(
                        "SELECT coalesce(sum(kafka_offset + 1), 0) FROM cdc_offsets "
                        "WHERE consumer_group = %s", (f"cdc-sink-{name}_sink",)).fetchone()
                    applied = int(row[0]) if row else 0
                except psycopg.errors.UndefinedTable:
                    applied = 0
                now = time.monotonic()
                if now - last_print >= 30:
                    last_print = now
                    print(f"  cdc {now - t0:6.0f}s applied {applied:>11,}", flush=True)
                if applied >= self.args.rows:
                    break
            elapsed = time.monotonic() - t0
            source.wait(120)
        finally:
            for p in (source, sink):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in (source, sink):
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
            replica.close()
        text = logs["source"].read_text(errors="replace")
        m = re.search(r"snapshot of \d+ rows done in ([0-9.]+)s", text)
        count = psycopg.connect(self.eps.pg_replica_dsn, autocommit=True).execute(
            f"SELECT count(*) FROM {self.table}").fetchone()
        assert count is not None and count[0] == self.args.rows, (count, logs)
        self.cleanup_source(config, name)
        return elapsed, float(m.group(1)) if m else float("nan")

    def cleanup_source(self, config: Path, name: str) -> None:
        subprocess.run([*CDC, "reset-source", str(config), "--name", name, "--release", "--yes"],
                       cwd=ROOT, capture_output=True, timeout=120, check=False)
        if not self.args.keep_topic:
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": self.eps.kafka_bootstrap})
            topics = [f"{name}.public.{self.table}", f"{name}.offsets"]
            for f in admin.delete_topics(topics, operation_timeout=30).values():
                try:
                    f.result()
                except Exception as e:  # already gone, or not created
                    print(f"  (topic cleanup: {e})", file=sys.stderr)

    def main(self) -> int:
        rows = self.args.rows
        self.create()
        results: list[tuple[float, float, float]] = []
        try:
            for i in range(self.args.rounds):
                order = ("baseline", "cdc") if i % 2 == 0 else ("cdc", "baseline")
                base = cdc = snap = 0.0
                for what in order:
                    if what == "baseline":
                        base = self.baseline()
                        print(f"round {i + 1}: pg_dump | psql {base:7.1f} s "
                              f"({rows / base:,.0f} rows/s)", flush=True)
                    else:
                        cdc, snap = self.cdc(i)
                        print(f"round {i + 1}: cdc          {cdc:7.1f} s "
                              f"({rows / cdc:,.0f} rows/s; source snapshot done in "
                              f"{snap:.1f} s)", flush=True)
                results.append((base, cdc, snap))
        finally:
            self.drop_replica()
            with psycopg.connect(self.eps.pg_source_dsn, autocommit=True) as c:
                c.execute(f"DROP TABLE IF EXISTS {self.table}")
        print(f"\nsnapshot bench: {rows:,} rows, chunk {self.args.chunk}, "
              f"{self.args.partitions} partitions, CDC_NATIVE={os.environ.get('CDC_NATIVE', '1')}")
        print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
              f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
        print("| round | pg_dump \\| psql rows/s | cdc rows/s (source -> Kafka -> replica) | "
              "ratio | source snapshot rows/s |")
        print("|---|---|---|---|---|")
        for i, (base, cdc, snap) in enumerate(results):
            print(f"| {i + 1} | {rows / base:,.0f} | {rows / cdc:,.0f} | {base / cdc:.0%} | "
                  f"{rows / snap:,.0f} |")
        return 0


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--chunk", type=int, default=10_000, help="snapshot.chunk_size")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--keep-topic", action="store_true")
    return Bench(ap.parse_args()).main()


if __name__ == "__main__":
    sys.exit(main())
