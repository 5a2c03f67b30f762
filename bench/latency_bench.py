"""End-to-end latency of the cdc pipeline only, split by stage, at fixed offered rates.

    python bench/latency_bench.py [--rates 1000 2000 5000] [--seconds 20]
        [--set kafka.producer.linger_ms=20] [--set sinks.0.batch.min_wait_ms=200]
        [--repeat 1] [--out .cdc-local/latency-bench]

The latency phase of ``make bench-compare`` (bench/compare/compare.py: a probe
table whose rows carry their source insert time, written in 10-row
transactions at ``--rates`` rows/s, and a poller on the replica stamping when
each row is first visible) for the cdc pipeline alone, with three stamps per
row instead of one:

``created``   the row's ``clock_timestamp()`` on the source (in its transaction);
``kafka``     the record's Kafka timestamp (CreateTime: when ``cdc source``
              handed it to its producer);
``tapped``    when a separate consumer (its own group, read_uncommitted, polling
              continuously) received it from the broker;
``replica``   when the replica poller first saw the row (5 ms period).

Stages reported (p50/p99/max, ms): source = kafka - created (WAL decoding,
encoding); broker = tapped - kafka (producer linger, broker append and
fetch); sink = replica - tapped (the sink's fetch, batching, apply, commit,
plus the poll); total = replica - created (the number bench-compare reports).
All stamps come from the same host clock. Also per rate: the sink's batches,
the wall time of an apply (its /metrics) against the sink process's CPU per
batch and per row (an apply whose wall time is many times its CPU waited for
a core or for the replica), and the CPU seconds of each process.

``--set PATH=VALUE`` changes the generated cdc config (YAML value; a path
through mappings and list indexes, e.g. ``sinks.0.batch.max_wait_ms=200``), so
settings can be compared A/B under the same load. Each rate uses a fresh table
and a fresh pipeline. Results: ``--out``/latency.json. Needs the local stack
(``make up``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "compare"))

from compare import WORK, Bench, _cpu, write_paced  # noqa: E402
from confluent_kafka import OFFSET_END, Consumer, TopicPartition  # noqa: E402
from pipelines import TABLE_DDL, Cdc  # noqa: E402


def _set(tree: Any, path: str, value: Any) -> None:
    parts = path.split(".")
    node = tree
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        key: Any = int(p) if isinstance(node, list) else p
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            node = node[key]


class TunedCdc(Cdc):
    """The compare benchmark's cdc pipeline with config overrides applied to both files."""

    overrides: ClassVar[list[tuple[str, Any]]] = []

    def _start(self, what: str) -> None:
        for path in (self.config, self.sink_config):
            cfg = yaml.safe_load(path.read_text())
            for key, value in self.overrides:
                _set(cfg, key, value)
            path.write_text(yaml.safe_dump(cfg))
        super()._start(what)


def _key_id(key: bytes | None) -> int | None:
    """The ``id`` of a Confluent-framed Avro key record ``{id: long}``: zigzag varint after
    the 5-byte header."""
    if not key or len(key) < 6:
        return None
    shift = result = 0
    for b in key[5:]:
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1)
        shift += 7
    return None


class Tap(threading.Thread):
    """A plain consumer of the table's topic, from its end: id -> (kafka ms, received s)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.stamps: dict[int, tuple[float, float]] = {}
        self.halt = threading.Event()
        self.ready = threading.Event()
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"latency-tap-{topic}",
            "enable.auto.commit": False, "isolation.level": "read_uncommitted",
            "fetch.wait.max.ms": 100})
        md = self.consumer.list_topics(topic, timeout=30)
        parts = md.topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])

    def run(self) -> None:
        c = self.consumer
        while not self.halt.is_set():
            msgs = c.consume(num_messages=10_000, timeout=0.05)
            now = time.time()
            self.ready.set()
            for m in msgs:
                if m.error() is not None:
                    continue
                i = _key_id(m.key())
                if i is not None and i not in self.stamps:
                    self.stamps[i] = (m.timestamp()[1] / 1000.0, now)
        c.close()


def _sink_metrics(pipe: Cdc) -> dict[str, float]:
    """Batches and apply time from the sink's /metrics (whole run, probe included)."""
    port = yaml.safe_load(pipe.sink_config.read_text())["metrics"]["port"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for name in ("cdc_sink_batches_total", "cdc_sink_batch_apply_seconds_sum"):
        m = re.search(rf"^{name}{{[^}}]*}} ([0-9.e+-]+)$", text, re.M)
        if m:
            out[name] = float(m.group(1))
    return out


def _q(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    values = sorted(values)
    q = statistics.quantiles(values, n=100) if len(values) > 1 else [values[0]] * 99
    return {"p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "max_ms": round(values[-1] * 1000, 1)}


def run_rate(bench: Bench, rate: int, secs: float, overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    eps = bench.eps
    table = f"lat_{rate}_{int(time.time()) % 1_000_000}"
    bench.src.execute(TABLE_DDL.format(t=table))
    bench.src.execute(WORK.format(t=table))
    TunedCdc.overrides = overrides
    pipe = TunedCdc(eps, table)
    out: dict[str, Any] = {"rate": rate, "seconds": secs, "load_at_start": os.getloadavg()[0]}
    try:
        pipe.prepare()
        tap = Tap(eps.kafka_bootstrap, f"{table}.public.{table}")
        tap.start()
        tap.ready.wait(30)
        cpu0 = {k: _cpu(p) for k, p in pipe.pids().items()}
        m0 = _sink_metrics(pipe)
        written = [0]
        stop = threading.Event()
        base = 1

        def writer() -> None:
            write_paced(psycopg.connect(eps.pg_source_dsn, autocommit=True), table, base, rate,
                        secs, stop, written)

        created: dict[int, float] = {}
        replica: dict[int, float] = {}
        th = threading.Thread(target=writer, daemon=True)
        th.start()
        lo = base
        deadline = time.monotonic() + secs + 600
        while time.monotonic() < deadline:
            hi = base + written[0]
            rows = bench.rep.execute(f"SELECT id, created FROM {table} WHERE id >= %s AND id < %s",
                                     [lo, hi]).fetchall()
            now = time.time()
            for i, c in rows:
                if i not in replica:
                    replica[i] = now
                    created[i] = c.replace(tzinfo=dt.UTC).timestamp()
            while lo in replica:
                lo += 1
            if not th.is_alive() and lo >= base + written[0]:
                break
            time.sleep(0.005)
        stop.set()
        th.join()
        cpu = {k: round((_cpu(p) or 0.0) - (cpu0.get(k) or 0.0), 2) for k, p in pipe.pids().items()
               if k in ("cdc source", "cdc sink", "kafka", "replica backend")}
        m1 = _sink_metrics(pipe)
        batches = m1.get("cdc_sink_batches_total", 0.0) - m0.get("cdc_sink_batches_total", 0.0)
        apply_s = (m1.get("cdc_sink_batch_apply_seconds_sum", 0.0)
                   - m0.get("cdc_sink_batch_apply_seconds_sum", 0.0))
        time.sleep(0.2)
        tap.halt.set()
        tap.join(10)
        stages: dict[str, list[float]] = {"source": [], "broker": [], "sink": [], "total": []}
        for i, rep_t in replica.items():
            c = created[i]
            stages["total"].append(rep_t - c)
            st = tap.stamps.get(i)
            if st is not None:
                k, tapped = st
                stages["source"].append(k - c)
                stages["broker"].append(tapped - k)
                stages["sink"].append(rep_t - tapped)
        out.update({"rows": len(replica), "offered": round(written[0] / secs),
                    "tapped": sum(1 for i in replica if i in tap.stamps),
                    "load_at_end": os.getloadavg()[0], "cpu_s": cpu,
                    "sink_batches": int(batches),
                    "sink_rows_per_batch": round(written[0] / batches, 1) if batches else None,
                    "sink_apply_ms_per_batch": round(apply_s * 1000 / batches, 1) if batches else None,
                    # the whole sink process (librdkafka's threads included): an apply whose
                    # wall time is many times this waited for a core, not for the replica
                    "sink_cpu_ms_per_batch": (round(cpu["cdc sink"] * 1000 / batches, 1)
                                              if batches and "cdc sink" in cpu else None),
                    "sink_cpu_us_per_row": (round(cpu["cdc sink"] * 1e6 / written[0], 1)
                                            if written[0] and "cdc sink" in cpu else None),
                    "stages": {k: _q(v) for k, v in stages.items()}})
    finally:
        pipe.teardown()
        bench.src.execute(f"DROP PROCEDURE IF EXISTS {table}_ins")
        bench.src.execute(f"DROP PROCEDURE IF EXISTS {table}_upd")
        bench.src.execute(f"DROP TABLE IF EXISTS {table}")
        bench.rep.execute(f"DROP TABLE IF EXISTS {table}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", type=int, nargs="+", default=[1_000, 2_000, 5_000])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="PATH=VALUE")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", type=Path, default=ROOT / ".cdc-local" / "latency-bench")
    args = ap.parse_args()
    overrides = [(k, yaml.safe_load(v)) for k, v in (s.split("=", 1) for s in args.sets)]
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(argparse.Namespace(db="postgres"))
    results = []
    for _ in range(args.repeat):
        for rate in args.rates:
            r = run_rate(bench, rate, args.seconds, overrides)
            r["label"] = args.label
            r["sets"] = args.sets
            results.append(r)
            s = r["stages"]
            print(f"{args.label or '-'} rate {rate}: offered {r['offered']}, rows {r['rows']}, "
                  f"load {r['load_at_start']:.1f}-{r['load_at_end']:.1f} | "
                  + " | ".join(f"{k} p50 {v['p50_ms']} p99 {v['p99_ms']} max {v['max_ms']}"
                               for k, v in s.items())
                  + f" | batches {r['sink_batches']} ({r['sink_rows_per_batch']} rows, "
                  f"{r['sink_apply_ms_per_batch']} ms each, sink CPU {r['sink_cpu_ms_per_batch']} "
                  f"ms each, {r['sink_cpu_us_per_row']} us/row) | cpu_s {r['cpu_s']}", flush=True)
    path = args.out / f"latency-{int(time.time())}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
