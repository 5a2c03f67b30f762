"""What existing deployments hold still reads back, and we still write it byte for byte.

``formats_v1.json`` was produced by the code before connectors owned their
positions and source blocks (issue #16): for PostgreSQL, MySQL and MariaDB
events, the registered value schemas, the encoded envelopes, each position's
stored dict (offsets topic), replica checkpoint text and ``cdc_position`` text.
Offsets and checkpoints must resume from those, the schema registry must see
the same schemas (compatibility), and consumers the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdc.errors import PositionError
from cdc.positions import parse_position, position_from_dict, position_json
from cdc.serde.decode import DecodedChange, decode_change
from cdc.serde.encode import TableEncoder
from cdc.serde.envelope import build_schemas, schema_text, source_schema
from cdc.serde.registry import backward_incompatibilities
from cdc.sink.checkpoint import decode_position, encode_position
from connectors.mysql.position import BinlogFile, GtidSet, MySqlPosition
from connectors.postgres.position import Lsn, PgPosition

FORMATS: dict[str, Any] = json.loads((Path(__file__).parent / "formats_v1.json").read_text())


@pytest.mark.parametrize("stored", FORMATS["positions"], ids=lambda s: s["checkpoint_text"][:40])
def test_stored_positions_read_back_and_write_the_same_text(stored: dict[str, Any]) -> None:
    p = position_from_dict(stored["dict"])
    assert p.to_dict() == stored["dict"]
    assert list(p.sort_key()) == stored["sort_key"]
    assert decode_position(stored["checkpoint_text"], "t/0") == p
    assert encode_position(p) == stored["checkpoint_text"]
    assert position_json(p.to_dict()) == stored["cdc_position"]
    back = parse_position(stored["cdc_position"])
    assert back == p and back.last_in_tx == p.last_in_tx


def test_literal_stored_forms_of_each_kind() -> None:
    """Texts exactly as the offsets topic and checkpoint rows hold them today."""
    pg = decode_position(
        '{"v":1,"kind":"postgres","lsn":"16/B374D848","index":7,"snapshot":false,'
        '"last_in_tx":false}', "t/0")
    assert pg == PgPosition(Lsn(0x16_B374_D848), 7, snapshot=False, last_in_tx=False)
    assert isinstance(pg, PgPosition) and not pg.last_in_tx
    my = position_from_dict({
        "v": 1, "kind": "mysql", "file": "mysql-bin.000003", "pos": 1234, "index": 5,
        "gtid_set": "0-1-42,1-2-5", "gtid": "0-1-42", "server_id": 1, "snapshot": False,
        "last_in_tx": True,
    })
    assert my == MySqlPosition(BinlogFile("mysql-bin.000003"), 1234, 5)
    assert isinstance(my, MySqlPosition) and my.gtid_set == GtidSet.parse("1-2-5,0-1-42")
    # Older stored dicts without the optional keys still read.
    assert position_from_dict({"kind": "postgres", "lsn": "0/10"}) == PgPosition(Lsn(16))


def test_an_unknown_kind_names_itself_and_the_installed_kinds() -> None:
    with pytest.raises(PositionError, match=r"unknown position kind 'oracle'.*mysql, postgres"):
        position_from_dict({"v": 1, "kind": "oracle", "scn": 5})
    with pytest.raises(PositionError, match="unknown position kind 'oracle'"):
        decode_position('{"v":1,"kind":"oracle","scn":5}', "t/0")


@pytest.mark.parametrize("connector", sorted(FORMATS["schemas"]))
def test_source_blocks_and_value_schemas_are_unchanged(connector: str) -> None:
    value_text = FORMATS["schemas"][connector]["value"]
    source = json.loads(value_text)["fields"][2]["type"]
    assert schema_text(source_schema(connector)) == schema_text(source)
    records = [r for r in FORMATS["records"] if r["connector"] == connector]
    assert records
    for r in records:
        decoded = decode_change(bytes.fromhex(r["value"]), value_text)
        assert isinstance(decoded, DecodedChange)
        assert decoded.position is not None and decoded.position.to_dict() == r["position"]
        event = decoded.to_event()
        schemas = build_schemas(event.schema, prefix="srv", connector=connector)
        # Issue #15 dropped the logicalType of Debezium's semantic types (Date,
        # MicroTimestamp, Uuid) to write exactly Debezium's schemas: the only change,
        # a BACKWARD-compatible one, and the bytes on the wire are the same.
        assert schemas.value_text == _debezium_spelling(value_text)
        assert schemas.key_text == _debezium_spelling(FORMATS["schemas"][connector]["key"])
        assert backward_incompatibilities(json.loads(value_text),
                                          json.loads(schemas.value_text)) == []
        assert TableEncoder(schemas).encode_value(event).hex() == r["value"]


_SEMANTIC_LOGICAL = {"io.debezium.time.Date": "date", "io.debezium.data.Uuid": "uuid",
                     "io.debezium.time.MicroTimestamp": "local-timestamp-micros"}


def _debezium_spelling(text: str) -> str:
    """A stored schema with the logicalType of Debezium's semantic types removed."""
    def walk(t: Any) -> Any:
        if isinstance(t, list):
            return [walk(x) for x in t]
        if isinstance(t, dict):
            out = {k: walk(v) for k, v in t.items()}
            if "logicalType" in out and \
                    _SEMANTIC_LOGICAL.get(out.get("connect.name", "")) == out["logicalType"]:
                del out["logicalType"]
            return out
        return t
    return schema_text(walk(json.loads(text)))
