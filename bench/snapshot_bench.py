"""Initial-snapshot throughput: source -> Kafka -> PostgreSQL replica against pg_dump | psql.

    python bench/snapshot_bench.py [--rows 10000000] [--chunk 10000] [--partitions 4]
                                   [--sink-workers 2]
                                   [--rounds 1] [--keep-topic] [--source-only]
                                   [--max-minutes M]

One 10-column table of ``--rows`` rows in the local stack's PostgreSQL source is
copied into its PostgreSQL replica twice per round, in the same run:

* ``pg_dump -t TABLE SOURCE | psql REPLICA`` (the same server binaries as the
  stack): the baseline, wall clock from start to psql's exit;
* cdc: a ``cdc source`` process (``snapshot.mode: initial_only``) and a ``cdc
  sink`` process (the commands operators run; ``--sink-workers N``: ``cdc sink
  --workers N``, N processes sharing the topic's partitions); wall clock from the
  source's start until the sink's checkpoints in the replica cover every row.

The defaults are what copies a table fastest on the 2-core machine the figures
in docs/BENCHMARKS.md come from: two sink processes, and a partition count they
share evenly (with 3 partitions one worker gets two of them and finishes last).
``--sink-workers 1 --partitions 3`` gives the single-process, default-topic run.

Reported: rows/s of each and their ratio (our goal: cdc at least 30% of
pg_dump | psql), and where cdc's time went: its phases (start-up to the first
record in Kafka and the first applied, every row in Kafka, every row applied;
read from the topic's high watermarks and the sink's checkpoints, sampled every
0.25 s) and the CPU seconds of each process in that time (source, sink, the
broker, the source server's walsender, snapshot backend and background
processes, the replica server's backends and background processes; read from
/proc, so a process that exits loses at most its last 0.25 s), the source's
peak resident memory and the topic's size on the broker's disk. Rounds
alternate the order (baseline first, then cdc first) so load drifts on a shared
machine hit both. ``--source-only`` runs the cdc source alone into Kafka (no
sink, no baseline) until every row is in Kafka; ``--max-minutes M`` stops a cdc
copy after M minutes and reports its phases, CPU and rate by then (for runs
the machine cannot finish in time). Needs the local stack (``make up``; ``CDC_PORT_OFFSET`` like
the tests). The topic is deleted afterwards unless ``--keep-topic``.
"""

from __future__ import annotations

import argparse
import contextlib
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


def _stack() -> Any:
    """deploy/local/stack.py: the local stack's binaries, pids and folders."""
    if str(ROOT / "deploy" / "local") not in sys.path:
        sys.path.insert(0, str(ROOT / "deploy" / "local"))
    import stack  # type: ignore[import-not-found]

    return stack


def pg_bin(name: str) -> str:
    return str(_stack().pg_bindir() / name)


TICK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.25


def _stat(pid: int) -> tuple[int, int, float] | None:
    """(ppid, pgid, CPU seconds of user + system) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[2]), (int(fields[11]) + int(fields[12])) / TICK


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _postmaster(cluster: Any) -> int | None:
    try:
        return int((cluster.datadir / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class CpuMeter:
    """CPU seconds each named group of processes used since :meth:`start`.

    Groups: named pids (with the processes of their process group: the broker's
    launcher and JVM), and the children of a PostgreSQL postmaster sorted by their
    process title. Each process's CPU is its last sample minus its first (0 for a
    process born after the start), so a process that exits loses its last
    ``POLL_S`` at most.
    """

    def __init__(self, pids: dict[str, int | None], servers: dict[str, int | None]) -> None:
        self.pids = {k: v for k, v in pids.items() if v}
        self.servers = {k: v for k, v in servers.items() if v}
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.group: dict[int, str] = {}
        self.peak_rss: dict[str, float] = {}

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    @staticmethod
    def _server_group(server: str, title: str) -> str:
        if "walsender" in title:
            return f"{server} walsender"
        if re.search(r"\d+\.\d+\.\d+\.\d+\(\d+\)|\[local\]", title):
            return f"{server} backends"
        return f"{server} background"

    def sample(self, first: bool = False) -> None:
        stats: dict[int, tuple[int, int, float]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = _stat(int(entry))
                if st is not None:
                    stats[int(entry)] = st
        by_pgid = {pid: name for name, pid in self.pids.items()}
        by_parent = dict((pm, name) for name, pm in self.servers.items())
        for pid, (ppid, pgid, cpu) in stats.items():
            group = self.group.get(pid)
            if group is None:
                if pid in by_pgid:
                    group = by_pgid[pid]
                elif pgid in by_pgid:
                    group = by_pgid[pgid]
                elif ppid in by_parent:
                    group = self._server_group(by_parent[ppid], _title(pid))
                elif pid in by_parent:
                    group = f"{by_parent[pid]} background"
                else:
                    continue
                self.group[pid] = group
                self.first[pid] = cpu if first else 0.0
            self.last[pid] = cpu
        rss: dict[str, float] = {}
        for pid, group in self.group.items():  # a named group's processes together
            if group in self.pids and pid in stats:
                rss[group] = rss.get(group, 0.0) + _rss_mb(pid)
        for name, mb in rss.items():
            self.peak_rss[name] = max(self.peak_rss.get(name, 0.0), mb)

    def start(self) -> None:
        self.sample(first=True)

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, group in self.group.items():
            out[group] = out.get(group, 0.0) + self.last[pid] - self.first[pid]
        return out


def _du_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):  # gone meanwhile
                total += os.stat(os.path.join(root, f)).st_blocks * 512  # on disk, not sparse
    return total / 1e6


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.eps = resolve_endpoints()
        self.run = f"snapb{random.randint(0, 10**6)}"
        self.table = f"{self.run}_t"
        self.dir = Path(tempfile.mkdtemp(prefix="cdc-snapbench-"))
        self.fill_s = 0.0

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
        self.fill_s = time.monotonic() - t0
        print(f"source table {self.table}: {n:,} rows, {size[0] if size else '?'} "
              f"(filled in {self.fill_s:.0f} s)", flush=True)

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

    def cdc(self, round_no: int) -> dict[str, Any]:
        """One cdc copy: its phases (seconds from the source's start), the CPU seconds of
        each process group, the source's peak memory and the broker's log growth."""
        self.drop_replica()
        name = f"{self.run}r{round_no}"
        config = self.config(name)
        topic = f"{name}.public.{self.table}"
        logs = {k: (self.dir / f"{name}.{k}.log") for k in ("source", "sink")}
        stack = _stack()
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        kafka_dir = Path(stack.KAFKA.datadir)
        meter = CpuMeter({"broker": stack.KAFKA.pid()},
                         {"source server": _postmaster(stack.PG_SOURCE),
                          "replica server": _postmaster(stack.PG_REPLICA)})
        watch = Consumer({"bootstrap.servers": self.eps.kafka_bootstrap,
                          "group.id": f"{name}-bench-watch", "enable.auto.commit": False})
        only = self.args.source_only
        # Its own process group: the meter counts its worker processes with it.
        sink = None if only else subprocess.Popen(
            [*CDC, "sink", str(config), "--name", f"{name}_sink",
             "--workers", str(self.args.sink_workers)], cwd=ROOT,
            stdout=logs["sink"].open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        if sink is not None:
            meter.add("sink", sink.pid)
        replica = psycopg.connect(self.eps.pg_replica_dsn, autocommit=True)
        meter.start()
        t0 = time.monotonic()
        source = subprocess.Popen([*CDC, "source", str(config), "--name", name], cwd=ROOT,
                                  stdout=logs["source"].open("wb"), stderr=subprocess.STDOUT)
        meter.add("source", source.pid)
        phases: dict[str, float] = {}
        started: dict[str, float] = {}
        partitions: list[TopicPartition] = []

        def in_kafka() -> int:
            nonlocal partitions
            if not partitions:
                md = watch.list_topics(topic, timeout=5).topics.get(topic)
                if md is None or md.error is not None or not md.partitions:
                    return 0
                partitions = [TopicPartition(topic, p) for p in md.partitions]
            total = 0
            for tp in partitions:
                _low, high = watch.get_watermark_offsets(tp, timeout=5, cached=False)
                total += high
            return total

        stopped = False
        deadline = self.args.max_minutes * 60 if self.args.max_minutes else float("inf")
        try:
            last_print = t0
            produced = applied = 0
            while True:
                time.sleep(POLL_S)
                meter.sample()
                if sink is not None and sink.poll() is not None:
                    raise RuntimeError(f"sink exited with {sink.returncode}; see {logs['sink']}")
                if source.poll() not in (None, 0):  # (0: done; its rows are in Kafka)
                    raise RuntimeError(f"source exited with {source.returncode}; see "
                                       f"{logs['source']}")
                now = time.monotonic() - t0
                if produced < self.args.rows:
                    with contextlib.suppress(KafkaException):  # asked again next time
                        produced = in_kafka()
                    if produced and "first in Kafka" not in phases:
                        phases["first in Kafka"] = now
                        started = meter.totals()  # start-up CPU (imports, slot, topics)
                    if produced >= self.args.rows:
                        phases["every row in Kafka"] = now
                if only:
                    if produced >= self.args.rows:
                        break
                    continue
                try:
                    row = replica.execute(
                        "SELECT coalesce(sum(kafka_offset + 1), 0) FROM cdc_offsets "
                        "WHERE consumer_group = %s", (f"cdc-sink-{name}_sink",)).fetchone()
                    applied = int(row[0]) if row else 0
                except psycopg.errors.UndefinedTable:
                    applied = 0
                if applied and "first applied" not in phases:
                    phases["first applied"] = now
                if now - (last_print - t0) >= 30:
                    last_print = time.monotonic()
                    print(f"  cdc {now:6.0f}s in Kafka {produced:>11,} applied {applied:>11,} "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
                if applied >= self.args.rows:
                    phases["every row applied"] = now
                    break
                if now >= deadline:
                    phases[f"stopped: {applied:,} applied"] = now
                    stopped = True
                    break
            if not stopped:
                source.wait(120)
            meter.sample()
        finally:
            procs = [p for p in (source, sink) if p is not None]
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
            replica.close()
            watch.close()
        text = logs["source"].read_text(errors="replace")
        m = re.search(r"snapshot of \d+ rows done in ([0-9.]+)s", text)
        if not only and not stopped:
            count = psycopg.connect(self.eps.pg_replica_dsn, autocommit=True).execute(
                f"SELECT count(*) FROM {self.table}").fetchone()
            assert count is not None and count[0] == self.args.rows, (count, logs)
        # The topic's partition folders (the broker's other topics come and go meanwhile).
        kafka_mb = sum(_du_mb(d) for d in kafka_dir.glob(f"**/{topic}-[0-9]*") if d.is_dir())
        self.cleanup_source(config, name)
        end = "every row in Kafka" if only else "every row applied"
        return {"elapsed": phases.get(end, now),
                "rows": self.args.rows if end in phases else (produced if only else applied),
                "snapshot": float(m.group(1)) if m else float("nan"),
                "phases": phases, "cpu": meter.totals(), "cpu at first": started,
                "source rss MB": meter.peak_rss.get("source", 0.0),
                "sink rss MB": meter.peak_rss.get("sink", 0.0), "kafka MB": kafka_mb}

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
        results: list[tuple[float, dict[str, Any]]] = []
        try:
            for i in range(self.args.rounds):
                order = ("baseline", "cdc") if i % 2 == 0 else ("cdc", "baseline")
                if self.args.source_only:
                    order = ("cdc",)
                base = float("nan")
                cdc: dict[str, Any] = {}
                for what in order:
                    if what == "baseline":
                        base = self.baseline()
                        print(f"round {i + 1}: pg_dump | psql {base:7.1f} s "
                              f"({rows / base:,.0f} rows/s) load {os.getloadavg()[0]:.1f}",
                              flush=True)
                    else:
                        cdc = self.cdc(i)
                        what = "cdc source" if self.args.source_only else "cdc       "
                        part = "" if cdc["rows"] == rows else f", {cdc['rows']:,} rows when stopped"
                        print(f"round {i + 1}: {what}   {cdc['elapsed']:7.1f} s{part} "
                              f"({cdc['rows'] / cdc['elapsed']:,.0f} rows/s; source snapshot done in "
                              f"{cdc['snapshot']:.1f} s) load {os.getloadavg()[0]:.1f}",
                              flush=True)
                results.append((base, cdc))
        finally:
            self.drop_replica()
            with psycopg.connect(self.eps.pg_source_dsn, autocommit=True) as c:
                c.execute(f"DROP TABLE IF EXISTS {self.table}")
        print(f"\nsnapshot bench: {rows:,} rows (filled in {self.fill_s:.0f} s), chunk "
              f"{self.args.chunk}, {self.args.partitions} partitions, "
              f"{self.args.sink_workers} sink worker(s), "
              f"CDC_NATIVE={os.environ.get('CDC_NATIVE', '1')}")
        print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
              f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
        if self.args.source_only:
            print("(--source-only: no sink, no baseline; cdc rows/s is every row in Kafka)")
        print("| round | pg_dump \\| psql rows/s | cdc rows/s (source -> Kafka -> replica) | "
              "ratio | source snapshot rows/s |")
        print("|---|---|---|---|---|")
        for i, (base, cdc) in enumerate(results):
            rate = cdc["rows"] / cdc["elapsed"]
            print(f"| {i + 1} | {rows / base:,.0f} | {rate:,.0f}"
                  f"{'' if cdc['rows'] == rows else ' (until stopped)'} | "
                  f"{rate / (rows / base):.0%} | {rows / cdc['snapshot']:,.0f} |")
        for i, (_base, cdc) in enumerate(results):
            print(f"\nround {i + 1}, cdc phases (seconds from the source process's start):")
            for k, v in cdc["phases"].items():
                print(f"  {k:<20} {v:8.1f}")
            print(f"  source's own log: snapshot done after {cdc['snapshot']:.1f} s of its run")
            print(f"round {i + 1}, CPU seconds per process over the cdc copy "
                  f"({cdc['elapsed']:.1f} s wall):")
            first = cdc["cpu at first"]
            print(f"  {'':<26} {'total':>8}  {'us/row':>6}  {'of that, after the first record':>31}")
            for k, v in sorted(cdc["cpu"].items(), key=lambda kv: -kv[1]):
                rest = v - first.get(k, 0.0)
                print(f"  {k:<26} {v:8.1f}  {v / rows * 1e6:6.1f}  {rest:8.1f} s "
                      f"{rest / rows * 1e6:6.1f} us/row")
            print(f"  peak RSS: source {cdc['source rss MB']:.0f} MB, sink "
                  f"{cdc['sink rss MB']:.0f} MB; topic on the broker's disk {cdc['kafka MB']:,.0f} MB")
        return 0


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--chunk", type=int, default=10_000, help="snapshot.chunk_size")
    ap.add_argument("--partitions", type=int, default=4,
                    help="partitions of the topic (a multiple of --sink-workers shares them evenly)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--sink-workers", type=int, default=2,
                    help="cdc sink --workers: processes sharing the topic's partitions")
    ap.add_argument("--keep-topic", action="store_true")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop a cdc copy after this long and report its phases and rates so "
                    "far (rows/s: rows applied by then)")
    ap.add_argument("--source-only", action="store_true",
                    help="only the cdc source into Kafka (no sink, no pg_dump | psql)")
    return Bench(ap.parse_args()).main()


if __name__ == "__main__":
    sys.exit(main())
