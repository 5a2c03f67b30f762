"""Sink apply rate, from a pre-produced Kafka topic to committed replica rows.

    python bench/sink_bench.py [--rows 100000] [--partitions 4] [--workers 1]
                               [--replica postgres mysql] [--max-rows 5000] [--origin TAG]
                               [--conflicts] [--before-images] [--snapshot-reads]

Produces ``--rows`` inserts of 10-column rows to one topic and as many
updates of the same rows to another (cdc's own encoder and producer), then
for each replica runs sink workers (separate processes, one consumer group)
first on the insert topic, then on the update topic, and reports the steady
apply rate: rows committed between the first and the last checkpoint the
replica's ``cdc_offsets`` table shows, divided by the time between them (the
consumer-group join is not counted; with several workers, timing starts once
every worker holds partitions).

``--conflicts`` runs the sinks as master-master sinks (``conflicts`` set: every
batch reads and writes the row-version table; no record conflicts, so this is
the detection overhead); ``--before-images`` gives the updates full
before-images (as PostgreSQL tables with REPLICA IDENTITY FULL send, which
master-master needs). Compare a run with and one without ``--conflicts``, both
with ``--before-images``. ``--snapshot-reads`` makes the insert phase snapshot
reads (op ``r``, as an initial snapshot sends) instead of source inserts.

Needs the local stack (``python deploy/local/stack.py up``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdc.config import load_config  # noqa: E402
from cdc.events import (  # noqa: E402
    ChangeEvent,
    Column,
    ColumnType,
    Kind,
    Op,
    SourceInfo,
    TableId,
    TableSchema,
)
from cdc.serde import AvroSerde, RegistryClient  # noqa: E402
from cdc.sink.cli import build_worker  # noqa: E402
from cdc.spi import SinkSession, TableName  # noqa: E402
from cdc.transport.producer import EventProducer  # noqa: E402
from cdc.transport.topics import TopicManager, TopicSpec  # noqa: E402
from connectors.postgres.position import Lsn, PgPosition  # noqa: E402

_BASE = Path(os.environ.get("CDC_LOCAL_DIR", ROOT / ".cdc-local"))
_OFFSET = int(os.environ.get("CDC_PORT_OFFSET", "0"))
# The stack of this port offset (like the tests): offset 0 is .cdc-local/env.
ENV = (_BASE if _OFFSET == 0 else _BASE / f"stack-{_OFFSET}") / "env"


def endpoints() -> dict[str, str]:
    env = dict(os.environ)
    if ENV.exists():
        for line in ENV.read_text().splitlines():
            k, _, v = line.partition("=")
            env.setdefault(k.strip(), v.strip())
    return env


def schema(table: str) -> TableSchema:
    c = ColumnType
    return TableSchema(TableId("bench", "public", table), (
        Column("id", c(Kind.INT64, "bigint"), nullable=False),
        Column("qty", c(Kind.INT32, "integer")),
        Column("name", c(Kind.STRING, "text")),
        Column("price", c(Kind.DECIMAL, "numeric(10,2)", precision=10, scale=2)),
        Column("created", c(Kind.TIMESTAMP, "timestamp without time zone")),
        Column("day", c(Kind.DATE, "date")),
        Column("ratio", c(Kind.FLOAT64, "double precision")),
        Column("active", c(Kind.BOOLEAN, "boolean")),
        Column("code", c(Kind.STRING, "character varying(50)", length=50)),
        Column("seq", c(Kind.INT64, "bigint")),
    ), ("id",))


def row(i: int, v: int) -> dict[str, Any]:
    return {"id": i, "qty": (i + v) % 1000, "name": f"product number {i}",
            "price": Decimal(f"{(i * 7 + v) % 100000}.{v % 100:02d}"),
            "created": dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i + v),
            "day": dt.date(2024, 1, 1) + dt.timedelta(days=i % 365), "ratio": i / 7 + v,
            "active": bool((i + v) % 2), "code": f"C{i:08d}-{v}", "seq": i * 10 + v}


def produce(bootstrap: str, serde: AvroSerde, ts: TableSchema, topic: str, n: int, op: Op,
            version: int, lsn0: int, before: bool = False, snapshot: bool = False) -> float:
    producer = EventProducer(bootstrap, {"linger.ms": 50})
    t = time.perf_counter()
    for i in range(n):
        position = PgPosition(Lsn(lsn0), i, snapshot=True) if snapshot else PgPosition(Lsn(lsn0 + i * 8))
        src = SourceInfo("postgresql", "bench", "0.1", "18", position, 1_700_000_000_000)
        after = row(i, version)
        old = row(i, version - 1) if before and op is Op.UPDATE else None
        ev = ChangeEvent(op, ts, {"id": i}, old, after, src, 1_700_000_000_000)
        enc = serde.encode(ev)
        producer.send(topic, enc.key, enc.value)
    producer.flush(300)
    return time.perf_counter() - t


def dialect_for(kind: str) -> Any:
    # The connectors' create_dialect() may not return these yet: take them directly.
    if kind == "postgres":
        from connectors.postgres.sink import create_dialect as pg

        return pg()
    from connectors.mysql.sink import create_dialect as my

    return my()


def _worker(config_path: str, name: str, kind: str, profile_rows: int = 0) -> None:
    config = load_config(Path(config_path))
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker = build_worker(config, name, stop=stop, dialect=dialect_for(kind))
    if not profile_rows:
        worker.run()
        return
    # --profile: this process alone, under cProfile, until every row is applied.
    import cProfile
    import pstats

    def on_batch(result: Any) -> None:
        if worker.stats.applied >= profile_rows:  # (_done counted this batch already)
            stop.set()

    worker._on_batch = on_batch
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.runcall(worker.run)
    secs = time.perf_counter() - t
    print(f"\n--- profile: {name} ({kind}), {worker.stats.applied} rows in {secs:.1f}s "
          "(includes the group join) ---", file=sys.stderr)
    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)


def offsets(session: SinkSession, group: str, topic: str) -> dict[int, int]:
    try:
        rows = session.query(
            f"SELECT {session.dialect.quote('partition')}, kafka_offset FROM "
            f"{session.dialect.table_sql(TableName(None, 'cdc_offsets'))} "
            "WHERE consumer_group = %s AND topic = %s", [group, topic])
    except Exception:  # not created yet
        rows = []
    session.rollback()
    return {int(p): int(o) for p, o in rows}


def group_ready(admin: Any, group: str, members: int) -> bool:
    """Whether ``group`` is stable with ``members`` members, each holding partitions."""
    from confluent_kafka import ConsumerGroupState

    try:
        d = admin.describe_consumer_groups([group])[group].result(timeout=5)
    except Exception:  # not there yet
        return False
    return bool(
        d.state == ConsumerGroupState.STABLE
        and len(d.members) == members
        and all(m.assignment.topic_partitions for m in d.members)
    )


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a live process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pids(session: SinkSession, kind: str, name: str) -> list[int]:
    """The PostgreSQL server processes serving sink ``name`` (its application_name)."""
    if kind != "postgres":
        return []
    rows = session.query("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                         [f"cdc-sink-{name}"])
    session.rollback()
    return [int(r[0]) for r in rows]


def measure(config_path: Path, name: str, kind: str, workers: int, session: SinkSession,
            group: str, topic: str, n: int, admin: Any) -> tuple[float, int, float, float]:
    """Rows committed per second once every worker holds partitions (rows applied while
    the group was still forming are not counted), and the CPU seconds of the workers
    and of their replica server processes (PostgreSQL) over the same span: steadier
    than the rate on a loaded machine."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(config_path), name, kind)) for _ in range(workers)]
    for p in procs:
        p.start()
    t0 = None
    done0 = 0
    cpu0 = db0 = 0.0
    pids: list[int] = []
    deadline = time.monotonic() + 1800
    try:
        while time.monotonic() < deadline:
            cps = offsets(session, group, topic)
            done = sum(o + 1 for o in cps.values() if o >= 0)
            now = time.perf_counter()
            if t0 is None and done > 0 and (workers == 1 or group_ready(admin, group, workers)):
                t0, done0 = now, done
                cpu0 = sum(cpu_seconds(p.pid) for p in procs)
                pids = backend_pids(session, kind, name)
                db0 = sum(cpu_seconds(p) for p in pids)
            if done >= n:
                if t0 is None:
                    raise SystemExit("every row was applied before all workers joined: use --rows")
                return (now - t0, done - done0, sum(cpu_seconds(p.pid) for p in procs) - cpu0,
                        sum(cpu_seconds(p) for p in pids) - db0)
            if any(p.exitcode not in (None, 0) for p in procs):
                raise SystemExit(f"a worker failed (exit {[p.exitcode for p in procs]})")
            time.sleep(0.02)
        raise SystemExit("timed out")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(60)


# -- PostgreSQL native logical replication, on the same workload --------------------------

_NATIVE_COLUMNS = (
    "id bigint PRIMARY KEY, qty integer, name text, price numeric(10,2), "
    "created timestamp without time zone, day date, ratio double precision, active boolean, "
    "code character varying(50), seq bigint"
)


def _rows_sql(v: int) -> str:
    """The columns of row(i, v) computed by PostgreSQL from i (same shapes as row())."""
    return (
        f"(i + {v}) % 1000, 'product number ' || i, "
        f"(((i * 7 + {v}) % 100000) || '.{v % 100:02d}')::numeric, "
        f"timestamp '2024-01-01' + make_interval(secs => i + {v}), "
        f"date '2024-01-01' + (i % 365)::int, i / 7.0 + {v}, (i + {v}) % 2 = 1, "
        f"'C' || lpad(i::text, 8, '0') || '-{v}', i * 10 + {v}"
    )


def native_pg(source_dsn: str, replica_dsn: str, n: int,
              tx_rows: int) -> list[tuple[str, int, float, float, float]]:
    """Apply rate of PostgreSQL's own logical replication (publication on pg-source,
    subscription on pg-replica, copy_data = false) for n inserts then n updates.

    The workload is written with the subscription disabled (its slot keeps the
    WAL), in source transactions of ``tx_rows`` rows; the subscription is then
    enabled and the time from the first transaction's rows being visible on the
    replica to the last one's is measured (like the cdc measure, the first
    batch is not counted), with the CPU seconds of the walsender (source) and
    of the apply worker (replica) over that span."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    run = f"nativebench_{int(time.time())}"
    src = psycopg.connect(source_dsn, autocommit=True)
    rep = psycopg.connect(replica_dsn, autocommit=True)
    sub_conninfo = make_conninfo(**{k: v for k, v in conninfo_to_dict(source_dsn).items()})
    results = []
    try:
        for c in (src, rep):
            c.execute(f"CREATE TABLE {run} ({_NATIVE_COLUMNS})")
        src.execute(f"CREATE PUBLICATION {run} FOR TABLE {run}")
        rep.execute(
            f"CREATE SUBSCRIPTION {run} CONNECTION '{sub_conninfo}' PUBLICATION {run} "
            "WITH (copy_data = false, enabled = false)"
        )
        for phase, v in (("insert", 0), ("update", 1)):
            for a in range(0, n, tx_rows):
                b = min(n, a + tx_rows) - 1
                with src.transaction():
                    if phase == "insert":
                        src.execute(
                            f"INSERT INTO {run} SELECT i, {_rows_sql(v)} "
                            f"FROM generate_series({a}, {b}) AS i"
                        )
                    else:
                        cols = "qty, name, price, created, day, ratio, active, code, seq"
                        src.execute(
                            f"UPDATE {run} t SET ({cols}) = (SELECT {_rows_sql(v)} FROM "
                            f"(SELECT t.id AS i) x) WHERE t.id BETWEEN {a} AND {b}"
                        )
            first, last = min(n, tx_rows) - 1, n - 1

            def applied(i: int, v: int = v) -> bool:
                row = rep.execute(f"SELECT seq FROM {run} WHERE id = %s", [i]).fetchone()
                return row is not None and row[0] == i * 10 + v

            rep.execute(f"ALTER SUBSCRIPTION {run} ENABLE")
            deadline = time.monotonic() + 600
            while not applied(first):
                if time.monotonic() > deadline:
                    raise SystemExit("native replication: nothing applied in 10 minutes")
                time.sleep(0.002)
            t0 = time.perf_counter()
            pids = [int(r[0]) for r in src.execute(
                "SELECT pid FROM pg_stat_replication WHERE application_name = %s", [run])]
            apply_pids = [int(r[0]) for r in rep.execute(
                "SELECT pid FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL",
                [run])]
            c0 = sum(cpu_seconds(p) for p in pids)
            a0 = sum(cpu_seconds(p) for p in apply_pids)
            while not applied(last):
                if time.monotonic() > deadline:
                    raise SystemExit("native replication timed out")
                time.sleep(0.005)
            results.append((phase, last - first, time.perf_counter() - t0,
                            sum(cpu_seconds(p) for p in pids) - c0,
                            sum(cpu_seconds(p) for p in apply_pids) - a0))
            rep.execute(f"ALTER SUBSCRIPTION {run} DISABLE")
        (count,) = rep.execute(f"SELECT count(*) FROM {run}").fetchone() or (0,)
        assert count == n, f"native replication: {count} rows, expected {n}"
    finally:
        with contextlib.suppress(psycopg.Error):
            rep.execute(f"ALTER SUBSCRIPTION {run} DISABLE")
        try:  # (a disabled subscription's slot must be dropped apart)
            rep.execute(f"ALTER SUBSCRIPTION {run} SET (slot_name = NONE)")
            rep.execute(f"DROP SUBSCRIPTION IF EXISTS {run}")
        except psycopg.Error as e:
            print(f"native replication: dropping subscription {run}: {e}", file=sys.stderr)
        for _ in range(50):  # the walsender may still hold the slot for a moment
            try:
                src.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s", [run],
                )
                break
            except psycopg.Error:
                time.sleep(0.1)
        src.execute(f"DROP PUBLICATION IF EXISTS {run}")
        for c in (src, rep):
            c.execute(f"DROP TABLE IF EXISTS {run}")
        src.close()
        rep.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--max-rows", type=int, default=5_000)
    ap.add_argument("--replica", nargs="+", default=["postgres", "mysql"], choices=["postgres", "mysql"])
    ap.add_argument("--no-native", action="store_true",
                    help="skip PostgreSQL's own logical replication on the same workload")
    ap.add_argument("--native-tx-rows", type=int, default=0,
                    help="rows per source transaction for the native run (default: --max-rows)")
    ap.add_argument("--origin", default=None,
                    help="run the sinks with this origin (master-master loop prevention marks)")
    ap.add_argument("--profile", action="store_true",
                    help="run one worker in this process under cProfile and print where time goes")
    ap.add_argument("--conflicts", action="store_true",
                    help="master-master sinks: conflict detection on (row versions, no conflicts)")
    ap.add_argument("--before-images", action="store_true",
                    help="updates carry full before-images (REPLICA IDENTITY FULL)")
    ap.add_argument("--snapshot-reads", action="store_true",
                    help="the insert phase sends snapshot reads (op r) instead of inserts")
    args = ap.parse_args()
    env = endpoints()
    bootstrap, registry_url = env["KAFKA_BOOTSTRAP"], env["SCHEMA_REGISTRY_URL"]
    dsns = {"postgres": env["PG_REPLICA_DSN"], "mysql": env["MYSQL_REPLICA_URL"]}
    run = f"sinkbench_{int(time.time())}"
    table = run
    ts = schema(table)
    topics = {"insert": f"{run}.ins", "update": f"{run}.upd"}
    TopicManager(bootstrap).ensure(topics.values(), TopicSpec(partitions=args.partitions))
    serde = AvroSerde(RegistryClient(registry_url))
    for phase, topic in topics.items():
        reads = args.snapshot_reads and phase == "insert"
        secs = produce(bootstrap, serde, ts, topic, args.rows,
                       (Op.READ if reads else Op.CREATE) if phase == "insert" else Op.UPDATE,
                       0 if phase == "insert" else 1, 1_000 if phase == "insert" else 10_000_000,
                       before=args.before_images, snapshot=reads)
        print(f"produced {args.rows} {phase}s to {topic} in {secs:.1f}s", file=sys.stderr)

    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.replica:
            sinks = [{
                "name": f"bench_{kind}_{phase}", "kind": kind, "topics": [topic],
                "target": {"dsn": dsns[kind]}, "consumer_group": f"{run}_{kind}_{phase}",
                "batch": {"max_rows": args.max_rows, "max_wait_ms": 200},
                "tables": {"name_map": {topic: table}},
                **({"origin": args.origin} if args.origin else {}),
                **({"origin": args.origin or "bench_node", "conflicts": {
                    "versions_table": f"{table}_versions", "log": {"table": f"{table}_conflicts"}}}
                   if args.conflicts else {}),
            } for phase, topic in topics.items()]
            # One file per phase: both phases write one replica table, one after the other,
            # which a single config refuses (two sinks writing one table).
            cfgs = {}
            for phase, sink in zip(topics, sinks, strict=True):
                cfgs[phase] = Path(tmp) / f"{kind}_{phase}.yaml"
                cfgs[phase].write_text(yaml.safe_dump({
                    "kafka": {"bootstrap_servers": bootstrap},
                    "schema_registry": {"url": registry_url},
                    "sinks": [sink], "metrics": {"enabled": False}, "log": {"level": "WARNING"},
                }))
            session = dialect_for(kind).connect(
                load_config(cfgs["insert"]).sink(f"bench_{kind}_insert"))
            try:
                for phase, topic in topics.items():
                    cfg = cfgs[phase]
                    if args.profile:
                        _worker(str(cfg), f"bench_{kind}_{phase}", kind, args.rows)
                        continue
                    secs, rows, cpu, db = measure(cfg, f"bench_{kind}_{phase}", kind, args.workers,
                                                  session, f"{run}_{kind}_{phase}", topic,
                                                  args.rows, admin)
                    results.append((kind, phase, rows, secs, cpu, db))
                (count,) = session.query(
                    f"SELECT count(*) FROM {session.dialect.table_sql(TableName(None, table))}")[0]
                session.rollback()
                assert count == args.rows, f"{kind}: {count} rows, expected {args.rows}"
            finally:
                session.execute_ddl([f"DROP TABLE IF EXISTS {session.dialect.table_sql(TableName(None, t))}"
                                     for t in (table, f"{table}_versions", f"{table}_conflicts")])
                session.close()
    tx_rows = args.native_tx_rows or args.max_rows
    if "postgres" in args.replica and not args.no_native and not args.profile:
        for phase, rows, secs, cpu, db in native_pg(env["PG_SOURCE_DSN"], dsns["postgres"],
                                                    args.rows, tx_rows):
            results.append(("pg-native", phase, rows, secs, cpu, db))
    print(f"\nsink apply rate{' (conflict detection on)' if args.conflicts else ''}"
          f"{' (updates with before-images)' if args.before_images else ''}"
          f"{' (inserts as snapshot reads)' if args.snapshot_reads else ''}: "
          f"{args.rows} rows of 10 columns, {args.partitions} partitions, "
          f"{args.workers} worker process(es), batch.max_rows={args.max_rows}, "
          f"origin={args.origin}; pg-native is "
          f"PostgreSQL's logical replication (pg-source -> pg-replica), source transactions of "
          f"{tx_rows} rows. CPU in microseconds per row: 'reader' is the sink worker "
          "(pg-native: the source's walsender), 'writer' the replica server process that "
          "applies (pg-native: the apply worker); 'rows/CPU-s' is rows per second of their "
          "sum, the rate one free core each would allow, steadier than rows/s on a busy box")
    print(f"{'replica':<10} {'phase':<8} {'rows timed':>10} {'seconds':>8} {'rows/s':>9} "
          f"{'reader':>7} {'writer':>7} {'rows/CPU-s':>10}")
    for kind, phase, rows, secs, cpu, db in results:
        total = cpu + db
        print(f"{kind:<10} {phase:<8} {rows:>10} {secs:>8.2f} {rows / secs:>9.0f} "
              f"{cpu * 1e6 / rows:>7.1f} {db * 1e6 / rows:>7.1f} "
              f"{rows / total if total else 0:>10.0f}")


if __name__ == "__main__":
    main()
