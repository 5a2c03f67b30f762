"""PostgreSQL source benchmark: WAL -> Kafka throughput and memory of a huge transaction.

Two measurements, each in a process of its own (so one's peak RSS does not
colour the other's):

``throughput``
    A pgbench-like mixed workload on a 10-column table (each transaction
    inserts, updates and deletes a few rows) is committed first, with the
    slot already created; then the real runtime (``SourceRunner`` +
    ``AvroSerde`` + ``EventProducer`` + offsets topic) streams it into Kafka.
    Reported: events/s from the first event to the checkpoint that covers the
    last transaction (every event acknowledged by Kafka), and a cProfile top
    15 of a second, profiled run.

``rss``
    One transaction inserting 1,000,000 rows, streamed by the server in
    chunks (proto_version 2, streaming on) and spilled to disk by the source,
    through the same runtime. Reported: peak and final RSS of the process.

Run: ``.venv/bin/python bench/pg_source_bench.py [throughput|rss|all] [--events N]``
(services from the environment or ``.cdc-local/env``, like the tests;
``BENCH_CUMULATIVE=1`` adds a cumulative-time profile).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdc.config.kafka import KafkaProducerConfig  # noqa: E402
from cdc.offsets.store import OffsetStore  # noqa: E402
from cdc.runtime.source_runner import RunnerSettings, SnapshotMode, SourceRunner  # noqa: E402
from cdc.serde import AvroSerde, RegistryClient  # noqa: E402
from cdc.spi import Position  # noqa: E402
from cdc.transport.producer import EventProducer  # noqa: E402
from cdc.transport.topics import TopicManager, TopicSpec  # noqa: E402
from connectors.postgres.config import PostgresSourceConfig  # noqa: E402
from connectors.postgres.position import Lsn, PgPosition  # noqa: E402
from connectors.postgres.source.connector import PostgresSource, drop_slot  # noqa: E402
from tests.fixtures.services import resolve_endpoints  # noqa: E402

TABLE_DDL = """
CREATE TABLE {t} (
  id bigint PRIMARY KEY, customer text, amount numeric(12,2), created_at timestamptz,
  ship_date date, paid boolean, weight double precision, note varchar(200), qty integer,
  attrs jsonb
)"""

ROW = """({i}, 'customer ' || {i}, ({i} % 10000) * 1.25, '2024-01-01'::timestamptz
          + {i} * interval '1 second', '2024-01-01'::date + ({i} % 365), {i} % 2 = 0,
          {i} / 7.0, 'note for row ' || {i}, {i} % 100, jsonb_build_object('k', {i} % 10))"""

# Each transaction: 4 inserts, 4 updates, 2 deletes (10 events), as a procedure
# that commits per loop, so the workload is written fast and server-side.
WORKLOAD = """
CREATE PROCEDURE {t}_work(txs int, base bigint) LANGUAGE plpgsql AS $$
DECLARE n bigint := base;
BEGIN
  FOR x IN 1..txs LOOP
    INSERT INTO {t} SELECT i, 'customer ' || i, (i % 10000) * 1.25,
        '2024-01-01'::timestamptz + i * interval '1 second', '2024-01-01'::date + (i % 365)::int,
        i % 2 = 0, i / 7.0, 'note for row ' || i, (i % 100)::int, jsonb_build_object('k', i % 10)
      FROM generate_series(n, n + 3) i;
    UPDATE {t} SET amount = amount + 1, paid = NOT paid, note = 'updated'
      WHERE id BETWEEN n - 40 AND n - 37;
    DELETE FROM {t} WHERE id BETWEEN n - 80 AND n - 79;
    n := n + 4;
    COMMIT;
  END LOOP;
END $$"""


def _config(dsn: str, name: str, table: str) -> PostgresSourceConfig:
    return PostgresSourceConfig.model_validate({
        "name": name, "kind": "postgres", "connection": {"dsn": dsn},
        "tables": {"include": [f"public.{table}"]},
        "proto_version": 2, "streaming": True, "heartbeat_interval_s": 1,
    })


class _Run:
    """One source, its table, slot, publication and topics; removed on exit."""

    def __init__(self, label: str) -> None:
        self.ep = resolve_endpoints()
        self.name = f"bench_{label}_{os.getpid()}"
        self.table = self.name
        self.cfg = _config(self.ep.pg_source_dsn, self.name, self.table)
        self.conn = psycopg.connect(self.ep.pg_source_dsn, autocommit=True)

    def __enter__(self) -> _Run:
        self.conn.execute(TABLE_DDL.format(t=self.table))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            drop_slot(self.cfg, self.name)
        finally:
            self.conn.execute(f"DROP PUBLICATION IF EXISTS {self.cfg.publication_name}")
            self.conn.execute(f"DROP PROCEDURE IF EXISTS {self.table}_work")
            self.conn.execute(f"DROP TABLE IF EXISTS {self.table}")
            self.conn.close()
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": self.ep.kafka_bootstrap})
            topics = [f"{self.name}.public.{self.table}", f"{self.name}.offsets"]
            for fut in admin.delete_topics(topics, operation_timeout=30).values():
                with contextlib.suppress(Exception):  # best effort: topics of a bench run
                    fut.result(30)

    def lsn(self) -> Lsn:
        row = self.conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return Lsn.parse(row[0])

    def create_slot(self) -> None:
        src = PostgresSource(self.cfg, name=self.name)
        items = src.stream(None)
        next(items)  # slot and publication exist once streaming has started
        src.close()

    def runner(self, end: Lsn, done: dict[str, float]) -> SourceRunner:
        ep = self.ep
        stop = threading.Event()

        def on_checkpoint(p: Position) -> None:
            assert isinstance(p, PgPosition)
            if p.lsn >= end and "end" not in done:
                done["end"] = time.perf_counter()
                stop.set()

        return SourceRunner(
            self.name, PostgresSource(self.cfg, name=self.name),
            AvroSerde(RegistryClient(ep.schema_registry_url)),
            EventProducer(ep.kafka_bootstrap, {"linger.ms": LINGER_MS[0]}),
            OffsetStore(ep.kafka_bootstrap, f"{self.name}.offsets"),
            TopicManager(ep.kafka_bootstrap),
            RunnerSettings(snapshot_mode=SnapshotMode.NEVER, checkpoint_interval_s=0.5,
                           topic_spec=TopicSpec(partitions=3)),
            stop=stop, on_checkpoint=on_checkpoint,
        )


def _stream(run: _Run, end: Lsn, profile: bool) -> tuple[int, float, float, pstats.Stats | None]:
    done: dict[str, float] = {}
    runner = run.runner(end, done)
    first: dict[str, float] = {}
    emit = runner._emit

    def timed_emit(event: Any) -> None:
        if "t" not in first:
            first["t"] = time.perf_counter()
        emit(event)

    runner._emit = timed_emit  # type: ignore[method-assign]
    t0 = time.perf_counter()
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()
    runner.run()
    if prof is not None:
        prof.disable()
    total = done.get("end", time.perf_counter()) - t0
    steady = done.get("end", time.perf_counter()) - first.get("t", t0)
    stats = pstats.Stats(prof) if prof is not None else None
    return runner.stats.events, total, steady, stats


def throughput(events: int, profile_events: int) -> None:
    with _Run("tp") as run:
        run.conn.execute(f"INSERT INTO {run.table} SELECT i, 'c', 1, now(), current_date, true, "
                         "1.0, 'n', 1, '{}' FROM generate_series(1, 100) i")
        run.conn.execute(WORKLOAD.format(t=run.table))
        run.create_slot()
        txs = events // 10
        t0 = time.perf_counter()
        run.conn.execute(f"CALL {run.table}_work(%s, %s)", (txs, 1000))
        write_s = time.perf_counter() - t0
        end = run.lsn()
        n, total, steady, _ = _stream(run, end, profile=False)
        print(f"workload: {txs} transactions, {n} events written in {write_s:.1f}s "
              f"(server side, before streaming)")
        print(f"throughput WAL -> Kafka (acknowledged): {n / steady:,.0f} events/s "
              f"({n} events in {steady:.1f}s; {total:.1f}s including start-up)")

    if profile_events:
        with _Run("prof") as run:
            run.conn.execute(WORKLOAD.format(t=run.table))
            run.create_slot()
            run.conn.execute(f"CALL {run.table}_work(%s, %s)", (profile_events // 10, 1000))
            end = run.lsn()
            n, _, steady, stats = _stream(run, end, profile=True)
            assert stats is not None
            print(f"\nprofiled run: {n / steady:,.0f} events/s under cProfile; top 15 by own time:")
            out = io.StringIO()
            stats.stream = out  # type: ignore[attr-defined]
            stats.sort_stats("tottime").print_stats(15)
            if os.environ.get("BENCH_CUMULATIVE"):
                stats.sort_stats("cumulative").print_stats(30)
            print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss(rows: int) -> None:
    with _Run("rss") as run:
        run.create_slot()
        t0 = time.perf_counter()
        run.conn.execute(f"INSERT INTO {run.table} SELECT i, 'customer ' || i, i * 1.25, "
                         "now(), current_date, i %% 2 = 0, i / 7.0, 'note', i %% 100, "
                         f"'{{\"k\": 1}}' FROM generate_series(1, %s::int) i", (rows,))
        write_s = time.perf_counter() - t0
        end = run.lsn()
        peak = [_rss_mb()]
        start_rss = peak[0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _rss_mb())
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        n, _, steady, _ = _stream(run, end, profile=False)
        stop.set()
        sampler.join()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"one transaction of {rows:,} rows ({write_s:.1f}s to write): {n:,} events in "
              f"{steady:.1f}s ({n / steady:,.0f} events/s)")
        print(f"RSS: {start_rss:.0f} MB before, peak {max(peak[0], maxrss):.0f} MB, "
              f"{_rss_mb():.0f} MB after")


# The producer's linger: the config default unless --linger-ms says otherwise (A/B runs).
LINGER_MS = [KafkaProducerConfig().linger_ms]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="?", default="all", choices=["all", "throughput", "rss"])
    ap.add_argument("--events", type=int, default=300_000, help="throughput workload size")
    ap.add_argument("--profile-events", type=int, default=100_000,
                    help="profiled run size (0: none)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the big transaction")
    ap.add_argument("--linger-ms", type=int, default=LINGER_MS[0],
                    help="producer linger.ms (default: kafka.producer.linger_ms's default)")
    args = ap.parse_args()
    LINGER_MS[0] = args.linger_ms
    if args.what == "all":
        for what in ("throughput", "rss"):
            print(f"== {what}", flush=True)
            subprocess.run([sys.executable, __file__, what, "--events", str(args.events),
                            "--profile-events", str(args.profile_events),
                            "--rows", str(args.rows), "--linger-ms", str(args.linger_ms)],
                           check=True)
        return
    if args.what == "throughput":
        throughput(args.events, args.profile_events)
    else:
        rss(args.rows)


if __name__ == "__main__":
    main()
