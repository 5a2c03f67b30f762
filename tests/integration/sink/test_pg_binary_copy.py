"""The PostgreSQL replica's binary COPY and its plain COPY of new rows, on the real replica.

A binary COPY must store exactly what the text COPY stores, for every column
type that goes binary (connectors/postgres/sink/binary.py), and a value its
binary form refuses must end as the text COPY ends it (stored, or refused as a
data error). ``insert_new`` (source inserts above the checkpoint) must equal an
upsert even when the replica has some of the keys already.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from cdc.events import Op
from cdc.serde import RegistryClient
from cdc.spi import InsertsNewRows, ReplicaTable, TableName
from connectors.postgres.sink.binary import BINARY_TYPES
from connectors.postgres.sink.session import COPY_THRESHOLD, PostgresSession
from tests.integration.sink.helpers import (
    ApplierHarness,
    EventFactory,
    drop_tables,
    items_schema,
    read_rows,
)

pytestmark = pytest.mark.integration

UTC = dt.UTC
_COLUMNS: list[tuple[str, str, list[Any]]] = [
    ("c_int2", "smallint", [0, -32768, 32767]),
    ("c_int4", "integer", [-(2**31), 2**31 - 1, 7]),
    ("c_int8", "bigint", [-(2**63), 2**63 - 1, 0]),
    ("c_float4", "real", [1.5, -0.0, float("inf"), float("nan"), 3.4e38]),
    ("c_float8", "double precision", [1e308, -0.0, float("nan"), float("-inf"), 5e-324, 0.1]),
    ("c_num", "numeric", [Decimal("1e-30"), Decimal("-123456789012345678901234567890.123"),
                          Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("-0.00"),
                          12345678901234567890]),
    ("c_num2", "numeric(10,2)", [Decimal("1.005"), Decimal("-99999999.99"), Decimal("0"), 42]),
    ("c_bool", "boolean", [True, False]),
    ("c_text", "text", ["", "é ☃ \U0001f600", "a\tb\nc\\d\r", "x" * 3000]),
    ("c_vc", "character varying(5)", ["abcde", "", "ü"]),
    ("c_date", "date", [dt.date.min, dt.date.max, dt.date(2000, 2, 29)]),
    ("c_ts", "timestamp without time zone", [dt.datetime.min, dt.datetime.max,
                                             dt.datetime(2024, 1, 1, 12, 0, 0, 123456)]),
    ("c_ts3", "timestamp(3) without time zone", [dt.datetime(2024, 1, 1, 0, 0, 0, 123456),
                                                 dt.datetime(1999, 12, 31, 23, 59, 59, 999999)]),
    ("c_tstz", "timestamp with time zone", [
        dt.datetime(2024, 1, 1, tzinfo=UTC),
        dt.datetime(2024, 6, 1, 5, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        dt.datetime(1901, 1, 1, tzinfo=dt.timezone(-dt.timedelta(hours=8)))]),
    ("c_bytea", "bytea", [b"", b"\x00\xff\\x", bytes(range(256))]),
    ("c_uuid", "uuid", [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1),
                        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")]),
]
_N = COPY_THRESHOLD + 200  # COPY, not multi-row INSERT


def _rows() -> list[tuple[Any, ...]]:
    out = []
    for i in range(_N):
        row: list[Any] = [i]
        for j, (_, _, values) in enumerate(_COLUMNS):
            k = (i + j) % (len(values) + 1)
            row.append(None if k == len(values) else values[k])
        out.append(tuple(row))
    return out


@pytest.fixture()
def session(pg_replica_dsn: str) -> Any:
    from tests.integration.sink.helpers import dialect_for, sink_config

    dialect = dialect_for("postgres")
    s = dialect.connect(sink_config("postgres", pg_replica_dsn, "binary_copy", ["t"]))
    yield s
    s.close()


def _table(session: PostgresSession, name: str, columns: list[tuple[str, str, Any]]) -> ReplicaTable:
    cols = ", ".join(f"{c} {t}" for c, t, _ in columns)
    drop_tables(session, name)
    session.execute_ddl([f"CREATE TABLE {name} (id bigint PRIMARY KEY, {cols})"])
    table = session.describe(TableName(None, name))
    assert table is not None
    return table


def _text(session: PostgresSession, name: str) -> list[tuple[Any, ...]]:
    rows = session.query(f"SELECT t::text FROM {name} t ORDER BY id")
    session.rollback()
    return rows


def _write(session: PostgresSession, table: ReplicaTable, columns: tuple[str, ...],
           rows: list[tuple[Any, ...]], *, binary: bool, new: bool = False) -> None:
    if not binary:
        session._binary[(table.name, columns)] = None
    session.begin()
    try:
        (session.insert_new if new else session.upsert)(table, columns, rows)
        session.commit()
    except BaseException:
        session.rollback()
        raise


def test_every_binary_type_is_tested_here() -> None:
    tested = {"smallint": "int2", "integer": "int4", "bigint": "int8", "real": "float4",
              "double precision": "float8", "numeric": "numeric", "boolean": "bool",
              "text": "text", "character varying": "varchar", "date": "date",
              "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz",
              "bytea": "bytea", "uuid": "uuid"}
    assert set(tested.values()) == BINARY_TYPES
    assert {t.split("(")[0] for _, t, _ in _COLUMNS} >= set(tested)


@pytest.mark.parametrize("new", [False, True], ids=["upsert", "insert_new"])
def test_binary_copy_stores_what_text_copy_stores(session: PostgresSession, unique_name: str,
                                                  new: bool) -> None:
    a, b = f"{unique_name}_bin", f"{unique_name}_txt"
    ta, tb = _table(session, a, _COLUMNS), _table(session, b, _COLUMNS)
    columns = ("id", *(c for c, _, _ in _COLUMNS))
    rows = _rows()
    try:
        _write(session, ta, columns, rows, binary=True, new=new)
        _write(session, tb, columns, rows, binary=False, new=new)
        assert session._binary[(ta.name, columns)] is not None  # it went binary
        assert not session._refusals
        assert _text(session, a) == _text(session, b)
        assert len(_text(session, a)) == _N
        # Again over the same keys: the update path (staging table) too.
        _write(session, ta, columns, rows[::-1], binary=True)
        _write(session, tb, columns, rows[::-1], binary=False)
        assert _text(session, a) == _text(session, b)
    finally:
        drop_tables(session, a, b)


@pytest.mark.parametrize(("type_", "value", "stored"), [
    ("boolean", "f", "false"),           # psycopg's binary dumper takes any truthy object
    ("boolean", 0, "false"),
    ("integer", True, None),          # text COPY refuses 't' as an integer too
    ("integer", 2**40, None),         # psycopg's binary dumper would keep the low 32 bits
    ("smallint", 70000, None),
    ("real", 1e300, None),            # psycopg's would store Infinity
    ("bigint", 2**70, None),
    ("timestamp without time zone", "infinity", "infinity"),
    ("date", "-infinity", "-infinity"),
    ("numeric", "1.5", "1.5"),
    ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
])
def test_a_value_the_binary_form_refuses_ends_as_in_text(
        session: PostgresSession, unique_name: str, type_: str, value: Any, stored: str | None) -> None:
    table = _table(session, unique_name, [("v", type_, None)])
    rows = [(i, value if i == _N // 2 else None) for i in range(_N)]
    try:
        if stored is None:
            with pytest.raises(psycopg.DataError):
                _write(session, table, ("id", "v"), rows, binary=True)
            assert _text(session, unique_name) == []
        else:
            _write(session, table, ("id", "v"), rows, binary=True)
            got = session.query(f"SELECT v::text FROM {unique_name} WHERE v IS NOT NULL")
            session.rollback()
            assert got == [(stored,)]
            assert session._refusals[(table.name, ("id", "v"))] == 1
    finally:
        drop_tables(session, unique_name)


def test_insert_new_over_existing_keys_equals_upsert(session: PostgresSession,
                                                     unique_name: str) -> None:
    assert isinstance(session, InsertsNewRows)
    table = _table(session, unique_name, [("v", "integer", None), ("w", "text", None)])
    try:
        _write(session, table, ("id", "v", "w"), [(i, -1, "old") for i in range(0, _N, 7)],
               binary=True)
        _write(session, table, ("id", "v"), [(i, i) for i in range(_N)], binary=True, new=True)
        got = session.query(f"SELECT id, v, w FROM {unique_name} ORDER BY id")
        session.rollback()
        assert got == [(i, i, "old" if i % 7 == 0 else None) for i in range(_N)]
    finally:
        drop_tables(session, unique_name)


@pytest.mark.parametrize("runs", [False, True])
def test_applier_inserts_new_rows_and_survives_a_diverged_replica(
        pg_replica_dsn: str, registry: RegistryClient, unique_name: str, runs: bool) -> None:
    """Batches of source inserts go through insert_new (runs: insert_run, from the
    record bytes); keys the replica has already (written by hand: it diverged) are
    upserted, the rest inserted, nothing lost."""
    h = ApplierHarness("postgres", pg_replica_dsn, registry, unique_name,
                       [f"src.public.{unique_name}"])
    h.applier.runs = runs
    f = EventFactory(items_schema(unique_name))
    calls: list[int] = []
    run_calls: list[int] = []
    real = h.session.insert_new  # type: ignore[attr-defined]
    real_run = h.session.insert_run  # type: ignore[attr-defined]

    def spy(table: ReplicaTable, columns: Any, rows: Any) -> None:
        calls.append(len(rows))
        real(table, columns, rows)

    def run_spy(table: ReplicaTable, columns: Any, payload: bytes, rows: int) -> None:
        run_calls.append(rows)
        real_run(table, columns, payload, rows)

    h.session.insert_new = spy  # type: ignore[attr-defined]
    h.session.insert_run = run_spy  # type: ignore[attr-defined]
    drop_tables(h.session, unique_name)
    try:
        def row(i: int) -> dict[str, Any]:
            return {"id": i, "v": i * 2, "label": f"l{i}", "big": "b" * (i % 7)}

        n = COPY_THRESHOLD + 100
        h.apply([f.event(Op.CREATE, after=row(i)) for i in range(n)])
        # (runs: the first record goes the per-record path, which keeps a key sample)
        assert (calls, run_calls) == (([1], [n - 1]) if runs else ([n], []))
        h.session.begin()
        h.session.execute(f"INSERT INTO {unique_name} (id, v) VALUES ({n + 5}, -5)")
        h.session.commit()
        h.apply([f.event(Op.CREATE, after=row(i)) for i in range(n, 2 * n)])
        assert (calls, run_calls) == (([1], [n - 1, n]) if runs else ([n, n], []))
        got = read_rows(h.session, unique_name)
        assert got == {i: row(i) for i in range(2 * n)}
        # A batch that also updates is not all new: the upsert path (runs: the run of
        # new rows first, then the update).
        h.apply([f.event(Op.CREATE, after=row(i)) for i in range(2 * n, 3 * n)]
                + [f.event(Op.UPDATE, after={**row(0), "v": 99})])
        assert (calls, run_calls) == (([1], [n - 1, n, n]) if runs else ([n, n], []))
        assert read_rows(h.session, unique_name)[0]["v"] == 99
        assert len(read_rows(h.session, unique_name)) == 3 * n
    finally:
        drop_tables(h.session, unique_name)
