"""The PostgreSQL snapshot's source side in one process: read + Avro encode, no Kafka.

    python bench/snapshot_source_bench.py [--rows 200000] [--chunk 10000] [--rounds 2]

Fills the 10-column table of ``bench/snapshot_bench.py`` in the local stack's
PostgreSQL source, then reads it with the source's snapshot reader and encodes
every record with the serde (an in-memory schema registry), per row
(one ChangeEvent each, as before batching) and batched (``SnapshotRows`` +
``encode_rows``, what ``cdc source`` does), alternating. Reports rows/s of wall
clock and the process's CPU microseconds per row (the number to compare on a
shared machine: it does not count time the scheduler gave other processes;
the server's own CPU is not in it). Needs the local stack (``make up``).
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
from connectors.postgres.source.connector import PostgresSource  # noqa: E402
from tests.fixtures.services import resolve_endpoints  # noqa: E402


def run(dsn: str, name: str, table: str, chunk: int, batched: bool) -> tuple[int, float, float]:
    cfg = PostgresSourceConfig.model_validate({
        "name": name, "kind": "postgres", "connection": {"dsn": dsn},
        "tables": {"include": [f"public.{table}"]}, "slot_name": f"{name}_slot",
        "publication_name": f"{name}_pub", "snapshot": {"chunk_size": chunk},
    })
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
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
            for batched in ((False, True) if r % 2 == 0 else (True, False)):
                n, wall, cpu = run(dsn, f"{run_id}r{r}{int(batched)}", table, args.chunk, batched)
                assert n == args.rows, (n, args.rows)
                print(f"round {r + 1} {'batched' if batched else 'per row'}: {n / wall:9,.0f} "
                      f"rows/s, {cpu / n * 1e6:5.1f} us CPU/row, load {os.getloadavg()[0]:.1f}",
                      flush=True)
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP TABLE IF EXISTS {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
