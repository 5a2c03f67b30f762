"""MySQL/MariaDB source benchmark: binlog -> Kafka throughput through the real runtime.

A sysbench-like write workload on a 10-column table is committed first (by
default 100,000 inserts then 100,000 updates, 10 rows per transaction,
written server-side by a stored procedure); then ``SourceRunner`` +
``MySqlSource`` + ``AvroSerde`` + ``EventProducer`` + the offsets topic stream
exactly that binlog range into Kafka. Reported: events/s from the first event
to the checkpoint that covers the last transaction (every event acknowledged
by Kafka), then the cProfile top 15 (own time) of a second, profiled run over
the same binlog range into fresh topics.

Run: ``.venv/bin/python bench/mysql_e2e_bench.py [--rows N] [--tx-rows 10]
[--no-profile] [--split]`` (services from the environment or ``.cdc-local/env``,
like the tests; ``BENCH_CUMULATIVE=1`` adds a cumulative-time profile).
``--split`` first times the same range through the source alone and through
source + Avro encoding (no Kafka), best of two each, to split the per-event
cost into source / serde / producer+runtime. Target: >= 20,000 events/s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import random
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pymysql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdc.events import ChangeEvent  # noqa: E402
from cdc.offsets.store import OffsetStore, SourceOffset  # noqa: E402
from cdc.runtime.source_runner import RunnerSettings, SnapshotMode, SourceRunner  # noqa: E402
from cdc.serde import AvroSerde, RegistryClient  # noqa: E402
from cdc.spi import Position  # noqa: E402
from cdc.transport.producer import EventProducer  # noqa: E402
from cdc.transport.topics import TopicManager, TopicSpec  # noqa: E402
from connectors.mysql.position import GtidSet, MySqlPosition  # noqa: E402
from connectors.mysql.source import MySqlSource  # noqa: E402
from tests.fixtures.services import mysql_settings, resolve_endpoints  # noqa: E402

TARGET = 20_000
DDL = """CREATE TABLE {t} (
  id BIGINT PRIMARY KEY, k INT NOT NULL, c VARCHAR(120) NOT NULL, pad CHAR(60) NOT NULL,
  price DECIMAL(12,2), created DATETIME(6), day DATE, active TINYINT(1), ratio DOUBLE,
  note VARCHAR(64)) DEFAULT CHARSET=utf8mb4"""
# Each loop is one transaction of `per_tx` rows: inserts first, then updates of them.
WORKLOAD = """
CREATE PROCEDURE {t}_work(total BIGINT, per_tx INT)
BEGIN
  DECLARE lo BIGINT DEFAULT 1;
  WHILE lo <= total DO
    START TRANSACTION;
    INSERT INTO {t} SELECT lo + seq - 1, (lo + seq) % 100000,
        CONCAT('68487932199-96439406143-93774651418-', lo + seq),
        CONCAT('22195207048-', lo + seq), (lo + seq) % 100000 / 100,
        '2024-05-01 12:00:00.123456' + INTERVAL (lo + seq) SECOND,
        '2024-01-01' + INTERVAL ((lo + seq) % 365) DAY, (lo + seq) % 2, (lo + seq) / 7,
        'inserted' FROM seq_1_to_1000 WHERE seq <= LEAST(per_tx, total - lo + 1);
    COMMIT;
    SET lo = lo + per_tx;
  END WHILE;
  SET lo = 1;
  WHILE lo <= total DO
    START TRANSACTION;
    UPDATE {t} SET k = k + 1, c = CONCAT(c, '!'), note = 'updated'
      WHERE id BETWEEN lo AND lo + per_tx - 1;
    COMMIT;
    SET lo = lo + per_tx;
  END WHILE;
END"""



class Bench:
    def __init__(self, rows: int, per_tx: int, producer: dict[str, Any] | None = None) -> None:
        self.producer_settings = {"linger.ms": 20, **(producer or {})}
        self.ep = resolve_endpoints()
        self.kw = mysql_settings(self.ep.mysql_source_url, "cdc_source")
        self.rows = rows
        self.per_tx = per_tx
        self.table = f"bench_e2e_{os.getpid()}"
        self.conn = pymysql.connect(**self.kw, autocommit=True)
        self.names: list[str] = []
        self.cpu_s = 0.0  # CPU time of this process (all threads) in the last stream()

    def sql(self, statement: str, *args: Any) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(statement, args or None)
            return cur.fetchall()

    def source(self, name: str) -> MySqlSource:
        return MySqlSource(self.kw, name=name, server_id=random.randint(10**6, 4 * 10**9),
                           include=[f"{self.kw['database']}.{self.table}"], heartbeat_s=0.5)

    def prepare(self) -> tuple[MySqlPosition, GtidSet, float]:
        t = self.table
        self.sql(DDL.format(t=t))
        self.sql(WORKLOAD.format(t=t))
        probe = self.source("bench_probe")
        start = probe.reader.current_position()
        probe.close()
        t0 = time.perf_counter()
        self.sql(f"CALL {t}_work(%s, %s)", self.rows, self.per_tx)
        took = time.perf_counter() - t0
        (end,) = self.sql("SELECT @@GLOBAL.gtid_binlog_pos")[0]
        return start, GtidSet.parse(str(end)), took

    def stream(self, label: str, start: MySqlPosition, end: GtidSet,
               profile: bool) -> tuple[int, float, float, pstats.Stats | None]:
        """Runs the source over [start, end]; (events, total s, steady s, profile)."""
        ep = self.ep
        name = f"bench_{label}_{os.getpid()}"
        self.names.append(name)
        offsets = OffsetStore(ep.kafka_bootstrap, f"{name}.offsets")
        offsets.save(name, SourceOffset(start))
        stop = threading.Event()
        done: dict[str, float] = {}

        def on_checkpoint(p: Position) -> None:
            if isinstance(p, MySqlPosition) and p.gtid_set.contains(end) and "end" not in done:
                done["end"] = time.perf_counter()
                stop.set()

        runner = SourceRunner(
            name, self.source(name), AvroSerde(RegistryClient(ep.schema_registry_url)),
            EventProducer(ep.kafka_bootstrap, self.producer_settings), offsets,
            TopicManager(ep.kafka_bootstrap),
            RunnerSettings(snapshot_mode=SnapshotMode.NEVER, checkpoint_interval_s=0.2,
                           topic_spec=TopicSpec(partitions=3)),
            stop=stop, on_checkpoint=on_checkpoint,
        )
        first: dict[str, float] = {}
        emit = runner._emit

        def timed_emit(event: Any) -> None:
            if "t" not in first:
                first["t"] = time.perf_counter()
            emit(event)

        runner._emit = timed_emit  # type: ignore[method-assign]
        prof = cProfile.Profile() if profile else None
        t0 = time.perf_counter()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        if prof is not None:
            prof.enable()
        runner.run()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        if prof is not None:
            prof.disable()
        finish = done.get("end", time.perf_counter())
        stats = pstats.Stats(prof) if prof is not None else None
        return runner.stats.events, finish - t0, finish - first.get("t", t0), stats

    def split(self, start: MySqlPosition, expect: int) -> tuple[float, float]:
        """Seconds per event of the source alone, and of source + serde (best of 2)."""
        results = []
        for encode in (False, True):
            best = float("inf")
            for attempt in range(2):
                name = f"bench_split{attempt}_{os.getpid()}"
                src = self.source(name)
                serde = AvroSerde(RegistryClient(self.ep.schema_registry_url)) if encode else None
                n = 0
                t0 = time.perf_counter()
                for item in src.stream(start):
                    if isinstance(item, ChangeEvent):
                        if serde is not None:
                            serde.encode(item)
                        n += 1
                        if n >= expect:
                            break
                best = min(best, (time.perf_counter() - t0) / n)
                src.close()
            results.append(best)
        return results[0], results[1]

    def close(self) -> None:
        from confluent_kafka.admin import AdminClient

        with contextlib.suppress(Exception):
            self.sql(f"DROP PROCEDURE IF EXISTS {self.table}_work")
            self.sql(f"DROP TABLE IF EXISTS {self.table}")
        self.conn.close()
        admin = AdminClient({"bootstrap.servers": self.ep.kafka_bootstrap})
        topics = [t for n in self.names
                  for t in (f"{n}.{self.kw['database']}.{self.table}", f"{n}.offsets")]
        if topics:
            for fut in admin.delete_topics(topics, operation_timeout=30).values():
                with contextlib.suppress(Exception):  # best effort: topics of a bench run
                    fut.result(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000,
                    help="rows inserted, then updated (events = 2 x rows)")
    ap.add_argument("--tx-rows", type=int, default=10, help="rows per transaction (<= 1000)")
    ap.add_argument("--no-profile", action="store_true", help="skip the profiled run")
    ap.add_argument("--split", action="store_true",
                    help="also time source alone and source + serde over the same range")
    ap.add_argument("--producer", action="append", default=[], metavar="KEY=VALUE",
                    help="a librdkafka producer setting (repeatable), e.g. compression.type=none")
    args = ap.parse_args()
    settings = dict(kv.split("=", 1) for kv in args.producer)
    bench = Bench(args.rows, min(args.tx_rows, 1000), settings)
    try:
        start, end, write_s = bench.prepare()
        txs = 2 * -(-args.rows // bench.per_tx)
        print(f"workload: {args.rows:,} inserts + {args.rows:,} updates in {txs:,} transactions "
              f"of {bench.per_tx} rows, written in {write_s:.1f}s (before streaming)")
        if args.split:
            source_s, serde_s = bench.split(start, 2 * args.rows)
            print(f"source alone: {1 / source_s:,.0f} events/s ({source_s * 1e6:.1f} us/event); "
                  f"source + Avro encode: {1 / serde_s:,.0f} events/s "
                  f"(serde {(serde_s - source_s) * 1e6:.1f} us/event)")
        n, _, steady, _ = bench.stream("tp", start, end, profile=False)
        cpu = bench.cpu_s
        n2, _, steady2, _ = bench.stream("tp2", start, end, profile=False)
        if n2 / steady2 > n / steady:
            n, steady, cpu = n2, steady2, bench.cpu_s
        rate = n / steady
        print(f"throughput binlog -> Kafka (acknowledged, best of 2): {rate:,.0f} events/s "
              f"({n:,} events in {steady:.1f}s, {1e6 / rate:.1f} us/event); "
              f"target {TARGET:,}: {'met' if rate >= TARGET else 'NOT met'}")
        print(f"CPU of this process (all threads, incl. librdkafka's): {cpu / n * 1e6:.1f} us/event; "
              f"the rest of the wall time waits for the CPU (broker, registry, other processes)")
        if args.split:
            rest = 1 / rate - serde_s
            print(f"per event: source {source_s * 1e6:.1f} us, serde "
                  f"{(serde_s - source_s) * 1e6:.1f} us, producer + runtime {rest * 1e6:.1f} us")
        if not args.no_profile:
            n, _, steady, stats = bench.stream("prof", start, end, profile=True)
            assert stats is not None
            print(f"\nprofiled run: {n / steady:,.0f} events/s under cProfile; "
                  "top 15 by own time:")
            out = io.StringIO()
            stats.stream = out  # type: ignore[attr-defined]
            stats.sort_stats("tottime").print_stats(15)
            if os.environ.get("BENCH_CUMULATIVE"):
                stats.sort_stats("cumulative").print_stats(30)
            print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
