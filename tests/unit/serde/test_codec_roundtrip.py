"""Property tests: every kind of value survives encode -> decode unchanged (no Kafka).

Also checks that the hand-assembled bytes are exactly what fastavro writes for
the registered schema, and that the generated reader agrees with fastavro.
"""

from __future__ import annotations

import io
import json
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.events import ChangeEvent, Op, SourceInfo, TableSchema
from cdc.serde import AvroSerde, InMemorySchemaRegistry, Tombstone, unframe
from cdc.serde.codec import DecodedChange, RowEncoder, TableEncoder, decode_change, decode_value
from cdc.serde.envelope import build_schemas
from cdc.serde.reader import without_logical_types
from tests.unit.serde.strategies import (
    change_events,
    every_kind_schemas,
    rows,
    same_row,
    table_schemas,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same_change(event: ChangeEvent, decoded: DecodedChange) -> None:
    schema = event.schema
    assert decoded.op is event.op
    assert decoded.table == event.table
    assert decoded.schema == schema
    assert same_row(schema, event.key, decoded.key), (event.key, decoded.key)
    assert same_row(schema, event.before, decoded.before), (event.before, decoded.before)
    assert same_row(schema, event.after, decoded.after), (event.after, decoded.after)
    assert decoded.unchanged == event.unchanged
    assert decoded.position == event.source.position
    assert decoded.origin == event.source.origin
    assert decoded.transaction == event.transaction
    assert decoded.ts_ms == event.ts_ms
    assert decoded.source_info() == event.source


@SETTINGS
@given(change_events())
def test_events_of_every_kind_round_trip(event: ChangeEvent) -> None:
    schemas = build_schemas(
        event.schema, prefix=event.source.name, connector=event.source.connector
    )
    encoder = TableEncoder(schemas)
    key = encoder.encode_key(event)
    value = encoder.encode_value(event)
    decoded = decode_change(value, schemas.value_text, key, schemas.key_text)
    assert isinstance(decoded, DecodedChange)
    assert_same_change(event, decoded)


@SETTINGS
@given(every_kind_schemas().flatmap(change_events))
def test_a_row_of_every_kind_round_trips(event: ChangeEvent) -> None:
    schemas = build_schemas(event.schema, prefix="srv", connector=event.source.connector)
    encoder = TableEncoder(schemas)
    decoded = decode_change(
        encoder.encode_value(event), schemas.value_text, encoder.encode_key(event), schemas.key_text
    )
    assert isinstance(decoded, DecodedChange)
    assert_same_change(event, decoded)


@SETTINGS
@given(change_events())
def test_bytes_are_what_fastavro_writes_and_reads(event: ChangeEvent) -> None:
    """Our envelope bytes == fastavro's for the same record; both readers agree."""
    schemas = build_schemas(
        event.schema, prefix=event.source.name, connector=event.source.connector
    )
    value = TableEncoder(schemas).encode_value(event)
    raw = without_logical_types(schemas.value_schema)
    parsed = parse_schema(raw)
    by_fastavro = schemaless_reader(io.BytesIO(value), parsed, None)
    assert decode_value(value, schemas.value_text) == _nan_safe(by_fastavro)
    out = io.BytesIO()
    schemaless_writer(out, parsed, by_fastavro)
    assert out.getvalue() == value


def _nan_safe(v: Any) -> Any:
    # NaN != NaN: compare floats through their repr inside the structure.
    if isinstance(v, float) and v != v:
        return _NanEq()
    if isinstance(v, dict):
        return {k: _nan_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_nan_safe(x) for x in v]
    return v


class _NanEq:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and other != other

    __hash__ = None  # type: ignore[assignment]


@SETTINGS
@given(table_schemas(max_columns=3).flatmap(lambda t: st.lists(change_events(t), max_size=6)))
def test_one_encoder_keeps_events_apart(events: list[ChangeEvent]) -> None:
    """Per-transaction caches in the source encoder never leak into the next event."""
    if not events:
        return
    schema = events[0].schema
    encoders: dict[str, TableEncoder] = {}
    for ev in events:
        kind = ev.source.connector
        if kind not in encoders:
            encoders[kind] = TableEncoder(build_schemas(schema, prefix="srv", connector=kind))
        enc = encoders[kind]
        decoded = decode_change(
            enc.encode_value(ev), enc.schemas.value_text, enc.encode_key(ev), enc.schemas.key_text
        )
        assert isinstance(decoded, DecodedChange)
        assert_same_change(ev, decoded)


@SETTINGS
@given(st.data())
def test_fast_and_checked_paths_write_the_same_bytes(data: st.DataObject) -> None:
    schema: TableSchema = data.draw(table_schemas())
    row = data.draw(rows(schema))
    schemas = build_schemas(schema, prefix="p", connector="postgresql")
    enc = RowEncoder(schemas.value_fields, "t")
    checked, absent, specials = enc._checked(row, (), allow_absent=False)
    assert not absent
    fast, _, _ = enc.encode_image(row)
    assert fast == checked
    if not specials:
        assert enc.encode(row) == checked


@SETTINGS
@given(st.data())
def test_facade_round_trip_with_framing(data: st.DataObject) -> None:
    registry = InMemorySchemaRegistry()
    serde = AvroSerde(registry)
    event: ChangeEvent = data.draw(change_events())
    encoded = serde.encode(event)
    assert encoded.topic.startswith(event.source.name + ".")
    value_id, _ = unframe(encoded.value)
    assert json.loads(registry.get_schema(value_id))["name"] == "Envelope"
    decoded = serde.decode(encoded.key, encoded.value)
    assert isinstance(decoded, DecodedChange)
    assert_same_change(event, decoded)
    assert decoded.to_event().schema == event.schema
    if encoded.key is not None:
        tomb = serde.decode(encoded.key, None)
        assert isinstance(tomb, Tombstone)
        assert same_row(event.schema, event.key, tomb.key)
        assert tomb.table == event.table


def test_truncate_has_no_key_and_no_images() -> None:
    from tests.unit.serde.strategies import pg_source
    from tests.unit.serde.test_codec_errors import orders

    serde = AvroSerde(InMemorySchemaRegistry())
    ev = ChangeEvent(Op.TRUNCATE, orders(), None, None, None, pg_source(), 5)
    out = serde.encode(ev)
    assert out.key is None
    decoded = serde.decode(None, out.value)
    assert isinstance(decoded, DecodedChange)
    assert decoded.op is Op.TRUNCATE and decoded.before is None and decoded.after is None


def test_source_cache_key_covers_every_source_field() -> None:
    """Vary one SourceInfo field at a time; each event must decode to its own source."""
    from dataclasses import replace

    from connectors.mysql.position import BinlogFile, GtidSet, MySqlPosition
    from connectors.postgres.position import Lsn, PgPosition
    from tests.unit.serde.strategies import pg_source
    from tests.unit.serde.test_codec_errors import event

    pg = pg_source()
    assert isinstance(pg.position, PgPosition)
    lsn = pg.position.lsn
    my = replace(
        pg,
        connector="mysql",
        position=MySqlPosition(BinlogFile("b.000001"), 4, gtid="0-1-1", server_id=1),
    )
    cases: list[tuple[SourceInfo, list[dict[str, Any]]]] = [
        (pg, [
            {"ts_ms": 2}, {"tx_id": "7302"}, {"tx_id": None}, {"snapshot": "true"},
            {"origin": "o"}, {"db_version": "17"}, {"name": "srv2"}, {"version": "9"},
            {"position": PgPosition(Lsn(1))}, {"position": PgPosition(lsn, 3)},
        ]),
        (my, [
            {"position": MySqlPosition(BinlogFile("b.000002"), 4, gtid="0-1-1", server_id=1)},
            {"position": MySqlPosition(BinlogFile("b.000001"), 5, gtid="0-1-1", server_id=1)},
            {"position": MySqlPosition(BinlogFile("b.000001"), 4, gtid="0-1-2", server_id=1)},
            {"position": MySqlPosition(BinlogFile("b.000001"), 4, gtid="0-1-1", server_id=2)},
            {"position": MySqlPosition(BinlogFile("b.000001"), 4, index=9, gtid="0-1-1",
                                       server_id=1, gtid_set=GtidSet.parse("0-1-1"))},
            {"tx_id": "0-1-1"}, {"ts_ms": 5}, {"origin": "x"},
        ]),
    ]  # fmt: skip
    for base, variants in cases:
        ev0 = event(source=base)
        enc = TableEncoder(build_schemas(ev0.schema, prefix="srv", connector=base.connector))
        for changes in [{}, *variants, {}]:
            ev = replace(ev0, source=replace(base, **changes))
            decoded = decode_change(enc.encode_value(ev), enc.schemas.value_text)
            assert isinstance(decoded, DecodedChange)
            assert decoded.source_info() == ev.source, changes
