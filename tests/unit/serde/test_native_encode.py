"""The C encoder (cdc/serde/_cencode.c) writes exactly what the Python paths write.

Every comparison builds the same encoder twice, once with the native module
hidden, so the generated Python code and the checked path stay the reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.events import ChangeEvent, Column, ColumnType, Kind, TableSchema
from cdc.serde import encode
from cdc.serde.encode import RowEncoder, TableEncoder
from cdc.serde.envelope import build_schemas
from tests.unit.serde.strategies import change_events, every_kind_schemas, rows, table_schemas

pytestmark = pytest.mark.skipif(encode._C is None, reason="native encoder not built (make native)")

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def python_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(encode, "_C", None)
    yield


def _pair(schema: TableSchema, connector: str = "postgresql") -> tuple[TableEncoder, TableEncoder]:
    schemas = build_schemas(schema, prefix="p", connector=connector)
    native = TableEncoder(schemas)
    saved = encode._C
    encode._C = None
    try:
        python = TableEncoder(schemas)
    finally:
        encode._C = saved
    assert native.value.program is not None and python.value.program is None
    return native, python


@SETTINGS
@given(st.data())
def test_rows_encode_identically(data: st.DataObject) -> None:
    schema = data.draw(st.one_of(table_schemas(), every_kind_schemas()))
    row = data.draw(rows(schema))
    native, python = _pair(schema)
    assert native.value.encode_image(row) == python.value.encode_image(row)
    if native.key is not None and python.key is not None:
        key = {c: row[c] for c in schema.primary_key}
        assert native.key.encode(key) == python.key.encode(key)


@SETTINGS
@given(st.data())
def test_envelopes_encode_identically(data: st.DataObject) -> None:
    schema = data.draw(st.one_of(table_schemas(), every_kind_schemas()))
    events = data.draw(st.lists(change_events(schema), min_size=1, max_size=4))
    for ev in events:
        native, python = _pair(schema, ev.source.connector)
        assert native.encode_value(ev, b"\x00\x00\x00\x00\x07") == python.encode_value(
            ev, b"\x00\x00\x00\x00\x07"
        )
        assert native.encode_key(ev, b"\x00") == python.encode_key(ev, b"\x00")


def _schema(*cols: tuple[str, ColumnType, bool]) -> TableSchema:
    from cdc.events import TableId

    return TableSchema(
        TableId("db", "public", "t"),
        tuple(Column(n, t, nullable=nl) for n, t, nl in cols),
        primary_key=(cols[0][0],),
    )


EDGES: list[tuple[ColumnType, list[Any]]] = [
    (ColumnType(Kind.INT64), [0, -1, 2**63 - 1, -(2**63), 1 << 40, True]),
    (ColumnType(Kind.INT16), [-(2**15), 2**15 - 1]),
    (ColumnType(Kind.STRING), ["", "é", "🦆" * 100, "x" * 100_000]),
    (ColumnType(Kind.BYTES), [b"", b"\x00\xff" * 3000]),
    (ColumnType(Kind.FLOAT64), [0.0, -0.0, 1e308, float("inf"), float("-inf"), 5e-324]),
    (ColumnType(Kind.BOOLEAN), [True, False]),
    (ColumnType(Kind.DATE), [date(1, 1, 1), date(9999, 12, 31), date(1969, 12, 31),
                             date(1970, 1, 1), date(2000, 2, 29)]),
    (ColumnType(Kind.TIMESTAMP), [datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999),
                                  datetime(1969, 12, 31, 23, 59, 59, 1),
                                  datetime(2024, 2, 29, 12, 0, 0, 5)]),
    (ColumnType(Kind.TIMESTAMPTZ), [datetime(1, 1, 1, tzinfo=UTC),
                                    datetime(2024, 1, 1, 0, 0, 1, 120000, tzinfo=UTC),
                                    datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2))),
                                    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)]),
    (ColumnType(Kind.DECIMAL, precision=10, scale=2),
     [Decimal("0.00"), Decimal("-99999999.99"), Decimal("-0"), Decimal("1.500"), Decimal("1E+3"),
      Decimal("0.05"), Decimal("-128"), Decimal("127.99"), Decimal("1.999"), Decimal("12345678901"),
      Decimal("1.5E-7"), 7]),
    (ColumnType(Kind.DECIMAL, precision=38, scale=10),
     [Decimal("12345678.9012345678"), Decimal("123456789.0123456789"),
      Decimal("-9999999999999999999999999999.9999999999"), Decimal("0.0000000001")]),
    (ColumnType(Kind.DECIMAL, precision=5, scale=0), [Decimal("99999"), Decimal("-99999"),
                                                      Decimal("100000"), Decimal("0.0")]),
    (ColumnType(Kind.DECIMAL, precision=10, scale=2, nan=True),
     [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("3.14")]),
]


@pytest.mark.parametrize(("ct", "values"), EDGES, ids=[str(ct.kind) for ct, _ in EDGES])
def test_edge_values_encode_identically(ct: ColumnType, values: list[Any]) -> None:
    schema = _schema(("id", ColumnType(Kind.INT32), False), ("v", ct, True))
    native, python = _pair(schema)
    for i, v in enumerate([*values, None]):
        row = {"id": i, "v": v}
        outcomes = []
        for enc in (native, python):
            try:
                outcomes.append(enc.value.encode_image(row))
            except encode.SerializationError as e:
                outcomes.append(str(e))
        assert outcomes[0] == outcomes[1], v


@SETTINGS
@given(st.integers(1, 38).flatmap(lambda p: st.tuples(st.just(p), st.integers(0, p))), st.data())
def test_decimals_encode_identically(ps: tuple[int, int], data: st.DataObject) -> None:
    p, s = ps
    ct = ColumnType(Kind.DECIMAL, precision=p, scale=s)
    schema = _schema(("id", ColumnType(Kind.INT32), False), ("v", ct, True))
    native, python = _pair(schema)
    v = data.draw(st.decimals(allow_nan=False, allow_infinity=False, places=data.draw(
        st.integers(0, s + 2))) | st.decimals(allow_nan=False, allow_infinity=False))
    outcomes = []
    for enc in (native, python):
        try:
            outcomes.append(enc.value.encode_image({"id": 1, "v": v}))
        except encode.SerializationError as e:
            outcomes.append(str(e))
    assert outcomes[0] == outcomes[1], v


@pytest.mark.parametrize(
    "row",
    [
        {"id": 1},  # a missing column
        {"id": 1, "v": 2, "extra": 3},  # a column too many
        {"id": 2**31, "v": 1},  # out of the int range
        {"id": "1", "v": 1},  # not an int
        {"id": None, "v": 1},  # NOT NULL column holding None
        {"id": 1.5, "v": 1},
    ],
)
def test_unusual_rows_take_the_checked_path_with_the_same_outcome(row: dict[str, Any]) -> None:
    schema = _schema(("id", ColumnType(Kind.INT32), False), ("v", ColumnType(Kind.INT64), True))
    native, python = _pair(schema)
    outcomes = []
    for enc in (native, python):
        try:
            outcomes.append(("ok", enc.value.encode_image(row, allow_absent=True)))
        except Exception as e:
            outcomes.append((type(e).__name__, str(e)))
    assert outcomes[0] == outcomes[1]


def test_lone_surrogate_falls_back_and_is_reported_the_same() -> None:
    schema = _schema(("id", ColumnType(Kind.INT32), False), ("v", ColumnType(Kind.STRING), True))
    native, python = _pair(schema)
    for enc in (native, python):
        with pytest.raises(encode.SerializationError, match="'v'"):
            enc.value.encode_image({"id": 1, "v": "\udc80"})


def test_python_only_fixture_disables_the_program(python_only: None) -> None:
    schema = _schema(("id", ColumnType(Kind.INT32), False),)
    assert RowEncoder(build_schemas(schema, prefix="p", connector="postgresql").value_fields,
                      "t").program is None


def test_events_from_the_shared_strategy_are_not_all_slow_path() -> None:
    # Guards the benchmark's premise: a plain row goes through the C code.
    schema = _schema(("id", ColumnType(Kind.INT64), False), ("v", ColumnType(Kind.STRING), True))
    native, _ = _pair(schema)
    assert native.value.program.encode({"id": 1, "v": "a"}) == b"\x02\x02\x02a"



@pytest.mark.parametrize(
    "before",
    [{"id": 1}, {"id": 1, "b": None}, {"id": 1, "c": 2.5}, {"id": 1, "zz": 3}, {"c": 1.0}],
    ids=["key-only", "partial", "partial-notnull", "unknown-column", "no-key"],
)
def test_delete_images_lacking_columns_encode_identically(before: dict[str, Any]) -> None:
    from tests.unit.serde.strategies import pg_source

    schema = _schema(
        ("id", ColumnType(Kind.INT64), False),
        ("b", ColumnType(Kind.STRING), True),
        ("c", ColumnType(Kind.FLOAT64), False),
    )
    native, python = _pair(schema)
    ev = ChangeEvent(
        op=encode.Op.DELETE, schema=schema, key={"id": 1}, before=before, after=None,
        source=pg_source(), ts_ms=5,
    )  # fmt: skip
    outcomes = []
    for enc in (native, python):
        try:
            outcomes.append(("ok", enc.encode_value(ev)))
        except Exception as e:
            outcomes.append((type(e).__name__, str(e)))
    assert outcomes[0] == outcomes[1]


@SETTINGS
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**63 + 5), st.booleans(), st.booleans(),
       st.integers(0, 2**40), st.text(max_size=5))
def test_pg_source_blocks_encode_identically(
    lsn: int, index: int, snapshot: bool, last: bool, ts_ms: int, name: str
) -> None:
    from dataclasses import replace

    from cdc.events import TableId
    from cdc.serde import sourceblock
    from connectors.postgres import sourceblock as pg_block
    from connectors.postgres.position import Lsn, PgPosition
    from connectors.postgres.sourceblock import PgSourceWriter
    from tests.unit.serde.strategies import pg_source

    src = replace(pg_source(name or "srv", ts_ms=ts_ms),
                  position=PgPosition(Lsn(lsn), index, snapshot, last))
    table = TableId("db", "public", "t")
    native = PgSourceWriter(table)
    saved = pg_block.source_with_index
    pg_block.source_with_index = sourceblock._source_with_index  # type: ignore[misc]
    try:
        expected = PgSourceWriter(table).encode(src)
    finally:
        pg_block.source_with_index = saved  # type: ignore[misc]
    assert native.encode(src) == expected


@SETTINGS
@given(st.binary(max_size=40), st.binary(max_size=20), st.integers(-(2**63), 2**63 - 1),
       st.integers(0, 300), st.binary(max_size=20), st.binary(max_size=20))
def test_a_run_of_source_blocks_splices_each_index(
    pre: bytes, head: bytes, start: int, count: int, tail: bytes, post: bytes
) -> None:
    from cdc.serde import sourceblock

    c = encode._C
    if c is None:
        pytest.skip("cdc.serde._cencode not built")
    if start + count - 1 > 2**63 - 1:
        with pytest.raises(OverflowError):
            c.sources_with_index(pre, head, start, count, tail, post)
        return
    expected = [sourceblock._source_with_index(pre, head, start + i, tail, post)
                for i in range(count)]
    assert c.sources_with_index(pre, head, start, count, tail, post) == expected
    assert sourceblock._sources_with_index(pre, head, start, count, tail, post) == expected


def test_a_run_of_source_blocks_refuses_bad_arguments() -> None:
    from cdc.serde import sourceblock

    c = encode._C
    for run in (sourceblock._sources_with_index, *([] if c is None else [c.sources_with_index])):
        with pytest.raises(ValueError):
            run(b"", b"", 0, -1, b"", b"")
    if c is not None:
        with pytest.raises(TypeError):
            c.sources_with_index(b"", "head", 0, 1, b"", b"")
        with pytest.raises(OverflowError):
            c.sources_with_index(b"", b"", 2**63 - 1, 2, b"", b"")
        assert c.sources_with_index(b"", b"", 2**63 - 1, 1, b"", b"") == [
            sourceblock._source_with_index(b"", b"", 2**63 - 1, b"", b"")]


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 2**40), st.booleans(), st.booleans(),
                          st.sampled_from(["mysql-bin.000001", "b\"in.000002", "x.000003"]),
                          st.integers(4, 2**32), st.sampled_from([None, "0-1-5", "3-2-9"])),
                min_size=1, max_size=6))
def test_mysql_source_blocks_match_the_generic_json(
    events: list[tuple[int, bool, bool, str, int, str | None]],
) -> None:
    import json

    from cdc.events import SourceInfo, TableId
    from cdc.serde import binary
    from connectors.mysql.position import BinlogFile, GtidSet, MySqlPosition
    from connectors.mysql.sourceblock import MySqlSourceWriter

    enc = MySqlSourceWriter(TableId("db", None, "t"))
    for index, last, snapshot, file, pos, gtid in events:
        position = MySqlPosition(BinlogFile(file), pos, index=index, gtid=gtid,
                                 gtid_set=GtidSet.parse(gtid or ""), server_id=1,
                                 snapshot=snapshot, last_in_tx=last)
        src = SourceInfo(connector="mysql", name="srv", version="1", db_version="10.11",
                         position=position, ts_ms=5, tx_id=gtid, snapshot="false", origin=None)
        got = enc.encode(src)
        expected = binary.string(json.dumps(position.to_dict(), separators=(",", ":"),
                                            ensure_ascii=False))
        assert expected in got


@SETTINGS
@given(st.binary(max_size=40), st.binary(max_size=300), st.integers(-(2**63), 2**63 - 1),
       st.binary(max_size=300), st.binary(max_size=40))
def test_source_with_index_matches_its_reference(
    pre: bytes, head: bytes, index: int, tail: bytes, post: bytes
) -> None:
    from cdc.serde import sourceblock

    assert sourceblock.source_with_index is not sourceblock._source_with_index  # the C one
    got = sourceblock.source_with_index(pre, head, index, tail, post)
    assert got == sourceblock._source_with_index(pre, head, index, tail, post)
