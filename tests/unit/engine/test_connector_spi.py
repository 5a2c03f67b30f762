"""A connector the engine has never heard of plugs in through cdc/spi.py alone.

The lead's acceptance test runs a third connector through the real stack; this
one checks the pieces in-process: its positions are stored and read back by
kind, its source block becomes the envelope's ``source`` record (valid Avro
for the registered schema), sinks decode its positions, and the errors for
kinds or blocks nobody installed name what is installed.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import pytest
from fastavro import parse_schema, schemaless_reader

from cdc.errors import PositionError, SchemaError
from cdc.events import SourceInfo, TableId
from cdc.positions import (
    POSITION_FORMAT,
    Position,
    parse_position,
    position_from_dict,
    position_json,
)
from cdc.registry import ConnectorRegistry, default_registry, set_default_registry
from cdc.serde.binary import zigzag
from cdc.serde.decode import DecodedChange, decode_change
from cdc.serde.encode import TableEncoder
from cdc.serde.envelope import build_schemas
from cdc.serde.sourceblock import CommonFields, position_field
from cdc.sink.checkpoint import decode_position, encode_position
from cdc.spi import Connector, PositionCodec, SourceBlock, TableName
from connectors.mysql import CONNECTOR as MYSQL
from connectors.postgres import CONNECTOR as POSTGRES
from tests.unit.serde.strategies import pg_source
from tests.unit.serde.test_codec_errors import event


@dataclass(frozen=True, slots=True, eq=True)
class ToyPosition(Position):
    kind: ClassVar[str] = "toy"
    seq: int
    index: int = 0
    last_in_tx: bool = field(default=True, compare=False)

    def sort_key(self) -> tuple[int, int]:
        return (self.seq, self.index)

    def to_dict(self) -> dict[str, Any]:
        return {"v": POSITION_FORMAT, "kind": self.kind, "seq": self.seq, "index": self.index,
                "last_in_tx": self.last_in_tx}

    def __hash__(self) -> int:
        return hash((self.seq, self.index))


class ToyCodec:
    kind = "toy"

    def from_dict(self, stored: Mapping[str, Any]) -> ToyPosition:
        return ToyPosition(int(stored["seq"]), int(stored.get("index", 0)),
                           bool(stored.get("last_in_tx", True)))

    def parse_text(self, text: str) -> ToyPosition | None:
        return None

    def text_sort_key(self, text: str) -> tuple[int, int] | None:
        return None


class ToyWriter:
    def __init__(self, table: TableId) -> None:
        self.common = CommonFields(table)

    def encode(self, src: SourceInfo) -> bytes:
        assert isinstance(src.position, ToyPosition)
        own = zigzag(src.position.seq)
        text = position_json(src.position.to_dict())
        head, tail = self.common.around(src)
        return head + own + position_field(text) + tail


class ToyBlock:
    connector = "toydb"
    namespace = "org.example.toydb"
    fields: Sequence[Mapping[str, Any]] = ({"name": "seq", "type": "long"},)

    def writer(self, table: TableId) -> ToyWriter:
        return ToyWriter(table)


class ToyConnector:
    kind = "toy"

    def source_config_model(self) -> type[Any]:
        raise NotImplementedError

    def sink_config_model(self) -> type[Any]:
        raise NotImplementedError

    def create_source(self, config: Any, *, name: str) -> Any:
        raise NotImplementedError

    def release_source(self, config: Any, *, name: str) -> str | None:
        return None

    def create_dialect(self) -> Any:
        raise NotImplementedError

    def position_codec(self) -> PositionCodec:
        return ToyCodec()

    def source_blocks(self) -> Sequence[SourceBlock]:
        return (ToyBlock(),)

    def table_id(self, table: TableName) -> TableId:
        return TableId(table.schema or "", None, table.name)


@pytest.fixture()
def with_toy() -> Iterator[ConnectorRegistry]:
    saved = default_registry()
    registry = ConnectorRegistry(connectors=[ToyConnector(), POSTGRES, MYSQL])
    set_default_registry(registry)
    try:
        yield registry
    finally:
        set_default_registry(saved)


def test_the_toy_is_a_connector() -> None:
    assert isinstance(ToyConnector(), Connector)
    assert isinstance(ToyBlock(), SourceBlock)


def test_its_positions_are_stored_and_read_back_by_kind(with_toy: ConnectorRegistry) -> None:
    p = ToyPosition(42, 3, last_in_tx=False)
    back = position_from_dict(p.to_dict())
    assert back == p and isinstance(back, ToyPosition) and not back.last_in_tx
    assert decode_position(encode_position(p), "t/0") == p
    assert parse_position(position_json(p.to_dict())) == p
    assert ToyPosition(1, 9) < ToyPosition(2, 0)
    with pytest.raises(PositionError, match="cannot compare a toy position"):
        assert ToyPosition(1) < position_from_dict({"kind": "postgres", "lsn": "0/1"})


def test_its_events_encode_to_valid_avro_and_decode_with_its_position(
        with_toy: ConnectorRegistry) -> None:
    src = replace(pg_source(), connector="toydb", position=ToyPosition(7, 2), tx_id="t-7")
    ev = event(source=src)
    schemas = build_schemas(ev.schema, prefix="srv", connector="toydb")
    source = schemas.value_schema["fields"][2]["type"]
    assert source["namespace"] == "org.example.toydb"
    names = [f["name"] for f in source["fields"]]
    assert names[6:9] == ["sequence", "seq", "cdc_position"]
    body = TableEncoder(schemas).encode_value(ev)
    record = schemaless_reader(io.BytesIO(body), parse_schema(schemas.value_schema))
    assert isinstance(record, dict) and record["source"]["seq"] == 7
    decoded = decode_change(body, schemas.value_text)
    assert isinstance(decoded, DecodedChange)
    assert decoded.position == ToyPosition(7, 2)
    assert decoded.source_info() == ev.source


def test_unknown_kinds_and_blocks_name_what_is_installed(with_toy: ConnectorRegistry) -> None:
    with pytest.raises(PositionError, match=r"unknown position kind 'oracle'.*mysql, postgres, toy"):
        position_from_dict({"v": 1, "kind": "oracle"})
    with pytest.raises(SchemaError, match=r"unknown connector 'oracle'.*postgresql.*toydb"):
        build_schemas(event().schema, prefix="srv", connector="oracle")
