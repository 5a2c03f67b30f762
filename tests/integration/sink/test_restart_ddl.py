"""A sink restarted over replica tables it (or a person) made plans no DDL and applies on.

Issue #10: a MariaDB sink restarted over its own table planned ``MODIFY COLUMN b
longtext`` for a varchar key, MariaDB refused it and the sink crash-looped.
Here replica tables of every key type, from a PostgreSQL and a MariaDB source,
are made by a first sink instance on both replicas; then two new instances
(restarts) start over them, must run no DDL at all, and apply inserts,
updates, key changes and deletes. A table a person made beforehand with
compatible types is taken as it is (or widened where the replica accepts
it), and a DDL the replica does refuse stops the sink with one clear error.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc.errors import EXIT_NEEDS_OPERATOR, DdlRefused
from cdc.events import Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.serde import AvroSerde, RegistryClient
from cdc.spi import TableName
from cdc.verify import normalizer
from tests.integration.sink.helpers import ApplierHarness, EventFactory, drop_tables, sink_name
from tests.integration.sink.kafka_helpers import ensure_topic, produce
from tests.integration.sink.test_types import my_source_table, pg_source_table

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]

C = ColumnType
Row = dict[str, Any]


@dataclass
class Spec:
    """One source table: its key columns, how the i-th key looks, and its connector."""

    suffix: str
    connector: str
    key: tuple[Column, ...]
    key_of: Callable[[int], tuple[Any, ...]]
    values: tuple[Column, ...]

    def schema(self, table: str) -> TableSchema:
        db, schema = ("app", "public") if self.connector == "postgresql" else ("app", None)
        return TableSchema(TableId(db, schema, table), self.key + self.values,
                           tuple(c.name for c in self.key))


def _k(name: str, ct: ColumnType) -> Column:
    return Column(name, ct, nullable=False)


_D0 = date(2020, 1, 1)
_T0 = datetime(2024, 1, 2, 3, 4, 5, 123456)
_PG_VALUES = (
    Column("val", C(Kind.STRING, "text")),
    Column("vc", C(Kind.STRING, "character varying(300)", length=300)),
    Column("u", C(Kind.UUID, "uuid")),
    Column("tm", C(Kind.TIME, "time(6) without time zone", precision=6)),
    Column("n", C(Kind.DECIMAL, "numeric", nan=True)),
)
_MY_VALUES = (
    Column("val", C(Kind.STRING, "text", length=65535)),
    Column("vc", C(Kind.STRING, "varchar(300)", length=300)),
    Column("u", C(Kind.UUID, "uuid")),
    Column("tm", C(Kind.TIME, "time(6)", precision=6)),
    Column("n", C(Kind.DECIMAL, "decimal(20,4)", precision=20, scale=4)),
)
_RNG = random.Random(10)
_UUIDS = [uuid.UUID(int=_RNG.getrandbits(128)) for _ in range(500)]
_UUIDS[0] = uuid.UUID("0123e567-e89b-f2d3-0456-426614174000")  # variant 0, version 15
_MY_UUIDS = [uuid.UUID(int=_RNG.getrandbits(128), version=4) for _ in range(500)]  # (MariaDB's)


def _pg(suffix: str, key: tuple[Column, ...], key_of: Callable[[int], tuple[Any, ...]]) -> Spec:
    return Spec("p_" + suffix, "postgresql", key, key_of, _PG_VALUES)


def _my(suffix: str, key: tuple[Column, ...], key_of: Callable[[int], tuple[Any, ...]]) -> Spec:
    return Spec("m_" + suffix, "mariadb", key, key_of, _MY_VALUES)


SPECS = (
    _pg("int", (_k("k", C(Kind.INT32, "integer")),), lambda i: (i,)),
    _pg("big", (_k("k", C(Kind.INT64, "bigint")),), lambda i: (2**40 + i,)),
    _pg("vc", (_k("k", C(Kind.STRING, "character varying(40)", length=40)),), lambda i: (f"k{i}",)),
    _pg("text", (_k("k", C(Kind.STRING, "text")),), lambda i: (f"text key {i}",)),
    _pg("uuid", (_k("k", C(Kind.UUID, "uuid")),), lambda i: (_UUIDS[i],)),
    _pg("num", (_k("k", C(Kind.DECIMAL, "numeric(12,3)", precision=12, scale=3, nan=True)),),
        lambda i: (Decimal(i) + Decimal("0.125"),)),
    _pg("date", (_k("k", C(Kind.DATE, "date")),), lambda i: (_D0 + timedelta(days=i),)),
    _pg("ts", (_k("k", C(Kind.TIMESTAMP, "timestamp without time zone", precision=6)),),
        lambda i: (_T0 + timedelta(seconds=i),)),
    _pg("comp", (_k("a", C(Kind.INT64, "bigint")), _k("b", C(Kind.STRING, "text"))),
        lambda i: (i % 3, f"b{i}")),
    _my("int", (_k("k", C(Kind.INT32, "int")),), lambda i: (i,)),
    _my("big", (_k("k", C(Kind.INT64, "bigint")),), lambda i: (2**40 + i,)),
    _my("vc", (_k("k", C(Kind.STRING, "varchar(40)", length=40)),), lambda i: (f"k{i}",)),
    _my("uuid", (_k("k", C(Kind.UUID, "uuid")),), lambda i: (_MY_UUIDS[i],)),
    _my("num", (_k("k", C(Kind.DECIMAL, "decimal(12,3)", precision=12, scale=3)),),
        lambda i: (Decimal(i) + Decimal("0.125"),)),
    _my("date", (_k("k", C(Kind.DATE, "date")),), lambda i: (_D0 + timedelta(days=i),)),
    _my("dt", (_k("k", C(Kind.TIMESTAMP, "datetime(6)", precision=6)),),
        lambda i: (_T0 + timedelta(seconds=i),)),
    _my("tm", (_k("k", C(Kind.TIME, "time", precision=0)),), lambda i: (timedelta(hours=-838 + i),)),
    _my("comp", (_k("a", C(Kind.INT32, "int")), _k("b", C(Kind.STRING, "varchar(20)", length=20))),
        lambda i: (i % 3, f"b{i}")),
)


def _row(spec: Spec, i: int, gen: int) -> Row:
    row = dict(zip((c.name for c in spec.key), spec.key_of(i), strict=True))
    if spec.connector == "postgresql":
        tm = timedelta(hours=i % 24, microseconds=gen)  # PostgreSQL time: 00:00..24:00
    else:
        tm = timedelta(hours=-838 + 70 * (i % 24), seconds=-59 * gen)  # MySQL TIME: a duration
    uuids = _UUIDS if spec.connector == "postgresql" else _MY_UUIDS
    row.update(val=f"v{i}.{gen} " + "x" * (i % 5), vc="é" * (i % 300), u=uuids[(i * 7 + gen) % 500],
               tm=tm, n=Decimal(f"{gen}.{i}"))
    return row


class Workload:
    """Events for every spec's table, and the rows its replica table must hold."""

    def __init__(self, base: str) -> None:
        self.tables = {spec.suffix: f"{base}_{spec.suffix}" for spec in SPECS}
        self.factories = {spec.suffix: EventFactory(spec.schema(self.tables[spec.suffix]),
                                                    connector=spec.connector) for spec in SPECS}
        self.rows: dict[str, dict[int, Row]] = {spec.suffix: {} for spec in SPECS}
        self.gen = 0

    def topic(self, spec: Spec) -> str:
        return f"src.{spec.suffix}"

    def round(self, rng: random.Random) -> dict[str, list[Any]]:
        """One round of changes per table: inserts, updates, key changes, deletes."""
        self.gen += 1
        out: dict[str, list[Any]] = {}
        for spec in SPECS:
            f, rows, events = self.factories[spec.suffix], self.rows[spec.suffix], []
            free = [i for i in range(40) if i not in rows]
            for i in rng.sample(free, min(8, len(free))):
                rows[i] = _row(spec, i, self.gen)
                events.append(f.event(Op.CREATE, after=rows[i]))
            for i in rng.sample(sorted(rows), 3):
                before, rows[i] = rows[i], _row(spec, i, self.gen)
                events.append(f.event(Op.UPDATE, before=before, after=rows[i]))
            free = [i for i in range(40) if i not in rows]
            old, new = rng.choice(sorted(rows)), rng.choice(free)
            rows[new] = _row(spec, new, self.gen)
            events.append(f.event(Op.UPDATE, before=rows.pop(old), after=rows[new]))
            for i in rng.sample(sorted(rows), 2):
                events.append(f.event(Op.DELETE, before=rows.pop(i)))
            out[spec.suffix] = events
        return out


def _replica_rows(h: ApplierHarness, table: str, spec: Spec) -> set[tuple[str | None, ...]]:
    """The replica table's rows as ``cdc verify`` reads and normalises them."""
    cols = spec.key + spec.values
    norms = [normalizer(c.type.kind) for c in cols]
    reader = h.dialect.open_reader(h.config.target)
    try:
        name = TableName(h.dialect.default_schema(h.config), table)
        return {tuple(n(v) for n, v in zip(norms, r, strict=True))
                for r in reader.scan(name, [c.name for c in cols])}
    finally:
        reader.close()


def _model_rows(rows: dict[int, Row], spec: Spec) -> set[tuple[str | None, ...]]:
    cols = spec.key + spec.values
    norms = [normalizer(c.type.kind) for c in cols]
    return {tuple(n(row[c.name]) for n, c in zip(norms, cols, strict=True)) for row in rows.values()}


def _ddl_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("replica DDL:")
            or ("->" in r.getMessage() and "to hold" in r.getMessage())]


class Sink:
    """One sink instance (a new session, schemas and checkpoints read from the replica)."""

    def __init__(self, kind: str, dsn: str, registry: RegistryClient, name: str, w: Workload,
                 offsets: dict[tuple[str, int], int], **extra: Any) -> None:
        self.h = ApplierHarness(kind, dsn, registry, name, [w.topic(s) for s in SPECS],
                                **extra)
        self.h.offsets = offsets  # the topics' offsets go on where the last instance stopped
        self.w = w

    def apply(self, events: dict[str, list[Any]]) -> None:
        for spec in SPECS:
            res = self.h.apply(events[spec.suffix], topic=self.w.topic(spec))
            assert res.failure is None, res.failure
            assert res.dead_letters == 0

    def check(self) -> None:
        for spec in SPECS:
            table = self.w.tables[spec.suffix]
            assert _replica_rows(self.h, table, spec) == _model_rows(
                self.w.rows[spec.suffix], spec), table


@pytest.fixture()
def workload(replica: tuple[str, str], registry: RegistryClient, unique_name: str) -> Iterator[Workload]:
    kind, dsn = replica
    w = Workload(unique_name[:20].rstrip("_") + "_" + kind[:2])
    h = ApplierHarness(kind, dsn, registry, sink_name(f"clean_{unique_name}"), ["x"])
    drop_tables(h.session, *w.tables.values())
    yield w
    drop_tables(h.session, *w.tables.values())
    h.close()


def test_restarts_over_existing_tables_of_every_key_type_plan_no_ddl(
        replica: tuple[str, str], registry: RegistryClient, workload: Workload, unique_name: str,
        caplog: pytest.LogCaptureFixture) -> None:
    kind, dsn = replica
    rng = random.Random(unique_name)
    name = sink_name(f"r_{unique_name}_{kind}")
    offsets: dict[tuple[str, int], int] = {}
    first = Sink(kind, dsn, registry, name, workload, offsets)
    try:
        first.apply(workload.round(rng))
        first.check()
    finally:
        first.h.close()
    described = {}
    for restart in (1, 2):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            sink = Sink(kind, dsn, registry, name, workload, offsets)
            caplog.clear()  # (the checkpoint table's CREATE .. IF NOT EXISTS)
            try:
                sink.apply(workload.round(rng))
                sink.check()
                for spec in SPECS:
                    desc = sink.h.session.describe(TableName(None, workload.tables[spec.suffix]))
                    assert desc is not None
                    types = {c.name: c.type_text for c in desc.columns}
                    assert described.setdefault(spec.suffix, types) == types
            finally:
                sink.h.close()
        assert _ddl_lines(caplog) == [], f"restart {restart} ran DDL"


def test_a_uuid_or_time_column_made_before_is_widened_once(
        replica: tuple[str, str], registry: RegistryClient, unique_name: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """Replica tables made before uuid became char(36) (MariaDB) and TIME interval
    (PostgreSQL): one widening with a log line, then every value fits."""
    kind, dsn = replica
    table = unique_name[:40]
    pg = Spec("p", "postgresql", (_k("k", C(Kind.UUID, "uuid")),), lambda i: (_UUIDS[i],), _PG_VALUES)
    my = Spec("m", "mariadb", (_k("k", C(Kind.TIME, "time", precision=0)),),
              lambda i: (timedelta(hours=-838 + i),), _MY_VALUES)
    spec = pg if kind == "mysql" else my
    h = ApplierHarness(kind, dsn, registry, sink_name(f"w_{unique_name}"), ["src.t"])
    t = h.dialect.table_sql(TableName(None, table))
    # (what the sink created before this change)
    old = (f"CREATE TABLE {t} (k uuid PRIMARY KEY, val longtext, vc text, u uuid, tm time(6), "
           "n decimal(65,30))" if kind == "mysql" else
           f"CREATE TABLE {t} (k time PRIMARY KEY, val varchar(65535), vc varchar(300), u uuid, "
           "tm time, n numeric(20,4))")
    try:
        drop_tables(h.session, table)
        h.session.execute_ddl([old])
        f = EventFactory(spec.schema(table), connector=spec.connector)
        rows = {i: _row(spec, i, 1) for i in range(30)}
        if kind == "mysql":
            rows[0]["u"] = _UUIDS[0]  # a value MariaDB's uuid type refuses
        with caplog.at_level(logging.INFO):
            res = h.apply([f.event(Op.CREATE, after=r) for r in rows.values()], topic="src.t")
        assert res.failure is None and res.dead_letters == 0 and res.applied == 30
        widened = [r.getMessage() for r in caplog.records if "to hold" in r.getMessage()]
        want = ["char(36)"] * 2 if kind == "mysql" else ["interval"] * 2
        assert [m.split(" -> ")[1].split(" ")[0] for m in widened] == want, widened
        assert _replica_rows(h, table, spec) == _model_rows(rows, spec)
    finally:
        drop_tables(h.session, table)
        h.close()


def test_a_table_made_by_hand_with_compatible_types_is_kept(
        replica: tuple[str, str], registry: RegistryClient, unique_name: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """Shorter varchar key, int for integer, wider decimal, char(36) uuid, datetime:
    the sink widens only what the replica accepts, then plans nothing."""
    kind, dsn = replica
    table = unique_name[:40]
    spec = Spec("p", "postgresql", (_k("k", C(Kind.STRING, "text")),), lambda i: (f"hand key {i}",),
                (Column("i", C(Kind.INT32, "integer")), Column("u", C(Kind.UUID, "uuid")),
                 Column("n", C(Kind.DECIMAL, "numeric(10,2)", precision=10, scale=2)),
                 Column("val", C(Kind.STRING, "character varying(20)", length=20))))
    ddl = ("(k varchar(100) NOT NULL PRIMARY KEY, i bigint, u char(36), n decimal(30,10), "
           "val varchar(50))")
    name = sink_name(f"h_{unique_name}")
    try:
        for restart in range(3):
            h = ApplierHarness(kind, dsn, registry, name, ["src.h"])
            if restart == 0:
                drop_tables(h.session, table)
                h.session.execute_ddl([f"CREATE TABLE {h.dialect.table_sql(TableName(None, table))} "
                                       + ddl])
            h.offsets = {("src.h", 0): 10 * restart}
            f = EventFactory(spec.schema(table), connector=spec.connector, lsn=1000 + 1000 * restart)
            rows = [{"k": f"hand key {restart}-{i}", "i": i, "u": _UUIDS[i], "n": Decimal("1.25"),
                     "val": "v" * 20} for i in range(5)]
            caplog.clear()
            with caplog.at_level(logging.INFO):
                res = h.apply([f.event(Op.CREATE, after=r) for r in rows], topic="src.h")
            assert res.failure is None and res.applied == 5
            if restart:
                assert _ddl_lines(caplog) == []
            desc = h.session.describe(TableName(None, table))
            h.close()
            assert desc is not None
            types = {c.name: c.type_text for c in desc.columns}
            assert types["k"] == "varchar(255)" if kind == "mysql" else types["k"] == "text"
            assert types["u"] == "char(36)" if kind == "mysql" else "character(36)" in types["u"]
            assert "30,10" in types["n"] and "bigint" in types["i"]
    finally:
        h = ApplierHarness(kind, dsn, registry, name, ["src.h"])
        drop_tables(h.session, table)
        h.close()


def test_a_ddl_the_replica_refuses_is_one_clear_error(
        replica: tuple[str, str], registry: RegistryClient, unique_name: str) -> None:
    """A hand-made table whose column the sink must widen but cannot (MariaDB: a
    two-column index on it; PostgreSQL: a view over it): DdlRefused names it all."""
    kind, dsn = replica
    table = unique_name[:40]
    name = sink_name(f"x_{unique_name}")
    h = ApplierHarness(kind, dsn, registry, name, ["src.x"])
    t = h.dialect.table_sql(TableName(None, table))
    view = h.dialect.table_sql(TableName(None, table[:30] + "_v"))
    try:
        h.session.execute_ddl([f"DROP VIEW IF EXISTS {view}"])
        drop_tables(h.session, table)
        if kind == "mysql":
            h.session.execute_ddl([f"CREATE TABLE {t} (id int PRIMARY KEY, b varchar(50), KEY (b, id))"])
        else:
            h.session.execute_ddl([f"CREATE TABLE {t} (id int PRIMARY KEY, b varchar(50))",
                                   f"CREATE VIEW {view} AS SELECT b FROM {t}"])
        spec = Spec("x", "postgresql", (_k("id", C(Kind.INT32, "integer")),), lambda i: (i,),
                    (Column("b", C(Kind.STRING, "text")),))
        f = EventFactory(spec.schema(table))
        with pytest.raises(DdlRefused) as caught:
            h.apply([f.event(Op.CREATE, after={"id": 1, "b": "x" * 60})], topic="src.x")
        e = caught.value
        text = e.one_line()
        assert "\n" not in text
        assert f"sink {name}" in text and table in text and "column 'b'" in text
        assert e.column == "b" and "ALTER TABLE" in e.statement and e.statement in text
        assert e.hint is not None and "auto_evolve" in e.hint
    finally:
        h.session.rollback()
        h.session.execute_ddl([f"DROP VIEW IF EXISTS {view}"])
        drop_tables(h.session, table)
        h.close()


@pytest.mark.parametrize("command", ["sink", "run"])
def test_sink_command_stops_with_one_line_and_exit_78_on_a_refused_ddl(
        kafka_bootstrap: str, schema_registry_url: str, mysql_replica_url: str,
        registry: RegistryClient, unique_name: str, tmp_path: Path, command: str) -> None:
    """``cdc sink`` (and ``cdc run`` supervising it) over a table whose widening
    MariaDB refuses: no traceback, one ERROR line naming sink, table, column,
    statement and hint; exit status 78 (EXIT_NEEDS_OPERATOR), and ``cdc run``
    does not restart it in a loop."""
    table = unique_name[:40]
    topic = f"src_{table}"
    ensure_topic(kafka_bootstrap, topic, 1)
    config = tmp_path / "cdc.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_bootstrap, "consumer": {"session_timeout_ms": 6000}},
        "schema_registry": {"url": schema_registry_url},
        "sinks": [{"name": "rep_my", "kind": "mysql", "topics": [topic],
                   "target": {"dsn": mysql_replica_url}, "consumer_group": f"g_{unique_name}"}],
        "metrics": {"enabled": False},
    }))
    h = ApplierHarness("mysql", mysql_replica_url, registry, sink_name(f"c_{unique_name}"), [topic])
    t = h.dialect.table_sql(TableName(None, table))
    try:
        drop_tables(h.session, table)
        h.session.execute_ddl([f"CREATE TABLE {t} (id int PRIMARY KEY, b varchar(50), KEY (b, id))"])
        spec = Spec("c", "postgresql", (_k("id", C(Kind.INT32, "integer")),), lambda i: (i,),
                    (Column("b", C(Kind.STRING, "text")),))
        f = EventFactory(spec.schema(table))
        produce(kafka_bootstrap, AvroSerde(registry), [f.event(Op.CREATE, after={"id": 1, "b": "x"})],
                1, topic=topic)
        args = (["-m", "tests.integration.sink.cli_entry", "sink", str(config)] if command == "sink"
                else ["-m", "cdc.cli", "run", str(config), "--only", "rep_my"])
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == EXIT_NEEDS_OPERATOR, out + err
        assert "Traceback" not in err + out
        stopped = [line for line in (err + out).splitlines() if "stopped:" in line]
        assert len(stopped) == 1, err
        line = stopped[0]
        for part in ("sink rep_my", table, "column 'b'", "MODIFY COLUMN `b` longtext", "hint:",
                     "auto_evolve", "1071"):
            assert part in line, (part, line)
        assert "retrying" not in err
        assert err.count("replica refused") == 1  # (cdc run: one attempt, no restart loop)
    finally:
        drop_tables(h.session, table)
        h.close()


@pytest.mark.parametrize("source", ["postgresql", "mariadb"])
def test_restart_over_a_table_of_every_type_plans_no_ddl(
        replica: tuple[str, str], registry: RegistryClient, unique_name: str, source: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """The type zoo of test_types (every kind both sources emit, with NULLs): made by
    one sink instance, then two restarts that run no DDL and still apply."""
    kind, dsn = replica
    table = unique_name[:40]
    build = pg_source_table if source == "postgresql" else my_source_table
    _, schema, rows, _ = build(table)
    name = sink_name(f"z_{unique_name}")
    f = EventFactory(schema, connector=source)
    offsets: dict[tuple[str, int], int] = {}
    try:
        for restart in range(3):
            h = ApplierHarness(kind, dsn, registry, name, ["src.z"])
            h.offsets = offsets
            if restart == 0:
                drop_tables(h.session, table)
                events = [f.event(Op.READ, after=r) for r in rows]
            else:
                events = [f.event(Op.UPDATE, before=rows[1], after={**rows[0], "id": rows[1]["id"]}),
                          f.event(Op.CREATE, after={**rows[0], "id": restart + 10})]
            caplog.clear()
            try:
                with caplog.at_level(logging.INFO):
                    res = h.apply(events, topic="src.z")
                assert res.failure is None and res.dead_letters == 0 and res.applied == len(events)
                if restart:
                    assert _ddl_lines(caplog) == [], f"restart {restart} ran DDL"
                    assert h.session.count(TableName(h.dialect.default_schema(h.config), table)) \
                        == 2 + restart
            finally:
                h.close()
    finally:
        h = ApplierHarness(kind, dsn, registry, name, ["src.z"])
        drop_tables(h.session, table)
        h.close()
