"""CPU of `cdc source` alone over bench-compare's PostgreSQL catch-up workload.

    python bench/compare/source_catchup.py [--rows 300000] [--scrape-ms 0]
        [--set kafka.producer.linger_ms=10] [--set sources.0.proto_version=1]

The catch-up of ``make bench-compare`` (WORK in compare.py: a backlog of
``--rows`` changes, half INSERTs then half UPDATEs, in 10-row transactions,
written while the source is stopped) streamed into Kafka by a real ``cdc source``
process with no sink, so its CPU is not mixed with a sink's, a replica's or
the broker's work on the same cores. Reported: the source process's CPU
seconds (before its first record: start-up; after it: streaming), CPU per
change, the change rate, the CPU of each of its threads (the main Python
thread, librdkafka's broker threads), and the Kafka broker's CPU over the same
span. Progress is read from the topic's end offsets, not from the source's
/metrics; ``--scrape-ms`` adds a /metrics poller at that period (bench-compare
polls every 50 ms) to measure what scraping costs the source.

CPU per change depends on the load of the machine and on the rate reached:
alternate A/B runs and report ``uptime``. Needs the local stack (``make up``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import WORK  # noqa: E402
from pipelines import TABLE_DDL, set_path, stack_pid  # noqa: E402

from tests.fixtures.services import resolve_endpoints  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
PARTITIONS = 3


def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


def threads_s(pid: int) -> dict[str, float]:
    """CPU seconds of the live threads of ``pid``, summed by thread name."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            s = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        f = s[s.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / CLK
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--scrape-ms", type=float, default=0.0)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="PATH=VALUE")
    args = ap.parse_args()
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    ep = resolve_endpoints()
    table = f"scu_{int(time.time()) % 1_000_000}"
    topic = f"{table}.public.{table}"
    src = psycopg.connect(ep.pg_source_dsn, autocommit=True)
    src.execute(TABLE_DDL.format(t=table))
    src.execute(WORK.format(t=table))
    u = urlparse(ep.pg_source_dsn)
    work = Path(tempfile.mkdtemp(prefix="cdc-source-catchup-"))
    port = free_port()
    cfg: dict[str, Any] = {
        "kafka": {"bootstrap_servers": ep.kafka_bootstrap, "offsets_topic": f"{table}.offsets",
                  "topics": {"partitions": PARTITIONS, "replication_factor": 1}},
        "schema_registry": {"url": ep.schema_registry_url},
        "sources": [{
            "name": table, "kind": "postgres",
            "connection": {"host": u.hostname, "port": u.port, "user": u.username or "postgres",
                           "database": u.path.strip("/")},
            "tables": {"include": [f"public.{table}"]}, "slot_name": f"{table}_slot",
            "publication_name": f"{table}_pub", "proto_version": 2, "streaming": True,
            "snapshot": {"mode": "never"}, "tombstones_on_delete": False,
            "heartbeat_interval_s": 1,
        }],
        "metrics": {"host": "127.0.0.1", "port": port}, "log": {"level": "WARNING"},
    }
    for item in args.sets:
        key, _, value = item.partition("=")
        set_path(cfg, key, yaml.safe_load(value))
    config = work / "source.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cdc = [sys.executable, "-m", "cdc.cli"]
    log = (work / "source.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([*cdc, "source", str(config), "--name", table], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)

    consumer = Consumer({"bootstrap.servers": ep.kafka_bootstrap, "group.id": f"{table}_probe"})

    def produced() -> int:
        total = 0
        for p in range(PARTITIONS):
            try:
                total += consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
            except Exception:  # the topic does not exist before the first record
                return 0
        return total

    def until(what: str, cond: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f}s (log: {work})")
            time.sleep(0.1)

    proc = start()
    try:
        until("slot active", lambda: src.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s AND active",
            [f"{table}_slot"]).fetchone() == (1,), 120)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        n = args.rows
        t0 = time.perf_counter()
        src.execute(f"CALL {table}_ins(%s, %s, 10)", [1, n // 2])
        src.execute(f"CALL {table}_upd(%s, %s, 10)", [1, n - n // 2])
        print(f"backlog: {n:,} changes written in {time.perf_counter() - t0:.1f}s", flush=True)
        base = produced()
        kafka = stack_pid("kafka")
        k0 = cpu_s(kafka) if kafka else 0.0
        load0 = os.getloadavg()[0]
        proc = start()
        t0 = time.perf_counter()
        stop = threading.Event()

        def scrape() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                stop.wait(args.scrape_ms / 1000)

        if args.scrape_ms > 0:
            threading.Thread(target=scrape, daemon=True).start()
        first_s = first_cpu = None
        deadline = time.monotonic() + 3600
        while (done := produced() - base) < n:
            if proc.poll() is not None:
                raise RuntimeError(f"cdc source exited with {proc.returncode} (log: {work})")
            if done > 0 and first_s is None:
                first_s, first_cpu = time.perf_counter() - t0, cpu_s(proc.pid)
            if time.monotonic() > deadline:
                raise TimeoutError("catch-up not within an hour")
            time.sleep(0.1)
        secs = time.perf_counter() - t0
        end_cpu, threads = cpu_s(proc.pid), threads_s(proc.pid)
        k1 = cpu_s(kafka) if kafka else 0.0
        stop.set()
        if first_s is None or first_cpu is None:
            first_s, first_cpu = 0.0, 0.0
        streaming = end_cpu - first_cpu
        print(f"cdc source: {end_cpu:.2f} CPU-s ({first_cpu:.2f} before its first record, "
              f"{first_s:.1f}s in); streaming {streaming:.2f} CPU-s = "
              f"{streaming * 1e6 / n:.1f} us/change at {n / max(secs - first_s, 1e-3):,.0f} "
              f"changes/s; with start-up {end_cpu * 1e6 / n:.1f} us/change")
        print("  threads (CPU-s): " + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v >= 0.01))
        if kafka:
            print(f"kafka broker: {(k1 - k0) * 1e6 / n:.1f} us/change")
        print(f"load: {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        consumer.close()
        subprocess.run([*cdc, "reset-source", str(config), "--name", table, "--release", "--yes"],
                       cwd=ROOT, capture_output=True, timeout=120)
        src.execute(f"DROP PROCEDURE IF EXISTS {table}_ins")
        src.execute(f"DROP PROCEDURE IF EXISTS {table}_upd")
        src.execute(f"DROP TABLE IF EXISTS {table}")
        src.execute(f"DROP PUBLICATION IF EXISTS {table}_pub")
        src.close()
        for fut in AdminClient({"bootstrap.servers": ep.kafka_bootstrap}).delete_topics(
                [topic, f"{table}.offsets"], operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best effort: a benchmark's topics
                fut.result(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
