"""Every type family through the binlog and the snapshot, against the real MariaDB.

Rows with extreme, empty, NULL and zero-date values are inserted, updated
(including a key change) and deleted; the stream must deliver them as the
canonical values of cdc.events, and a snapshot of the final table must give
the same values and the same schema (the parity of the two paths).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cdc.events import ChangeEvent, Kind, Op
from cdc.serde.temporal import ZERO
from connectors.mysql.position import MySqlPosition
from connectors.mysql.source import MySqlSource, rowimage
from tests.integration.mysql.conftest import drain

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE {t} (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, b1 TINYINT(1), si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  d DECIMAL(65,30), d2 DECIMAL(5,2), fl FLOAT, db DOUBLE,
  bt BIT(10), b64 BIT(64),
  ch CHAR(5), vc VARCHAR(10), tx TEXT, lt LONGTEXT CHARACTER SET latin1,
  bn BINARY(4), vb VARBINARY(10), bl BLOB,
  en ENUM('a','b','it''s'), st SET('x','y','z'), js JSON,
  dt DATE, tm TIME(6), tm1 TIME(1), tm3 TIME(3), dtt DATETIME(6), dt0 DATETIME,
  ts TIMESTAMP(6) NULL, ts0 TIMESTAMP NULL, yr YEAR, g GEOMETRY, u UUID, i6 INET6,
  dz DATE NOT NULL DEFAULT '2000-01-01'
) DEFAULT CHARSET=utf8mb4
"""

ROW1 = """INSERT INTO {t} VALUES (1,
  127, 255, 1, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
  9223372036854775807, 18446744073709551615,
  '99999999999999999999999999999999999.999999999999999999999999999999', 999.99, 1.1,
  1.7976931348623157e308, b'1111111111', 0xFFFFFFFFFFFFFFFF,
  'abcde', 'é😀éé😀éé😀éé', 'text😀', 'latin é', 'ab', 'x\\0', x'00ff',
  'it''s', 'z,x', '{{"a": [1, 2], "b": "é"}}',
  '9999-12-31', '838:59:59.999999', '-00:00:00.5', '-01:02:03.125',
  '9999-12-31 23:59:59.999999', '1000-01-01 00:00:00',
  '2038-01-19 03:14:07.999999', '1970-01-01 00:00:01', 2155,
  ST_GeomFromText('POINT(1 2)', 4326), '123e4567-e89b-12d3-a456-426614174000', '2001:db8::1',
  '2024-02-29')"""

ROW2 = """INSERT INTO {t} VALUES (2,
  -128, 0, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
  '-0.000000000000000000000000000001', -999.99, -1.5, -2.2250738585072014e-308,
  b'0', 0, '', '', '', '', '', '', '', 'a', '', '[]',
  '1000-01-01', '-838:59:59.000000', '00:00:00', '00:00:00.001',
  '1000-01-01 00:00:00', '1000-01-01 00:00:00', '1970-01-01 00:00:01.000001', NULL, 0,
  ST_GeomFromText('POINT(0 0)'), '00000000-0000-0000-0000-000000000000', '::', '0000-00-00')"""

ROW3 = "INSERT INTO {t} (id) VALUES (3)"
ROW4 = """INSERT INTO {t} (id, dt, dtt, ts, dt0, dz)
  VALUES (4, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00',
          '2024-02-00 00:00:00', '2024-00-10')"""

POINT_1_2 = bytes.fromhex("0101000000000000000000f03f0000000000000040")
POINT_0_0 = bytes.fromhex("0101000000" + "00" * 16)

EXPECTED_1: dict[str, Any] = {
    "id": 1,
    "ti": 127,
    "tiu": 255,
    "b1": 1,
    "si": 32767,
    "siu": 65535,
    "mi": 8388607,
    "miu": 16777215,
    "i": 2147483647,
    "iu": 4294967295,
    "bi": 9223372036854775807,
    "biu": 18446744073709551615,
    "d": Decimal("99999999999999999999999999999999999.999999999999999999999999999999"),
    "d2": Decimal("999.99"),
    "fl": 1.1,
    "db": 1.7976931348623157e308,
    "bt": b"\x03\xff",
    "b64": b"\xff" * 8,
    "ch": "abcde",
    "vc": "é😀éé😀éé😀éé",
    "tx": "text😀",
    "lt": "latin é",
    "bn": b"ab\x00\x00",
    "vb": b"x\x00",
    "bl": b"\x00\xff",
    "en": "it's",
    "st": "x,z",
    "js": '{"a": [1, 2], "b": "é"}',
    "dt": date(9999, 12, 31),
    "tm": timedelta(hours=838, minutes=59, seconds=59, microseconds=999999),
    "tm1": -timedelta(milliseconds=500),
    "tm3": -timedelta(hours=1, minutes=2, seconds=3, milliseconds=125),
    "dtt": datetime(9999, 12, 31, 23, 59, 59, 999999),
    "dt0": datetime(1000, 1, 1),
    "ts": datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC),
    "ts0": datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
    "yr": 2155,
    "g": POINT_1_2,
    "u": uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
    "i6": "2001:db8::1",
    "dz": date(2024, 2, 29),
}
EXPECTED_2: dict[str, Any] = {
    "id": 2,
    "ti": -128,
    "tiu": 0,
    "b1": 0,
    "si": -32768,
    "siu": 0,
    "mi": -8388608,
    "miu": 0,
    "i": -2147483648,
    "iu": 0,
    "bi": -9223372036854775808,
    "biu": 0,
    "d": Decimal("-0.000000000000000000000000000001"),
    "d2": Decimal("-999.99"),
    "fl": -1.5,
    "db": -2.2250738585072014e-308,
    "bt": b"\x00\x00",
    "b64": b"\x00" * 8,
    "ch": "",
    "vc": "",
    "tx": "",
    "lt": "",
    "bn": b"\x00" * 4,
    "vb": b"",
    "bl": b"",
    "en": "a",
    "st": "",
    "js": "[]",
    "dt": date(1000, 1, 1),
    "tm": -timedelta(hours=838, minutes=59, seconds=59),
    "tm1": timedelta(0),
    "tm3": timedelta(milliseconds=1),
    "dtt": datetime(1000, 1, 1),
    "dt0": datetime(1000, 1, 1),
    "ts": datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=UTC),
    "ts0": None,
    "yr": 0,
    "g": POINT_0_0,
    "u": uuid.UUID(int=0),
    "i6": "::",
    "dz": date(1970, 1, 1),  # NOT NULL zero date under zero_date=null: the epoch
}
COLUMNS = list(EXPECTED_1)
EXPECTED_3 = {**dict.fromkeys(COLUMNS), "id": 3, "dz": date(2000, 1, 1)}
EXPECTED_4 = {**dict.fromkeys(COLUMNS), "id": 4, "dz": date(1970, 1, 1)}


def _replay(events: list[ChangeEvent], into: dict[Any, dict[str, Any]]) -> None:
    for e in events:
        assert e.key is not None
        k = e.key["id"]
        if e.op is Op.DELETE:
            into.pop(k)
        else:
            assert e.after is not None
            into[k] = dict(e.after)


DECODERS = pytest.mark.parametrize(
    "decoder", ["native", "rowimage", "library"], ids=["native", "rowimage", "library"]
)


def _decoder(decoder: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    """fast_decode for the parametrised decoder (``rowimage`` without its C program)."""
    if decoder == "native" and not rowimage.native_available():
        pytest.skip("_crowimage not built")
    if decoder == "rowimage":
        monkeypatch.setattr(rowimage, "_native", None)
    return decoder != "library"


@DECODERS
def test_every_type_family_through_binlog_and_snapshot(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    unique_name: str,
    decoder: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every binlog decoder: cdc's row-image decoder (C program, and the Python
    reference) and mysql-replication's."""
    fast_decode = _decoder(decoder, monkeypatch)
    t = unique_name
    src = make_source(include=[f"cdc_source.{t}"], fast_decode=fast_decode)
    start = src.reader.current_position()
    sql(DDL.format(t=t))
    for stmt in (ROW1, ROW2, ROW3, ROW4):
        sql(stmt.format(t=t))
    sql(f"UPDATE {t} SET vc = 'new' WHERE id = 1")
    sql(f"UPDATE {t} SET id = 20 WHERE id = 2")
    sql(f"DELETE FROM {t} WHERE id = 3")

    events = drain(src.stream(start), lambda ev: len(ev) >= 8)
    resolved = list(src.reader.resolver._resolved.values())
    assert resolved and all((r.fast is not None) is fast_decode for r in resolved)
    assert all(
        (r.fast.program is not None) is (decoder == "native") for r in resolved if r.fast
    )
    assert (src.reader.metrics.fast_images == 7) is fast_decode  # 4 c, 2 u (pairs), 1 d
    # the native program's rows events are read from the packet bytes, not by the library
    assert (src.reader.metrics.raw_events == 7) is (decoder == "native")
    assert [(e.op, e.key) for e in events] == [
        (Op.CREATE, {"id": 1}),
        (Op.CREATE, {"id": 2}),
        (Op.CREATE, {"id": 3}),
        (Op.CREATE, {"id": 4}),
        (Op.UPDATE, {"id": 1}),
        (Op.DELETE, {"id": 2}),
        (Op.CREATE, {"id": 20}),
        (Op.DELETE, {"id": 3}),
    ]
    by_op = events[:4]
    for got, want in zip(by_op, (EXPECTED_1, EXPECTED_2, EXPECTED_3, EXPECTED_4), strict=True):
        assert got.after is not None
        for col in COLUMNS:
            assert got.after[col] == want[col], (col, got.after[col], want[col])
            assert type(got.after[col]) is type(want[col]), col
    upd = events[4]
    assert upd.before == {**EXPECTED_1} and upd.after == {**EXPECTED_1, "vc": "new"}
    assert events[5].before == EXPECTED_2 and events[6].after == {**EXPECTED_2, "id": 20}
    assert events[7].before == EXPECTED_3 and events[7].after is None

    schema = events[0].schema
    kinds = {c.name: c.type.kind for c in schema.columns}
    assert kinds["biu"] is Kind.UINT64 and kinds["b1"] is Kind.INT16
    assert kinds["js"] is Kind.JSON and kinds["u"] is Kind.UUID and kinds["ts"] is Kind.TIMESTAMPTZ
    assert kinds["bt"] is Kind.BITS and kinds["g"] is Kind.GEOMETRY and kinds["st"] is Kind.SET
    assert schema.primary_key == ("id",)
    assert {c.name: c.nullable for c in schema.columns}["dz"] is False

    # parity: a snapshot of the final table equals the replayed stream, schema included
    replayed: dict[Any, dict[str, Any]] = {}
    _replay(events, replayed)
    position, rows = src.snapshot(None)
    assert isinstance(position, MySqlPosition) and position.snapshot
    snap = list(rows)
    assert {e.key["id"] for e in snap if e.key} == set(replayed) == {1, 4, 20}
    for e in snap:
        assert e.op is Op.READ and e.key is not None and e.after is not None
        assert e.after == replayed[e.key["id"]]
        assert {k: type(v) for k, v in e.after.items()} == {
            k: type(v) for k, v in replayed[e.key["id"]].items()
        }
        assert e.schema == events[-1].schema
    assert snap[-1].source.snapshot == "last" and snap[-1].position.last_in_tx
    assert all(e.source.snapshot == "true" for e in snap[:-1])


@DECODERS
def test_zero_date_sentinel_and_error_policies(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    unique_name: str,
    decoder: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast_decode = _decoder(decoder, monkeypatch)
    t = unique_name
    src = make_source(include=[f"cdc_source.{t}"], zero_date="sentinel", fast_decode=fast_decode)
    start = src.reader.current_position()
    sql(DDL.format(t=t))
    sql(ROW4.format(t=t))
    (event,) = drain(src.stream(start), lambda ev: len(ev) >= 1)
    assert event.after is not None
    zeros = {k: event.after[k] for k in ("dt", "dtt", "ts", "dt0", "dz")}
    assert zeros == dict.fromkeys(zeros, ZERO)
    _, rows = src.snapshot(None)
    (snap,) = list(rows)
    assert snap.after == event.after

    strict = make_source(include=[f"cdc_source.{t}"], zero_date="error", fast_decode=fast_decode)
    from cdc.errors import SerializationError

    with pytest.raises(SerializationError, match=rf"{t}\.(dt|dtt|ts|dt0|dz)"):
        drain(strict.stream(start), lambda ev: len(ev) >= 1)
