"""The PostgreSQL snapshot's source side in one process: read + Avro encode, no Kafka.

    python bench/snapshot_source_bench.py [--rows 200000] [--chunk 10000] [--rounds 2]
                                          [--modes per-row,batched,serial]
                                          [--db postgres|mysql]

Fills the 10-column table of ``bench/snapshot_bench.py`` in the local stack's
PostgreSQL source, then reads it with the source's snapshot reader and encodes
every record with the serde (an in-memory schema registry), per row
(``per-row``: one ChangeEvent each, as before batching), batched (``batched``:
``SnapshotRows`` + ``encode_rows`` with the next chunk read ahead by a thread,
what ``cdc source`` does) and batched with no read-ahead (``serial``: each
chunk read only when the previous one is encoded), alternating the order
round by round. Reports rows/s of wall
clock and the process's CPU microseconds per row (the number to compare on a
shared machine: it does not count time the scheduler gave other processes;
the server's own CPU is not in it). ``--db mysql``: the same table in the
stack's MariaDB source, read by the MySQL source's snapshot reader (modes
``per-row`` and ``batched``; its reader has no read-ahead). Needs the local
stack (``make up``).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.snapshot_bench import DDL, FILL  # noqa: E402
from cdc.serde import AvroSerde, InMemorySchemaRegistry  # noqa: E402
from cdc.spi import SnapshotChunk, SnapshotRows  # noqa: E402
from connectors.postgres.config import PostgresSourceConfig  # noqa: E402
from connectors.postgres.source import snapshot  # noqa: E402
from connectors.postgres.source.connector import PostgresSource  # noqa: E402
from tests.fixtures.services import resolve_endpoints  # noqa: E402

prefetch_default = snapshot.PREFETCH_CHUNKS
MODES = ("per-row", "batched", "serial")


def run(dsn: str, name: str, table: str, chunk: int, mode: str) -> tuple[int, float, float]:
    cfg = PostgresSourceConfig.model_validate({
        "name": name, "kind": "postgres", "connection": {"dsn": dsn},
        "tables": {"include": [f"public.{table}"]}, "slot_name": f"{name}_slot",
        "publication_name": f"{name}_pub", "snapshot": {"chunk_size": chunk},
    })
    batched = mode != "per-row"
    snapshot.PREFETCH_CHUNKS = 0 if mode == "serial" else prefetch_default
    src = PostgresSource(cfg, name=name)
    serde = AvroSerde(InMemorySchemaRegistry())
    n = 0
    size = 0
    try:
        if batched:
            src.batch_snapshot()
        _, items = src.resumable_snapshot(None)
        w0, c0 = time.monotonic(), time.process_time()
        for item in items:
            if type(item) is SnapshotChunk:
                continue
            if type(item) is SnapshotRows:
                _, _keys, values = serde.encode_rows(item)
                n += len(values)
                size += len(values[-1])
            else:
                rec = serde.encode(item)  # type: ignore[arg-type]
                n += 1
                size += len(rec.value)
        wall, cpu = time.monotonic() - w0, time.process_time() - c0
    finally:
        src.close()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                      "WHERE slot_name = %s", (f"{name}_slot",))
            c.execute(f'DROP PUBLICATION IF EXISTS "{name}_pub"')
    assert size > 0
    return n, wall, cpu


MY_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, qty int, name text, price decimal(10,2),
  created datetime(6), day date, ratio double, active boolean, code varchar(50), seq bigint)
  DEFAULT CHARSET=utf8mb4"""
MY_FILL = """INSERT INTO {t} SELECT seq, seq % 1000, CONCAT('product number ', seq),
  (seq % 100000) / 100.0, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND,
  DATE '2024-01-01' + INTERVAL (seq % 365) DAY, seq / 7.0, seq % 2 = 0, CONCAT('C', seq),
  seq * 10 FROM seq_{a}_to_{b}"""


def run_mysql(url: str, name: str, table: str, chunk: int, mode: str) -> tuple[int, float, float]:
    from connectors.mysql.source import MySqlSource
    from tests.fixtures.services import mysql_settings

    src = MySqlSource(mysql_settings(url), name=name, server_id=random.randint(10**5, 10**9),
                      include=[f"cdc_source.{table}"], chunk_size=chunk)
    serde = AvroSerde(InMemorySchemaRegistry())
    n = size = 0
    try:
        if mode != "per-row":
            src.batch_snapshot()
        _, items = src.resumable_snapshot(None)
        w0, c0 = time.monotonic(), time.process_time()
        for item in items:
            if type(item) is SnapshotChunk:
                continue
            if type(item) is SnapshotRows:
                _, _keys, values = serde.encode_rows(item)
                n += len(values)
                size += len(values[-1])
            else:
                rec = serde.encode(item)  # type: ignore[arg-type]
                n += 1
                size += len(rec.value)
        wall, cpu = time.monotonic() - w0, time.process_time() - c0
    finally:
        src.close()
    assert size > 0
    return n, wall, cpu


def main_mysql(args: argparse.Namespace, modes: list[str]) -> int:
    import pymysql

    from tests.fixtures.services import mysql_kwargs

    url = resolve_endpoints().mysql_source_url
    table = f"snapsrc{random.randint(0, 10**6)}_t"
    conn = pymysql.connect(**mysql_kwargs(url))  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            cur.execute(MY_DDL.format(t=table))
            for a in range(1, args.rows + 1, 1_000_000):
                cur.execute(MY_FILL.format(t=table, a=a, b=min(args.rows, a + 999_999)))
        print(f"snapshot source bench (MariaDB): {args.rows:,} rows, chunk {args.chunk}, "
              f"CDC_NATIVE={os.environ.get('CDC_NATIVE', '1')}, load {os.getloadavg()[0]:.1f}")
        for r in range(args.rounds):
            for i, mode in enumerate(modes if r % 2 == 0 else modes[::-1]):
                n, wall, cpu = run_mysql(url, f"{table}r{r}m{i}", table, args.chunk, mode)
                assert n == args.rows, (n, args.rows)
                print(f"round {r + 1} {mode:>8}: {n / wall:9,.0f} rows/s, "
                      f"{cpu / n * 1e6:5.1f} us CPU/row, load {os.getloadavg()[0]:.1f}",
                      flush=True)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default=None, help=f"any of {', '.join(MODES)}")
    ap.add_argument("--db", choices=("postgres", "mysql"), default="postgres")
    args = ap.parse_args()
    modes = [m for m in (args.modes or ",".join(
        MODES if args.db == "postgres" else MODES[:2])).split(",") if m]
    if not modes or any(m not in MODES for m in modes) or (args.db == "mysql" and "serial" in modes):
        ap.error(f"--modes: a comma-separated list of {', '.join(MODES)} (mysql: no serial)")
    if args.db == "mysql":
        return main_mysql(args, modes)
    dsn = resolve_endpoints().pg_source_dsn
    run_id = f"snapsrc{random.randint(0, 10**6)}"
    table = f"{run_id}_t"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(DDL.format(t=table))
        c.execute(FILL.format(t=table, a=1, b=args.rows))
        c.execute(f"VACUUM ANALYZE {table}")
    print(f"snapshot source bench: {args.rows:,} rows, chunk {args.chunk}, "
          f"CDC_NATIVE={os.environ.get('CDC_NATIVE', '1')}, load {os.getloadavg()[0]:.1f}")
    try:
        for r in range(args.rounds):
            for i, mode in enumerate(modes if r % 2 == 0 else modes[::-1]):
                n, wall, cpu = run(dsn, f"{run_id}r{r}m{i}", table, args.chunk, mode)
                assert n == args.rows, (n, args.rows)
                print(f"round {r + 1} {mode:>8}: {n / wall:9,.0f} "
                      f"rows/s, {cpu / n * 1e6:5.1f} us CPU/row, load {os.getloadavg()[0]:.1f}",
                      flush=True)
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP TABLE IF EXISTS {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
