"""A stream's run of inserts (cdc.spi.StreamRows): encoded whole, exactly as its events.

The PostgreSQL source yields consecutive inserts of one table in a transaction as
one item when the runtime asks (BatchesStream); the encoder writes them from their
text in C. Each record must be byte for byte the one the per-event path writes for
``rows.event(i)`` (the production path, native encoder), and that event must be
the insert the unbatched stream yields: op ``c``, the transaction's orders, the
position's index and only the last row ending the transaction. fastavro reads the
records back as an oracle independent of both encoders. The random differential
against the pure-Python reference is the ``text_rows`` fuzz target.
"""

from __future__ import annotations

import io
from typing import Any, cast

import pytest
from fastavro import parse_schema, schemaless_reader

from cdc.events import Op
from cdc.serde import encode
from cdc.serde.envelope import build_schemas
from tests.fuzz import targets

pytestmark = pytest.mark.skipif(encode._C is None, reason="native encoder not built (make native)")


def _rows() -> list[tuple[object, ...]]:
    base = targets.text_row_values(b"")[0]
    other = ("2", "-7", "it's", "-0.01", "1999-12-31 23:59:59.5", "2000-02-29", "-1e-5", "f",
             "z", "-3", "0.25", "-2.5", "1999-12-31 23:59:59.5+01", "-0.00001")
    nulls = (base[0], *([None] * (len(base) - 1)))
    return [base, other, nulls]


@pytest.mark.parametrize("last_in_tx", [False, True])
def test_a_run_encodes_as_its_events(last_in_tx: bool) -> None:
    shape, native, _python = targets._text_encoders()
    texts = _rows()
    rows = targets._text_batch(shape, texts, last_in_tx)
    keys, values = native.encode_rows(rows, b"K", b"V")
    events = [rows.event(i) for i in range(len(texts))]
    assert keys == [native.encode_key(e, b"K") for e in events]
    assert values == [native.encode_value(e, b"V") for e in events]

    for i, e in enumerate(events):
        assert e.op is Op.CREATE and e.before is None
        assert e.after == shape.row(texts[i]) and e.key == shape.key(e.after)
        assert e.transaction is not None
        assert (e.transaction.id, e.transaction.total_order,
                e.transaction.data_collection_order) == ("4711", 3 + i, 2 + i)
        assert e.position.index == 2 + i
        assert e.position.last_in_tx is (last_in_tx and i == len(texts) - 1)

    schemas = build_schemas(shape.schema, prefix="p", connector="postgresql")
    parsed = parse_schema(schemas.value_schema)
    for i, v in enumerate(values):
        record = cast(dict[str, Any], schemaless_reader(io.BytesIO(v[1:]), parsed))
        assert record["op"] == "c" and record["before"] is None
        assert record["transaction"] == {"id": "4711", "total_order": 3 + i,
                                         "data_collection_order": 2 + i}
        assert record["ts_ms"] == 1_700_000_000_123
        assert record["after"]["id"] == int(texts[i][0])  # type: ignore[call-overload]
        assert record["source"]["snapshot"] == "false"
        assert record["source"]["txId"] == 4711


def test_a_row_the_native_path_refuses_is_encoded_from_its_event() -> None:
    shape, native, python = targets._text_encoders()
    base = targets.text_row_values(b"")[0]
    names = [n for n, _, _ in targets.TEXT_COLUMNS]
    odd = list(base)
    odd[names.index("ratio")] = "NaN"  # a double the plain text path leaves to the converter
    odd[names.index("created")] = "infinity"
    texts = [base, tuple(odd), base]
    for last in (False, True):
        rows = targets._text_batch(shape, texts, last)
        got = native.encode_rows(rows, b"K", b"V")
        events = [rows.event(i) for i in range(3)]
        assert got == ([native.encode_key(e, b"K") for e in events],
                       [native.encode_value(e, b"V") for e in events])
        assert got == python.encode_rows(targets._text_batch(shape, texts, last), b"K", b"V")
