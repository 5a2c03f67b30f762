"""PostgreSQL's Debezium ``source`` block: its fields and their writer.

Debezium's PostgreSQL connector puts ``schema``, ``table``, ``txId``, ``lsn``
and ``xmin`` after the common fields; we write the same (``xmin`` is always
null), so consumers written for Debezium read our records unchanged. The
writer runs once per event on the source's hot path: everything but the
event's index and last-in-transaction flag is the same for all events of a
transaction (commit time, commit LSN, transaction id), so those bytes are
built once per transaction and the event is spliced in natively
(:func:`cdc.serde.sourceblock.source_with_index`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from cdc.errors import SerializationError
from cdc.events import SourceInfo, TableId
from cdc.positions import position_json
from cdc.serde.binary import INT64_MAX, NULL_BRANCH, VALUE_BRANCH, zigzag
from cdc.serde.binary import string as _string
from cdc.serde.sourceblock import (
    CommonFields,
    position_field,
    source_with_index,
    sources_with_index,
)
from cdc.spi import SnapshotRows
from connectors.postgres.position import PgPosition
from connectors.postgres.position_text import JSON_HEAD, format_position, tail

FIELDS: Final[tuple[Mapping[str, Any], ...]] = (
    {"name": "schema", "type": "string"},
    {"name": "table", "type": "string"},
    {"name": "txId", "type": ["null", "long"], "default": None},
    {"name": "lsn", "type": ["null", "long"], "default": None},
    {"name": "xmin", "type": ["null", "long"], "default": None},
)

# What follows the index in the position text, by (snapshot, last_in_tx).
_TAILS: Final = tuple(tuple(tail(s, last).encode() for last in (False, True)) for s in (False, True))


class PgSourceWriter:
    """Writes the ``source`` record of one table's events (:class:`cdc.spi.SourceWriter`)."""

    __slots__ = ("_common", "_head", "_lsn_text", "_post", "_pre", "_table_part", "_tx_key")

    def __init__(self, table: TableId) -> None:
        self._common = CommonFields(table)
        self._table_part = _string(table.schema or "") + _string(table.table)
        self._tx_key: tuple[Any, ...] = ()
        self._pre = self._post = self._head = b""
        self._lsn_text = ""

    def encode(self, src: SourceInfo) -> bytes:
        pos = src.position
        if pos.__class__ is not PgPosition:
            raise SerializationError(f"a postgresql source event has a {pos.kind} position")
        assert isinstance(pos, PgPosition)
        key: tuple[Any, ...] = (src.ts_ms, pos.lsn.value, src.tx_id, src.snapshot, src.name,
                                src.version, src.connector, src.origin, src.db_version)  # fmt: skip
        if key != self._tx_key:
            self._new_transaction(src, pos, key)
        if JSON_HEAD is not None:
            if pos.index <= INT64_MAX:
                return source_with_index(
                    self._pre, self._head, pos.index, _TAILS[pos.snapshot][pos.last_in_tx], self._post
                )
            text = format_position(JSON_HEAD, self._lsn_text, pos)
        else:
            text = position_json(pos.to_dict())
        return b"".join((self._pre, position_field(text), self._post))

    def encode_run(self, rows: SnapshotRows) -> list[bytes]:
        """The source blocks of a snapshot batch (:class:`cdc.spi.WritesSourceRuns`): the
        first row's as :meth:`encode`, the others spliced with their index."""
        src = rows.source
        first = self.encode(src)
        pos = src.position
        assert isinstance(pos, PgPosition)
        n = len(rows)
        start = pos.index
        if JSON_HEAD is None or start + n - 1 > INT64_MAX:
            return [first] + [self.encode(rows.source_at(i)) for i in range(1, n)]
        end = _TAILS[pos.snapshot][pos.last_in_tx]
        out = sources_with_index(self._pre, self._head, start + 1, n - 1, end, self._post)
        out.insert(0, first)
        return out

    def _new_transaction(self, src: SourceInfo, pos: PgPosition, key: tuple[Any, ...]) -> None:
        tx = src.tx_id
        numeric = tx is not None and tx.isascii() and tx.isdigit() and len(tx) < 19
        lsn = pos.lsn.value
        head, self._post = self._common.around(src)
        self._pre = b"".join(
            (
                head,
                self._table_part,
                VALUE_BRANCH + zigzag(int(tx)) if numeric and tx else NULL_BRANCH,  # txId
                VALUE_BRANCH + zigzag(lsn) if lsn <= INT64_MAX else NULL_BRANCH,
                NULL_BRANCH,  # xmin
            )
        )
        self._lsn_text = str(pos.lsn)
        self._head = f'{JSON_HEAD}{self._lsn_text}","index":'.encode()
        self._tx_key = key


class PgSourceBlock:
    """The ``postgresql`` source block (:class:`cdc.spi.SourceBlock`)."""

    connector = "postgresql"
    namespace = "io.debezium.connector.postgresql"
    fields: Sequence[Mapping[str, Any]] = FIELDS

    def writer(self, table: TableId) -> PgSourceWriter:
        return PgSourceWriter(table)


BLOCKS: Final = (PgSourceBlock(),)
