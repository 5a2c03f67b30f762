"""PostgreSQL type table: text -> canonical values, type mapping, server parity.

Two layers, both without a server: hand-written edge cases per type family;
and offline parity with the text a real server printed (the capture
manifest: SELECT output, the pgoutput Insert of the same rows, format_type,
iso_8601 intervals). The same parity live against the stack's PostgreSQL is
tests/integration/postgres/test_pg_types.py.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc.errors import SerializationError
from cdc.events import ColumnType, Kind
from connectors.postgres import types
from connectors.postgres.source import decoder, messages
from connectors.postgres.source.messages import UNCHANGED_TOAST
from connectors.postgres.text_values import days_from_civil, interval_to_iso
from connectors.postgres.types import (
    NEG_INFINITY,
    POS_INFINITY,
    PgTypeInfo,
    StaticTypeCatalog,
    make_row_converter,
    resolve_type,
)
from tests.fixtures.pgoutput import typed_table
from tests.fixtures.pgoutput.capture import read_frames
from tests.fixtures.pgoutput.typed_table import civil_days

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pgoutput"
MANIFESTS = sorted(FIXTURES.glob("pg*.json"))


def conv(oid: int, text: str, typmod: int = -1, catalog: Any = None) -> Any:
    return resolve_type(oid, typmod, catalog).convert(text)


def numeric_typmod(p: int, s: int) -> int:
    return ((p << 16) | (s & 0x7FF)) + 4


# --- per family ---------------------------------------------------------------

CASES: list[tuple[str, int, int, str, Any]] = [
    # (id, oid, typmod, text, expected)
    ("bool-t", 16, -1, "t", True),
    ("bool-f", 16, -1, "f", False),
    ("int2-min", 21, -1, "-32768", -32768),
    ("int4-max", 23, -1, "2147483647", 2147483647),
    ("int8-min", 20, -1, "-9223372036854775808", -(2**63)),
    ("oid-max", 26, -1, "4294967295", 2**32 - 1),
    ("xid8-max", 5069, -1, "18446744073709551615", 2**64 - 1),
    ("float4-inf", 700, -1, "Infinity", math.inf),
    ("float4-ninf", 700, -1, "-Infinity", -math.inf),
    ("float8-tiny", 701, -1, "4.9e-324", 5e-324),
    ("float8-negzero", 701, -1, "-0", -0.0),
    ("numeric-big", 1700, -1, "123456789012345678901234567890.000000000000000000001",
     Decimal("123456789012345678901234567890.000000000000000000001")),
    ("numeric-inf", 1700, -1, "Infinity", Decimal("Infinity")),
    ("numeric-ninf", 1700, -1, "-Infinity", Decimal("-Infinity")),
    ("numeric-scale", 1700, numeric_typmod(10, 2), "-0.50", Decimal("-0.50")),
    ("numeric-negscale", 1700, numeric_typmod(5, -3), "12345000", Decimal("12345000")),
    ("money-c", 790, -1, "$1,234.56", Decimal("1234.56")),
    ("money-neg", 790, -1, "-$0.01", Decimal("-0.01")),
    ("money-paren", 790, -1, "($5.00)", Decimal("-5.00")),
    ("money-de", 790, -1, "1.234.567,89 €", Decimal("1234567.89")),
    ("money-ch", 790, -1, "CHF 1'234.50", Decimal("1234.50")),
    ("money-max", 790, -1, "$92,233,720,368,547,758.07", Decimal("92233720368547758.07")),
    ("text-empty", 25, -1, "", ""),
    ("text-unicode", 25, -1, "ü☃𝄞\n\t\\", "ü☃𝄞\n\t\\"),
    ("varchar", 1043, 14, "abc", "abc"),
    ("bpchar-padded", 1042, 7, "ab ", "ab "),
    ("char-1", 18, -1, "x", "x"),
    ("name", 19, -1, "Ünï", "Ünï"),
    ("bytea-hex", 17, -1, "\\x00ff7f", b"\x00\xff\x7f"),
    ("bytea-empty", 17, -1, "\\x", b""),
    ("bytea-escape", 17, -1, "a\\\\b\\000\\377", b"a\\b\x00\xff"),
    ("date", 1082, -1, "2024-02-29", date(2024, 2, 29)),
    ("date-min-py", 1082, -1, "0001-01-01", date(1, 1, 1)),
    ("date-bc", 1082, -1, "0001-12-31 BC", civil_days(0, 12, 31)),
    ("date-4713bc", 1082, -1, "4714-11-24 BC", -2440588),
    ("date-future", 1082, -1, "5874897-12-31", 2147483493 - 2440588),  # PG max: JDN
    ("date-10000", 1082, -1, "10000-01-01", 2932897),
    ("date-inf", 1082, -1, "infinity", POS_INFINITY),
    ("date-ninf", 1082, -1, "-infinity", NEG_INFINITY),
    ("time", 1083, -1, "13:14:15.000016", timedelta(hours=13, minutes=14, seconds=15, microseconds=16)),
    ("time-midnight-end", 1083, -1, "24:00:00", timedelta(days=1)),
    ("time-frac1", 1083, 1, "00:00:00.5", timedelta(microseconds=500000)),
    ("timetz", 1266, -1, "13:14:15.5+05:30", "13:14:15.5+05:30"),
    ("timetz-utc", 1266, -1, "13:14:15+00", "13:14:15+00:00"),
    ("timetz-sec-offset", 1266, -1, "13:14:15-00:53:28", "13:14:15-00:53:28"),
    ("ts", 1114, -1, "2024-02-29 23:59:59.999999", datetime(2024, 2, 29, 23, 59, 59, 999999)),
    ("ts-frac", 1114, -1, "2024-01-01 00:00:00.1", datetime(2024, 1, 1, 0, 0, 0, 100000)),
    ("ts-bc", 1114, -1, "0001-12-31 23:59:59 BC", -62135596801 * 1_000_000),
    ("ts-max", 1114, -1, "294276-12-31 23:59:59.999999", 9224318015999999999),
    ("ts-inf", 1114, -1, "infinity", POS_INFINITY),
    ("ts-ninf", 1114, -1, "-infinity", NEG_INFINITY),
    ("tstz-utc", 1184, -1, "2024-02-29 12:00:00+00", datetime(2024, 2, 29, 12, tzinfo=UTC)),
    ("tstz-offset", 1184, -1, "2024-03-01 01:30:00.25+05:30",
     datetime(2024, 2, 29, 20, 0, 0, 250000, tzinfo=UTC)),
    ("tstz-lmt", 1184, -1, "1800-01-01 00:00:00-00:53:28",
     datetime(1800, 1, 1, 0, 53, 28, tzinfo=UTC)),
    ("tstz-overflow", 1184, -1, "9999-12-31 23:00:00-05",
     253402315200 * 1_000_000),  # 10000-01-01 04:00 UTC
    ("tstz-min-in-range", 1184, -1, "0001-01-01 00:00:00+00", datetime(1, 1, 1, tzinfo=UTC)),
    ("tstz-underflow", 1184, -1, "0001-01-01 00:30:00+01", -62135598600 * 1_000_000),
    ("tstz-bc", 1184, -1, "0044-03-15 12:00:00+00 BC",
     (civil_days(-43, 3, 15) * 86400 + 12 * 3600) * 1_000_000),
    ("tstz-inf", 1184, -1, "-infinity", NEG_INFINITY),
    ("interval-zero", 1186, -1, "00:00:00", "PT0S"),
    ("interval-full", 1186, -1, "1 year 2 mons 3 days 04:05:06.789", "P1Y2M3DT4H5M6.789S"),
    ("interval-neg", 1186, -1, "-1 years -2 mons +3 days -04:05:06", "P-1Y-2M3DT-4H-5M-6S"),
    ("interval-frac-neg", 1186, -1, "-00:00:00.000001", "PT-0.000001S"),
    ("interval-hours", 1186, -1, "1000000:00:00", "PT1000000H"),
    ("interval-day", 1186, -1, "1 day", "P1D"),
    ("interval-mixed", 1186, -1, "1 mon -1 days +00:01:00", "P1M-1DT1M"),
    ("interval-inf", 1186, -1, "infinity", "infinity"),
    ("interval-iso-passthrough", 1186, -1, "P1Y", "P1Y"),
    ("uuid", 2950, -1, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
     uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    ("json", 114, -1, '{"a" : [1, 2.50]}', '{"a" : [1, 2.50]}'),
    ("jsonb", 3802, -1, '{"a": [1, 2.50]}', '{"a": [1, 2.50]}'),
    ("xml", 142, -1, "<a>é</a>", "<a>é</a>"),
    ("inet", 869, -1, "::ffff:1.2.3.4/128", "::ffff:1.2.3.4/128"),
    ("cidr", 650, -1, "10.0.0.0/8", "10.0.0.0/8"),
    ("macaddr", 829, -1, "08:00:2b:01:02:03", "08:00:2b:01:02:03"),
    ("macaddr8", 774, -1, "08:00:2b:01:02:03:04:05", "08:00:2b:01:02:03:04:05"),
    ("bit", 1560, 5, "10110", b"\x16"),
    ("bit-9", 1560, 9, "100000001", b"\x01\x01"),
    ("bit-zeros", 1560, 8, "00000000", b"\x00"),
    ("varbit", 1562, 8, "0010", "0010"),
    ("point", 600, -1, "(1,2)", "(1,2)"),
    ("box", 603, -1, "(1,1),(0,0)", "(1,1),(0,0)"),
    ("polygon", 604, -1, "((0,0),(1,1))", "((0,0),(1,1))"),
    ("circle", 718, -1, "<(1,2),3>", "<(1,2),3>"),
    ("tsvector", 3614, -1, "'a' 'fat'", "'a' 'fat'"),
    ("int4range", 3904, -1, "[1,10)", "[1,10)"),
    ("nummultirange", 4532, -1, "{[1,2),[3,4)}", "{[1,2),[3,4)}"),
    ("pg_lsn", 3220, -1, "16/B374D848", "16/B374D848"),
    ("regclass", 2205, -1, "pg_class", "pg_class"),
    # arrays
    ("arr-empty", 1007, -1, "{}", []),
    ("arr-int", 1007, -1, "{1,-2,NULL}", [1, -2, None]),
    ("arr-2d", 1007, -1, "{{1,2},{3,NULL}}", [[1, 2], [3, None]]),
    ("arr-3d", 1007, -1, "{{{1}},{{2}}}", [[[1]], [[2]]]),
    ("arr-text-quoted", 1009, -1, '{"a b","q\\"x",NULL,"NULL","","back\\\\slash","{}","ü,ü"}',
     ["a b", 'q"x', None, "NULL", "", "back\\slash", "{}", "ü,ü"]),
    ("arr-text-nested-quoted", 1009, -1, '{{"a,b",c},{"}",NULL}}', [["a,b", "c"], ["}", None]]),
    ("arr-text-spaces", 1009, -1, '{" lead","trail "}', [" lead", "trail "]),
    ("arr-text-null-lower", 1009, -1, '{null,"null"}', [None, "null"]),
    ("arr-numeric", 1231, numeric_typmod(5, 1), "{1.5,NaN,-9999.9}",
     [Decimal("1.5"), Decimal("NaN"), Decimal("-9999.9")]),
    ("arr-bool", 1000, -1, "{t,f,NULL}", [True, False, None]),
    ("arr-bytea", 1001, -1, '{"\\\\x00","\\\\xff",NULL}', [b"\x00", b"\xff", None]),
    ("arr-tstz", 1185, -1, '{"2024-01-01 00:00:00+00",infinity,-infinity}',
     [datetime(2024, 1, 1, tzinfo=UTC), POS_INFINITY, NEG_INFINITY]),
    ("arr-date", 1182, -1, '{2024-01-01,"0001-01-01 BC"}', [date(2024, 1, 1), civil_days(0, 1, 1)]),
    ("arr-box", 1020, -1, "{(1,1),(0,0);(3,3),(2,2)}", ["(1,1),(0,0)", "(3,3),(2,2)"]),
    ("arr-interval", 1187, -1, '{"1 day",-00:00:01}', ["P1D", "PT-1S"]),
    ("arr-jsonb", 3807, -1, '{"{\\"a\\": 1}",null}', ['{"a": 1}', None]),
    ("arr-uuid", 2951, -1, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
     [uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")]),
    ("arr-of-empty-strings", 1009, -1, '{"",""}', ["", ""]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("oid", "typmod", "text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_text_to_canonical(oid: int, typmod: int, text: str, expected: Any) -> None:
    got = conv(oid, text, typmod)
    assert typed_table.same(got, expected), f"{got!r} != {expected!r}"


def test_nan_values() -> None:
    assert math.isnan(conv(701, "NaN")) and math.isnan(conv(700, "NaN"))
    assert conv(1700, "NaN").is_nan()
    assert conv(1700, "NaN", numeric_typmod(10, 2)).is_nan()


def test_null_is_none_for_every_type() -> None:
    for oid in (*types._BUILTIN, *types._BUILTIN_ARRAYS):
        assert resolve_type(oid).convert(None) is None


def test_timestamptz_is_utc_aware() -> None:
    v = conv(1184, "2024-06-01 12:00:00+02")
    assert v.tzinfo is UTC and v == datetime(2024, 6, 1, 10, tzinfo=UTC)
    assert conv(1114, "2024-06-01 12:00:00").tzinfo is None


def test_days_from_civil_matches_python_everywhere_python_can_check() -> None:
    epoch = date(1970, 1, 1).toordinal()
    for y in (1, 4, 100, 400, 1582, 1900, 1970, 2000, 2024, 9999):
        for m, dd in ((1, 1), (2, 28), (3, 1), (12, 31)):
            assert days_from_civil(y, m, dd) == date(y, m, dd).toordinal() - epoch


@pytest.mark.parametrize(
    ("oid", "text"),
    [
        (16, "true"),
        (23, "1.5"),
        (1082, "02/29/2024"),  # DateStyle SQL
        (1114, "Thu Feb 29 12:00:00 2024"),  # DateStyle Postgres
        (1186, "@ 1 day ago"),  # IntervalStyle postgres_verbose
        (1186, "+1-2 +3 +4:05:06"),  # IntervalStyle sql_standard
        (790, "$1,234.5"),
        (790, "¥1,234"),  # a locale without 2 fraction digits
        (1007, "[0:1]={1,2}"),  # non-default lower bound
        (1007, "{1,2"),
        (1007, "{{1,2},3}}"),
        (1009, '{"abc}'),
        (1007, "{1,,2}"),
        (1007, "{1,2}x"),
        (2950, "not-a-uuid"),
        (17, "\\xzz"),
        (1560, "10201"),
        (1266, "12:00:00"),
    ],
)
def test_malformed_text_raises_serialization_error(oid: int, text: str) -> None:
    with pytest.raises(SerializationError, match=r"cannot convert value .* PostgreSQL type"):
        conv(oid, text, 8 if oid == 1560 else -1)


def test_lower_bound_error_is_clear() -> None:
    with pytest.raises(SerializationError, match="lower bound other than 1"):
        conv(1007, "[0:1]={1,2}")


# --- type mapping -------------------------------------------------------------


@pytest.mark.parametrize(
    ("oid", "typmod", "column_type"),
    [
        (21, -1, ColumnType(Kind.INT16, "smallint")),
        (26, -1, ColumnType(Kind.INT64, "oid")),
        (1700, -1, ColumnType(Kind.DECIMAL, "numeric", nan=True)),
        (
            1700,
            numeric_typmod(10, 2),
            ColumnType(Kind.DECIMAL, "numeric(10,2)", precision=10, scale=2, nan=True),
        ),
        (
            1700,
            numeric_typmod(3, -2),
            ColumnType(Kind.DECIMAL, "numeric(3,-2)", precision=3, scale=-2, nan=True),
        ),
        (790, -1, ColumnType(Kind.DECIMAL, "money", precision=19, scale=2)),
        (1043, 14, ColumnType(Kind.STRING, "character varying(10)", length=10)),
        (1043, -1, ColumnType(Kind.STRING, "character varying")),
        (1042, 5, ColumnType(Kind.STRING, "character(1)", length=1)),
        (1560, 8, ColumnType(Kind.BITS, "bit(8)", length=8)),
        (1562, 8, ColumnType(Kind.STRING, "bit varying(8)", length=8)),
        (1083, 3, ColumnType(Kind.TIME, "time(3) without time zone", precision=3)),
        (1266, -1, ColumnType(Kind.TIMETZ, "time with time zone")),
        (1114, 0, ColumnType(Kind.TIMESTAMP, "timestamp(0) without time zone", precision=0)),
        (1184, -1, ColumnType(Kind.TIMESTAMPTZ, "timestamp with time zone")),
        (1186, -1, ColumnType(Kind.INTERVAL, "interval")),
        (1186, (0x7FFF << 16) | 3, ColumnType(Kind.INTERVAL, "interval(3)", precision=3)),
        (1186, (((1 << 2) | (1 << 1)) << 16) | 0xFFFF, ColumnType(Kind.INTERVAL, "interval year to month")),
        (2950, -1, ColumnType(Kind.UUID, "uuid")),
        (3802, -1, ColumnType(Kind.JSON, "jsonb")),
        (17, -1, ColumnType(Kind.BYTES, "bytea")),
        (
            1231,
            numeric_typmod(5, 1),
            ColumnType(
                Kind.ARRAY,
                "numeric(5,1)[]",
                element=ColumnType(Kind.DECIMAL, "numeric(5,1)", precision=5, scale=1, nan=True),
            ),
        ),
        (1015, 9, ColumnType(Kind.ARRAY, "character varying(5)[]", element=ColumnType(Kind.STRING, "character varying(5)", length=5))),
    ],
)  # fmt: skip
def test_column_types(oid: int, typmod: int, column_type: ColumnType) -> None:
    assert resolve_type(oid, typmod).column_type == column_type


def test_every_builtin_array_maps_to_its_element() -> None:
    for arr, elem in types._BUILTIN_ARRAYS.items():
        t = resolve_type(arr)
        assert t.column_type.kind is Kind.ARRAY
        assert t.column_type.element == resolve_type(elem).column_type


CATALOG = StaticTypeCatalog(
    [
        PgTypeInfo(90001, "mood", "public", "e", "E", enum_labels=("sad", "ok", "happy")),
        PgTypeInfo(90002, "_mood", "public", "b", "A", elem=90001),
        PgTypeInfo(90003, "posint", "public", "d", "N", base_type=23),
        PgTypeInfo(90004, "code", "app", "d", "S", base_type=1043, base_typmod=9),
        PgTypeInfo(90005, "pair", "public", "c", "C"),
        PgTypeInfo(90006, "_pair", "public", "b", "A", elem=90005),
        PgTypeInfo(90007, "mood_dom", "public", "d", "E", base_type=90001),
        PgTypeInfo(90008, "_code", "app", "b", "A", elem=90004),
        PgTypeInfo(90009, "citext", "public", "b", "S"),
        PgTypeInfo(90010, "floatrange", "public", "r", "R"),
        PgTypeInfo(90011, "Weird Type", "My Schema", "e", "E", enum_labels=("a",)),
        PgTypeInfo(90012, "boxdom", "public", "d", "G", base_type=603, delimiter=";"),
        PgTypeInfo(90013, "_boxdom", "public", "b", "A", elem=90012, delimiter=","),
    ]
)


def test_user_types_through_the_catalog(caplog: pytest.LogCaptureFixture) -> None:
    mood = resolve_type(90001, -1, CATALOG)
    assert mood.column_type == ColumnType(Kind.ENUM, "public.mood", values=("sad", "ok", "happy"))
    assert mood.convert("ok") == "ok"
    arr = resolve_type(90002, -1, CATALOG)
    assert arr.column_type.kind is Kind.ARRAY and arr.column_type.element == mood.column_type
    assert arr.convert('{sad,NULL,"happy"}') == ["sad", None, "happy"]
    # domains become their base type (with the domain's typmod)
    assert resolve_type(90003, -1, CATALOG).column_type == ColumnType(Kind.INT32, "integer")
    assert resolve_type(90003, -1, CATALOG).convert("5") == 5
    code = resolve_type(90004, -1, CATALOG).column_type
    assert code == ColumnType(Kind.STRING, "character varying(5)", length=5)
    assert resolve_type(90007, -1, CATALOG).column_type.kind is Kind.ENUM
    assert resolve_type(90008, -1, CATALOG).column_type.element == code
    # composites and ranges: text, no warning; extension base types: text, one warning
    caplog.set_level(logging.WARNING, logger="connectors.postgres.types")
    pair = resolve_type(90005, -1, CATALOG)
    assert pair.column_type == ColumnType(Kind.STRING, "public.pair")
    assert resolve_type(90006, -1, CATALOG).convert('{"(1,\\"x y\\")","(2,)"}') == [
        '(1,"x y")',
        "(2,)",
    ]
    assert resolve_type(90010, -1, CATALOG).column_type.kind is Kind.STRING
    assert not caplog.records
    for _ in range(3):
        assert resolve_type(90009, -1, CATALOG).convert("AbC") == "AbC"
    assert len([r for r in caplog.records if "citext" in r.getMessage()]) == 1
    assert resolve_type(90011, -1, CATALOG).column_type.native == '"My Schema"."Weird Type"'
    # the delimiter comes from the element type: box domains keep ';'
    boxes = resolve_type(90013, -1, CATALOG)
    assert boxes.convert("{(1,1),(0,0)}") == ["(1,1),(0,0)"]


def test_unknown_oid_is_string_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="connectors.postgres.types")
    for _ in range(3):
        t = resolve_type(123456789)
        assert t.column_type.kind is Kind.STRING and t.convert("x") == "x"
    assert len([r for r in caplog.records if "123456789" in r.getMessage()]) == 1


# --- rows ---------------------------------------------------------------------


def test_row_converter_passes_nulls_and_toast_and_names_bad_columns() -> None:
    column_types = [resolve_type(23), resolve_type(25), resolve_type(1082)]
    row = make_row_converter(column_types, ["id", "name", "born"])
    assert row(["1", None, "2024-01-01"]) == [1, None, date(2024, 1, 1)]
    assert row(("2", UNCHANGED_TOAST, None)) == [2, UNCHANGED_TOAST, None]
    with pytest.raises(SerializationError, match="column 'born' value 'yesterday'"):
        row(["1", "x", "yesterday"])
    with pytest.raises(SerializationError, match="row has 2 values, the relation has 3"):
        row(["1", "x"])


def test_libpq_options_pin_the_settings() -> None:
    opts = types.libpq_options()
    for k, v in types.SESSION_SETTINGS.items():
        assert f"-c {k}={v}" in opts
    assert " " not in types.SESSION_SETTINGS["DateStyle"]  # libpq would need escaping


# --- parity with a real server (captured) --------------------------------------


def _catalog_from(manifest: dict[str, Any]) -> StaticTypeCatalog:
    return StaticTypeCatalog(
        PgTypeInfo(**{**t, "enum_labels": tuple(t["enum_labels"])}) for t in manifest["catalog"]
    )


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_captured_select_and_pgoutput_agree_and_convert(path: Path) -> None:
    manifest = json.loads(path.read_text())
    catalog = _catalog_from(manifest)
    attrs = manifest["typed_types"]
    names = [a[0] for a in attrs]
    select = {int(r[0]): r for r in manifest["typed_select"]}

    # format_type parity for built-ins (user types: see TYPES.md on natives)
    for name, oid, typmod, fmt in attrs:
        t = resolve_type(int(oid), int(typmod), catalog)
        if int(oid) in types._BUILTIN or int(oid) in types._BUILTIN_ARRAYS:
            assert t.column_type.native == fmt, name

    # The pgoutput stream of the same rows: the same text, byte for byte.
    major = path.stem
    stream = FIXTURES / f"{major}-v1.bin.gz"
    relation: messages.Relation | None = None
    inserted: dict[int, list[str | None]] = {}
    for raw in read_frames(stream):
        frame = decoder.decode_copy_data(raw)
        if not isinstance(frame, decoder.XLogData):
            continue
        m = decoder.decode_message(frame.payload)
        if isinstance(m, messages.Relation) and m.name == "typed":
            relation = m
        elif isinstance(m, messages.Insert) and relation and m.relation_id == relation.relation_id:
            assert all(v is None or isinstance(v, str) for v in m.new)
            inserted[int(m.new[0])] = list(m.new)  # type: ignore[arg-type]
    assert relation is not None
    assert [c.name for c in relation.columns] == names
    assert [(c.type_oid, c.type_modifier) for c in relation.columns] == [
        (int(a[1]), int(a[2])) for a in attrs
    ]
    assert inserted == select

    column_types = [resolve_type(c.type_oid, c.type_modifier, catalog) for c in relation.columns]
    typed_table.check_rows(inserted, column_types, names)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_interval_iso_matches_server_iso_8601(path: Path) -> None:
    manifest = json.loads(path.read_text())
    select = {r[0]: r for r in manifest["typed_select"]}
    names = [a[0] for a in manifest["typed_types"]]
    i_int, i_neg, i_arr = (
        names.index(n) for n in ("c_interval", "c_interval_neg", "c_interval_arr")
    )
    for rid, iso, iso_neg, iso_arr in manifest["typed_intervals_iso"]:
        row = select[rid]
        if row[i_int] is None:
            continue
        assert interval_to_iso(row[i_int]) == iso
        assert interval_to_iso(row[i_neg]) == iso_neg
        assert resolve_type(1187).convert(row[i_arr]) == resolve_type(1009).convert(iso_arr)
