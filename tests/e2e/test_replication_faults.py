"""Four directions under faults, compared row by row by an independent reader.

A PostgreSQL and a MariaDB source each replicate into a PostgreSQL and a
MariaDB replica (PG->PG, PG->MariaDB, MariaDB->PG, MariaDB->MariaDB), every
source and sink in its own ``cdc source`` / ``cdc sink`` process, while a
randomized workload runs: multi-row transactions, rollbacks, updates that
leave a TOASTed value unchanged, primary-key changes, delete and re-insert of
one key in one transaction, a 5,000-row transaction, and values at the edges
of the *other* database's types (arbitrary 128-bit uuids, MySQL TIME beyond a
day, extreme integers, decimals, doubles and dates, case- and
space-variant text keys, 4-byte UTF-8).

Faults in the middle: kill -9 of the PostgreSQL source in the middle of its
initial snapshot (at its first progress line; the restart resumes the snapshot
while the workload goes on) and of each source while it streams,
kill -9 of both sinks and a
start over their existing replica tables, a second (graceful) sink restart, a
Kafka restart and a kill -9 of the MariaDB replica server. Each process is
killed only once it works (a source streams, a sink owns partitions): at load 30
a start takes a minute, and a kill before that tested nothing. After the workload
stops, each replica must hold exactly its source's rows: this test reads both
sides with the databases' own drivers and its own value normalisation (not
``cdc verify``). A second workload after the faults must then stream in
every direction too.

It restarts shared services, so it is ``slow`` (``make test-all``).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from tests.fixtures.pipelines import pipeline_config
from tests.fixtures.services import mysql_kwargs

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]
ROOT = Path(__file__).resolve().parents[2]
CDC = [sys.executable, "-m", "cdc.cli"]
STACK = [sys.executable, str(ROOT / "deploy" / "local" / "stack.py")]

# Values at the edges of the other database's types.
PG_BIGINTS = [-(2**63), 2**63 - 1, 0, -1]
DOUBLES = [1.7976931348623157e308, -1.7976931348623157e308, 2.2250738585072014e-308, 0.1, -0.0,
           1e-300, 123456789.123456789]
DECIMALS = [Decimal("9999999999.99"), Decimal("-9999999999.99"), Decimal("0.01"), Decimal("0.00")]
TEXTS = ["plain", "é ü ß", "emoji 🦀🎉", "quote ' and \\ backslash", "trailing space ", "",
         "tab\tnew\nline", "中文字符"]
MY_TIMES = ["838:59:59", "-838:59:59", "-00:00:01", "24:00:00", "100:00:00.5", "00:00:00",
            "-35:00:01", "12:34:56.789012"]
DATES = [dt.date(1000, 1, 1), dt.date(9999, 12, 31), dt.date(1970, 1, 1), dt.date(2024, 2, 29)]


def _rand_text_key(rnd: random.Random) -> str:
    base = rnd.choice(["k", "K", "key", "KEY", "Key", "é", "É", "ß"])
    return base + str(rnd.randint(0, 400)) + rnd.choice(["", " ", "  "])


def _big_text(rnd: random.Random) -> str:
    # Incompressible enough to be stored out of line (TOAST) on PostgreSQL.
    return "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(5000))


# ----------------------------------------------------------------------------- workloads


class PgWorkload:
    """Writes to three PostgreSQL tables: bigint key, uuid key, text key."""

    def __init__(self, dsn: str, prefix: str, seed: int) -> None:
        self.dsn = dsn
        self.k, self.u, self.s = f"{prefix}_k", f"{prefix}_u", f"{prefix}_s"
        self.rnd = random.Random(seed)
        self.next_id = 1
        self.bulk = 0

    def create(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {self.k} (id bigint PRIMARY KEY, name text NOT NULL, "
                         "amount numeric(12,2), big text, u uuid, at timestamptz, d date, "
                         "f double precision, flag boolean, doc jsonb, raw bytea, n bigint)")
            conn.execute(f"CREATE TABLE {self.u} (id uuid PRIMARY KEY, v integer NOT NULL)")
            conn.execute(f"CREATE TABLE {self.s} (id varchar(64) PRIMARY KEY, b varchar(40), "
                         "v integer NOT NULL)")

    def _row(self, k: int) -> tuple[Any, ...]:
        r = self.rnd
        return (k, r.choice(TEXTS) + str(k), r.choice([*DECIMALS, Decimal(r.randint(-10**9, 10**9)) / 100]),
                _big_text(r) if r.random() < 0.3 else None,
                uuid.UUID(int=r.getrandbits(128)),
                dt.datetime(r.randint(1000, 9999), r.randint(1, 12), r.randint(1, 28), r.randint(0, 23),
                            r.randint(0, 59), r.randint(0, 59), r.randint(0, 999999), tzinfo=dt.UTC),
                r.choice(DATES), r.choice(DOUBLES), r.random() < 0.5,
                json.dumps({"k": k, "s": r.choice(TEXTS), "a": [1, 2.5, None]}),
                bytes(r.getrandbits(8) for _ in range(r.randint(0, 40))), r.choice(PG_BIGINTS))

    def _insert(self, cur: Any, k: int) -> None:
        cur.execute(f"INSERT INTO {self.k} VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", self._row(k))

    def seed(self, n: int) -> None:
        with psycopg.connect(self.dsn) as conn, conn.cursor() as cur:
            for _ in range(n):
                self._insert(cur, self.next_id)
                self.next_id += 1
            for _ in range(n // 2):
                cur.execute(f"INSERT INTO {self.u} VALUES (%s, %s)",
                            (uuid.UUID(int=self.rnd.getrandbits(128)), self.rnd.randint(0, 99)))
                cur.execute(f"INSERT INTO {self.s} VALUES (%s, %s, 0) ON CONFLICT DO NOTHING",
                            (_rand_text_key(self.rnd), self.rnd.choice(TEXTS)))

    def big_transaction(self, rows: int = 5000) -> None:
        self.bulk += 1
        first = 10**7 * self.bulk  # the writer thread owns next_id
        with psycopg.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO {self.k} (id, name, amount, n) SELECT g, 'bulk ' || g, g / 100.0, g "
                        "FROM generate_series(%s, %s) g", (first, first + rows - 1))
            cur.execute(f"UPDATE {self.k} SET amount = amount + 1 WHERE id BETWEEN %s AND %s",
                        (first, first + rows // 2))

    def step(self) -> None:
        r = self.rnd
        with psycopg.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT id FROM {self.k} ORDER BY random() LIMIT 8")
            ids = [row[0] for row in cur.fetchall()]
            for _ in range(r.randint(1, 8)):
                x = r.random()
                if x < 0.3 or not ids:
                    self._insert(cur, self.next_id)
                    ids.append(self.next_id)
                    self.next_id += 1
                elif x < 0.5:  # leaves `big` (TOASTed) unchanged
                    cur.execute(f"UPDATE {self.k} SET amount = CASE WHEN amount > 0 THEN amount - 0.01 ELSE amount + 0.01 END, n = %s WHERE id = %s",
                                (r.choice(PG_BIGINTS), r.choice(ids)))
                elif x < 0.6:
                    cur.execute(f"UPDATE {self.k} SET big = %s WHERE id = %s",
                                (_big_text(r), r.choice(ids)))
                elif x < 0.7:
                    old = ids.pop(r.randrange(len(ids)))
                    cur.execute(f"UPDATE {self.k} SET id = %s WHERE id = %s", (self.next_id, old))
                    ids.append(self.next_id)
                    self.next_id += 1
                elif x < 0.8:
                    cur.execute(f"DELETE FROM {self.k} WHERE id = %s", (ids.pop(r.randrange(len(ids))),))
                elif x < 0.85:
                    k = r.choice(ids)
                    cur.execute(f"DELETE FROM {self.k} WHERE id = %s", (k,))
                    self._insert(cur, k)
                elif x < 0.93:
                    cur.execute(f"INSERT INTO {self.u} VALUES (%s, %s)",
                                (uuid.UUID(int=r.getrandbits(128)), r.randint(0, 99)))
                    cur.execute(f"UPDATE {self.u} SET v = v + 1 WHERE id = "
                                f"(SELECT id FROM {self.u} ORDER BY random() LIMIT 1)")
                else:
                    key = _rand_text_key(r)
                    cur.execute(f"INSERT INTO {self.s} VALUES (%s, %s, 0) ON CONFLICT (id) "
                                "DO UPDATE SET v = excluded.v + 1, b = %s", (key, r.choice(TEXTS),
                                                                               r.choice(TEXTS)))
            if r.random() < 0.1:
                conn.rollback()


class MyWorkload:
    """Writes to two MariaDB tables: bigint key with a type zoo, text key."""

    def __init__(self, url: str, prefix: str, seed: int) -> None:
        self.kwargs = mysql_kwargs(url)
        self.k, self.s = f"{prefix}_k", f"{prefix}_s"
        self.rnd = random.Random(seed)
        self.next_id = 1
        self.bulk = 0

    def _connect(self) -> Any:
        return pymysql.connect(**{**self.kwargs, "autocommit": False})

    def create(self) -> None:
        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {self.k} (id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, "
                        "amount DECIMAL(12,2), big LONGTEXT, t TIME(6), at DATETIME(6), d DATE, "
                        "f DOUBLE, ub BIGINT UNSIGNED, tiny TINYINT, doc JSON, raw VARBINARY(64)) "
                        "DEFAULT CHARSET=utf8mb4")
            cur.execute(f"CREATE TABLE {self.s} (id VARCHAR(64) PRIMARY KEY, b VARCHAR(40), "
                        "v INT NOT NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
        conn.commit()
        conn.close()

    def _row(self, k: int) -> tuple[Any, ...]:
        r = self.rnd
        return (k, r.choice(TEXTS) + str(k), r.choice(DECIMALS), _big_text(r) if r.random() < 0.3 else None,
                r.choice(MY_TIMES),
                dt.datetime(r.randint(1000, 9999), r.randint(1, 12), r.randint(1, 28), r.randint(0, 23),
                            r.randint(0, 59), r.randint(0, 59), r.randint(0, 999999)),
                r.choice(DATES), r.choice(DOUBLES), r.choice([0, 2**64 - 1, 2**63, 1]),
                r.choice([-128, 127, 0]), json.dumps({"k": k, "s": r.choice(TEXTS)}),
                bytes(r.getrandbits(8) for _ in range(r.randint(0, 40))))

    def _insert(self, cur: Any, k: int) -> None:
        cur.execute(f"INSERT INTO {self.k} VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", self._row(k))

    def seed(self, n: int) -> None:
        conn = self._connect()
        with conn.cursor() as cur:
            for _ in range(n):
                self._insert(cur, self.next_id)
                self.next_id += 1
            for _ in range(n // 2):
                cur.execute(f"INSERT IGNORE INTO {self.s} VALUES (%s, %s, 0)",
                            (_rand_text_key(self.rnd), self.rnd.choice(TEXTS)))
        conn.commit()
        conn.close()

    def big_transaction(self, rows: int = 5000) -> None:
        conn = self._connect()
        self.bulk += 1
        first = 10**7 * self.bulk  # the writer thread owns next_id
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {self.k} (id, name, amount, ub) VALUES (%s, %s, %s, %s)",
                            [(i, f"bulk {i}", Decimal(i) / 100, i) for i in range(first, first + rows)])
            cur.execute(f"UPDATE {self.k} SET amount = amount + 1 WHERE id BETWEEN %s AND %s",
                        (first, first + rows // 2))
        conn.commit()
        conn.close()

    def step(self) -> None:
        r = self.rnd
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT id FROM {self.k} ORDER BY rand() LIMIT 8")
                ids = [row[0] for row in cur.fetchall()]
                for _ in range(r.randint(1, 8)):
                    x = r.random()
                    if x < 0.3 or not ids:
                        self._insert(cur, self.next_id)
                        ids.append(self.next_id)
                        self.next_id += 1
                    elif x < 0.55:
                        cur.execute(f"UPDATE {self.k} SET amount = CASE WHEN amount > 0 THEN amount - 0.01 ELSE amount + 0.01 END, t = %s WHERE id = %s",
                                    (r.choice(MY_TIMES), r.choice(ids)))
                    elif x < 0.65:
                        old = ids.pop(r.randrange(len(ids)))
                        cur.execute(f"UPDATE {self.k} SET id = %s WHERE id = %s", (self.next_id, old))
                        ids.append(self.next_id)
                        self.next_id += 1
                    elif x < 0.77:
                        cur.execute(f"DELETE FROM {self.k} WHERE id = %s",
                                    (ids.pop(r.randrange(len(ids))),))
                    elif x < 0.83:
                        k = r.choice(ids)
                        cur.execute(f"DELETE FROM {self.k} WHERE id = %s", (k,))
                        self._insert(cur, k)
                    else:
                        cur.execute(f"INSERT INTO {self.s} VALUES (%s, %s, 0) ON DUPLICATE KEY "
                                    "UPDATE v = v + 1, b = VALUES(b)",
                                    (_rand_text_key(r), r.choice(TEXTS)))
            if r.random() < 0.1:
                conn.rollback()
            else:
                conn.commit()
        finally:
            conn.close()


# ----------------------------------------------------------------------------- independent reading


def _norm(v: Any) -> Any:
    """One comparable form for a value read from either database."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, uuid.UUID):
        return v
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v)
    if isinstance(v, Decimal):  # compares numerically; integral ones equal the other side's int
        return int(v) if v == v.to_integral_value() else v
    if isinstance(v, float):
        return 0.0 if v == 0 else v
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True)
    return v


def _norm_col(col: str, v: Any) -> Any:
    """``col`` is the column's name, or ``uid`` for a uuid primary key."""
    if v is None:
        return None
    if isinstance(v, str) and col == "doc":
        return json.dumps(json.loads(v), sort_keys=True)
    if col in ("u", "uid"):  # a uuid, whatever column type the replica chose for it
        return uuid.UUID(bytes=bytes(v)) if isinstance(v, bytes | bytearray) else uuid.UUID(str(v))
    return _norm(v)


Rows = dict[Any, dict[str, Any]]


def _pg_rows(dsn: str, table: str, uuid_key: bool = False) -> Rows:
    """The table's rows by key; none while a sink has not created it yet."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (table,))
        if (cur.fetchone() or (None,))[0] is None:
            return {}
        cur.execute(f"SELECT * FROM {table}")
        names = [d.name for d in cur.description or ()]
        out: Rows = {}
        for row in cur.fetchall():
            rec = {n: _norm_col("uid" if uuid_key and n == "id" else n, v) for n, v in zip(names, row, strict=True)}
            out[rec["id"]] = rec
        return out


def _my_rows(kwargs: dict[str, Any], table: str, uuid_key: bool = False) -> Rows:
    conn = pymysql.connect(**kwargs)
    try:
        with conn.cursor() as cur:
            if not cur.execute("SHOW TABLES LIKE %s", (table,)):
                return {}
            cur.execute(f"SELECT * FROM `{table}`")
            names = [d[0] for d in cur.description or ()]
            out: Rows = {}
            for row in cur.fetchall():
                rec = {n: _norm_col("uid" if uuid_key and n == "id" else n, v)
                       for n, v in zip(names, row, strict=True)}
                out[rec["id"]] = rec
            return out
    finally:
        conn.close()


def _diff(source: Rows, replica: Rows) -> list[str]:
    out = [f"missing {k!r}" for k in source.keys() - replica.keys()]
    out += [f"extra {k!r}" for k in replica.keys() - source.keys()]
    for k in source.keys() & replica.keys():
        a, b = source[k], replica[k]
        for col in a:
            if a[col] != b.get(col):
                out.append(f"{k!r}.{col}: source {a[col]!r} replica {b.get(col)!r}")
    return out


# ----------------------------------------------------------------------------- processes


class Proc:
    """One ``cdc source`` or ``cdc sink`` process, restartable."""

    def __init__(self, role: str, config: Path, name: str, log_dir: Path) -> None:
        self.role, self.config, self.name = role, config, name
        self.log = log_dir / f"{role}-{name}.log"
        self.p: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as f:
            f.write(f"\n===== start {self.starts}\n".encode())
        self.p = subprocess.Popen([*CDC, self.role, str(self.config), "--name", self.name], cwd=ROOT,
                                  stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        assert self.p is not None
        self.p.kill()
        self.p.wait(30)

    def stop(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(30)

    def since_start(self) -> str:
        """What the process logged since its latest start."""
        text = self.log.read_text(errors="replace")
        return text[text.rfind(f"===== start {self.starts}\n"):]

    def working(self) -> bool:
        """Past start-up: a source streams, a sink owns partitions. A fault injected
        before that (Python's start-up alone takes tens of seconds at load 30) would
        hit a process that has done nothing yet, and test nothing."""
        text = self.since_start()
        if self.role == "source":
            return "streaming from" in text or "resuming stream after" in text
        return any(not line.rstrip().endswith(": assigned nothing")
                   for line in text.splitlines() if ": assigned " in line)

    def assert_alive(self) -> None:
        """Fails on any exit but one: Kafka unreachable at start (a supervisor restarts it)."""
        assert self.p is not None
        if self.p.poll() is not None and "did not answer within" in self.log.read_text(
                errors="replace")[-2000:]:
            self.start()
        if self.p.poll() is not None:
            raise AssertionError(f"{self.role} {self.name} exited {self.p.returncode}:\n"
                                 + self.log.read_text(errors="replace")[-5000:])


def _stack(*args: str) -> None:
    done = subprocess.run([*STACK, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, f"stack.py {' '.join(args)}: {done.stdout}{done.stderr}"


@pytest.fixture()
def restore_stack() -> Iterator[None]:
    try:
        yield
    finally:
        _stack("up")


def test_four_directions_exact_under_faults(
    kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
    mysql_source_url: str, mysql_replica_url: str, tmp_path: Path, restore_stack: None,
) -> None:
    run = f"ff{random.randint(0, 10**8)}"
    pgw = PgWorkload(pg_source_dsn, f"{run}_p", seed=11)
    myw = MyWorkload(mysql_source_url, f"{run}_m", seed=12)
    pgw.create()
    myw.create()
    pgw.seed(300)
    myw.seed(300)
    pgw.big_transaction()  # 5,000 more rows: a snapshot long enough to be killed in its middle

    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(pipeline_config(
        run, kafka_bootstrap, schema_registry_url,
        pg_replica_dsn=pg_replica_dsn, mysql_replica_url=mysql_replica_url,
        pg_source_dsn=pg_source_dsn, pg_tables=[f"{run}_p_*"],
        mysql_source_url=mysql_source_url, mysql_tables=[f"{run}_m_*"],
        pg_extra={"proto_version": 2, "streaming": True, "snapshot": {"chunk_size": 500}},
        log_level="INFO", metrics=False,
    )))
    procs = {n: Proc(role, config, n, tmp_path) for role, n in [
        ("source", f"{run}_pg"), ("source", f"{run}_my"),
        ("sink", f"{run}_to_pg"), ("sink", f"{run}_to_maria")]}
    src_pg, src_my = procs[f"{run}_pg"], procs[f"{run}_my"]
    sink_pg, sink_my = procs[f"{run}_to_pg"], procs[f"{run}_to_maria"]
    my_replica = mysql_kwargs(mysql_replica_url)

    pairs: list[tuple[str, Callable[[], Rows], Callable[[], Rows]]] = []
    for t, uk in ((pgw.k, False), (pgw.u, True), (pgw.s, False)):
        pairs.append((f"pg->pg {t}", lambda t=t, uk=uk: _pg_rows(pg_source_dsn, t, uk),
                      lambda t=t, uk=uk: _pg_rows(pg_replica_dsn, t, uk)))
        pairs.append((f"pg->maria {t}", lambda t=t, uk=uk: _pg_rows(pg_source_dsn, t, uk),
                      lambda t=t, uk=uk: _my_rows(my_replica, t, uk)))
    for t in (myw.k, myw.s):
        pairs.append((f"maria->pg {t}", lambda t=t: _my_rows(myw.kwargs, t),
                      lambda t=t: _pg_rows(pg_replica_dsn, t)))
        pairs.append((f"maria->maria {t}", lambda t=t: _my_rows(myw.kwargs, t),
                      lambda t=t: _my_rows(my_replica, t)))

    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(w: PgWorkload | MyWorkload) -> None:
        try:
            while not stop.is_set():
                try:
                    w.step()
                except (psycopg.OperationalError, pymysql.err.OperationalError):
                    time.sleep(0.2)  # a source server restart is not part of this test
                time.sleep(0.005)
        except BaseException as e:
            errors.append(e)

    def converge(what: str, timeout: float = 600) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] converging: {what}", flush=True)
        deadline = time.monotonic() + timeout
        while True:
            for p in procs.values():
                p.assert_alive()
            problems = {name: _diff(src(), rep()) for name, src, rep in pairs}
            bad = {k: v for k, v in problems.items() if v}
            if not bad:
                print(f"[{time.monotonic() - t0:6.1f}s] converged: {what}", flush=True)
                return
            if time.monotonic() > deadline:
                raise AssertionError(what + ": " + "\n".join(
                    f"{k}: {len(v)} differences, e.g. {v[:5]}" for k, v in bad.items()))
            time.sleep(2)

    t0 = time.monotonic()

    def until_working(*ps: Proc, timeout: float = 600) -> None:
        """Wait until every one of ``ps`` works (Proc.working), so the next fault hits
        a process in operation whatever the machine's load."""
        print(f"[{time.monotonic() - t0:6.1f}s] waiting until working: "
              f"{', '.join(p.name for p in ps)}", flush=True)
        deadline = time.monotonic() + timeout
        while not all(p.working() for p in ps):
            for p in procs.values():
                p.assert_alive()
            assert not errors, errors
            assert time.monotonic() < deadline, "not working after 600 s: " + ", ".join(
                p.name for p in ps if not p.working())
            time.sleep(0.5)

    def kill_mid_snapshot(p: Proc) -> None:
        """kill -9 ``p`` at its first snapshot progress line (some chunks are in Kafka,
        and the offsets hold the snapshot's start), and start it again: it resumes
        the snapshot while the workload goes on."""
        print(f"[{time.monotonic() - t0:6.1f}s] kill -9 of {p.name} mid-snapshot", flush=True)
        deadline = time.monotonic() + 900
        while True:
            for q in procs.values():
                q.assert_alive()
            assert time.monotonic() < deadline, "no snapshot progress in 900 s"
            text = p.since_start()
            if "streaming from" in text:
                # Only on an idle machine: the kill then hits the stream.
                print("  the snapshot finished before a progress line", flush=True)
                break
            if f"initial snapshot of {p.name}: [" in text:
                break
            time.sleep(0.1)
        p.kill9()
        p.start()

    def running(seconds: float) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] running {seconds}s", flush=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for p in procs.values():
                p.assert_alive()
            assert not errors, errors
            time.sleep(0.5)

    try:
        for p in procs.values():
            p.start()
        writers = [threading.Thread(target=writer, args=(w,)) for w in (pgw, myw)]
        for w in writers:
            w.start()
        kill_mid_snapshot(src_pg)
        until_working(*procs.values())
        running(8)
        pgw.big_transaction()
        myw.big_transaction()
        running(4)
        src_pg.kill9()
        src_pg.start()
        until_working(src_pg)
        running(4)
        sink_pg.kill9()
        sink_my.kill9()
        sink_pg.start()  # over the replica tables they created
        sink_my.start()
        until_working(sink_pg, sink_my)
        running(6)
        sink_pg.stop()  # a second restart, graceful this time
        sink_my.stop()
        sink_pg.start()
        sink_my.start()
        until_working(sink_pg, sink_my)
        running(4)
        src_my.kill9()
        src_my.start()
        until_working(src_my)
        running(4)
        _stack("restart", "kafka")
        running(6)
        _stack("kill", "mysql-replica")
        running(2)
        _stack("start", "mysql-replica")
        running(6)
        stop.set()
        for w in writers:
            w.join(60)
        assert not errors, errors
        converge("after the faults")

        # A second workload after the faults still streams in every direction.
        stop.clear()
        writers = [threading.Thread(target=writer, args=(w,)) for w in (pgw, myw)]
        for w in writers:
            w.start()
        running(8)
        stop.set()
        for w in writers:
            w.join(60)
        assert not errors, errors
        converge("second workload")
        # The second run of sinks started over existing tables: no DDL refused, no restart loop.
        for p in (sink_pg, sink_my):
            assert "Traceback" not in p.log.read_text(errors="replace"), p.log.read_text()[-3000:]
    finally:
        stop.set()
        for p in procs.values():
            p.stop()
        subprocess.run([*CDC, "reset-source", str(config), "--name", f"{run}_pg", "--release",
                        "--yes"], cwd=ROOT, capture_output=True, timeout=60)
