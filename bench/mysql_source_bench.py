"""Benchmark: MySQL/MariaDB binlog -> ChangeEvents (parse + convert, no Kafka).

Writes N inserts and N updates of a 10-column table (1,000 rows per
transaction) to the local MariaDB, then times, over exactly that binlog range:

1. ``library``: mysql-replication alone (``BinLogStreamReader``, reading
   ``event.rows``) - what the library's row parser can do;
2. ``source/library``: ``MySqlSource.stream(fast_decode=False)``: the library's
   rows converted to canonical ChangeEvents with positions;
3. ``source``: ``MySqlSource.stream`` with cdc's own row-image decoder
   (``connectors/mysql/source/rowimage.py``), the default.

    .venv/bin/python bench/mysql_source_bench.py [--rows 100000] [--tx-rows 1000]
        [--profile] [--only-source] [--url mysql://root@127.0.0.1:13306/cdc_source]

``--profile`` prints the cProfile top entries of the ``source`` run;
``--only-source`` skips the two (slow) library runs. ``CDC_NATIVE=0`` runs the
``source`` path without the C extension. The URL defaults to the stack's
``MYSQL_SOURCE_URL`` (environment or ``.cdc-local``, like the tests).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import sys
import time
from pathlib import Path
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import TableMapEvent, UpdateRowsEvent, WriteRowsEvent

from cdc.events import ChangeEvent
from connectors.mysql.position import MySqlPosition
from connectors.mysql.source import MySqlSource
from connectors.mysql.source.rowimage import native_available

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' service lookup
from tests.fixtures.services import mysql_settings, resolve_endpoints

DDL = """CREATE TABLE {t} (
  id BIGINT PRIMARY KEY, name VARCHAR(64), qty BIGINT, price DECIMAL(12,2),
  created TIMESTAMP(6) NULL, day DATE, active TINYINT(1), code VARCHAR(20), ratio DOUBLE,
  n INT) DEFAULT CHARSET=utf8mb4"""
INSERT = """INSERT INTO {t} SELECT seq, CONCAT('customer name ', seq), seq * 7919,
  (seq % 100000) + (seq % 100) / 100, '2024-05-01 12:00:00.123456' + INTERVAL seq SECOND,
  '2024-01-01' + INTERVAL (seq % 365) DAY, seq % 2, CONCAT('CODE-', seq % 9999), seq / 7,
  seq % 1000 FROM seq_{lo}_to_{hi}"""
UPDATE = "UPDATE {t} SET qty = qty + 1, name = CONCAT(name, '!') WHERE id BETWEEN {lo} AND {hi}"
BATCH = 1000



def prepare(
    kw: dict[str, Any], table: str, rows: int, batch: int = BATCH
) -> tuple[MySqlPosition, str, int]:
    conn = pymysql.connect(**kw, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(DDL.format(t=table))
        cur.execute("SHOW MASTER STATUS")
        file, pos = cur.fetchone()[:2]
        for lo in range(1, rows + 1, batch):
            hi = min(lo + batch - 1, rows)
            cur.execute(INSERT.format(t=table, lo=lo, hi=hi))
        for lo in range(1, rows + 1, batch):
            cur.execute(UPDATE.format(t=table, lo=lo, hi=min(lo + batch - 1, rows)))
        cur.execute("SHOW MASTER STATUS")
        end_file, end_pos = cur.fetchone()[:2]
    conn.close()
    from connectors.mysql.position import BinlogFile

    return MySqlPosition(BinlogFile(file), int(pos), snapshot=True), end_file, int(end_pos)


def run_library(kw: dict[str, Any], start: MySqlPosition, table: str, expect: int) -> float:
    settings = {k: v for k, v in kw.items() if k != "database"}
    reader = BinLogStreamReader(
        connection_settings=settings,
        server_id=random.randint(10**6, 10**9),
        blocking=False,
        log_file=start.file.name,
        log_pos=start.pos,
        resume_stream=True,
        only_events=[TableMapEvent, WriteRowsEvent, UpdateRowsEvent],
        only_tables=[table],
        enable_logging=False,
    )
    n = 0
    t0 = time.perf_counter()
    for ev in reader:
        if isinstance(ev, WriteRowsEvent | UpdateRowsEvent):
            n += len(ev.rows)
            if n >= expect:
                break
    elapsed = time.perf_counter() - t0
    reader.close()
    assert n == expect, (n, expect)
    return elapsed


def run_source(
    kw: dict[str, Any],
    start: MySqlPosition,
    table: str,
    expect: int,
    profile: bool,
    fast: bool = True,
) -> tuple[float, str]:
    src = MySqlSource(
        kw,
        name="bench",
        server_id=random.randint(10**6, 10**9),
        include=[f"{kw['database']}.{table}"],
        gtid_mode="off",
        fast_decode=fast,
    )
    prof = cProfile.Profile() if profile else None
    n = 0
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    for item in src.stream(start):
        if isinstance(item, ChangeEvent):
            n += 1
            if n >= expect:
                break
    if prof:
        prof.disable()
    elapsed = time.perf_counter() - t0
    src.close()
    report = ""
    if prof:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
        report = buf.getvalue()
    return elapsed, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--tx-rows", type=int, default=BATCH, help="rows per transaction")
    ap.add_argument("--url", default=None, help="default: the local stack's mysql-source")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--only-source", action="store_true", help="skip the library runs")
    args = ap.parse_args()
    url = args.url
    if url is None:
        url = resolve_endpoints().mysql_source_url
    kw = mysql_settings(url, "cdc_source")
    table = f"bench_mysql_{int(time.time())}"
    t0 = time.perf_counter()
    start, _, _ = prepare(kw, table, args.rows, max(1, args.tx_rows))
    expect = 2 * args.rows
    print(
        f"wrote {args.rows} inserts + {args.rows} updates, {args.tx_rows} rows per transaction, "
        f"in {time.perf_counter() - t0:.1f}s (table {table})"
    )
    if not args.only_source:
        lib = run_library(kw, start, table, expect)
        print(
            f"library (mysql-replication parse only):         {expect / lib:9,.0f} rows/s "
            f"({lib:.2f}s)"
        )
        slow, _ = run_source(kw, start, table, expect, False, fast=False)
        print(
            f"source, library rows -> ChangeEvents:           {expect / slow:9,.0f} events/s "
            f"({slow:.2f}s)"
        )
    src, report = run_source(kw, start, table, expect, False)
    src2, _ = run_source(kw, start, table, expect, False)
    best = min(src, src2)
    print(
        f"source, cdc row-image decoder -> ChangeEvents:  {expect / best:9,.0f} events/s "
        f"({best:.2f}s, best of 2; native {native_available()})"
    )
    if args.profile:
        _, report = run_source(kw, start, table, expect, True)
    if report:
        print(report)
    conn = pymysql.connect(**kw, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE {table}")
    conn.close()


if __name__ == "__main__":
    main()
