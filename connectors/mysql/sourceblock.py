"""MySQL's and MariaDB's Debezium ``source`` blocks: their fields and writer.

Debezium's MySQL and MariaDB connectors put ``table``, ``server_id``,
``gtid``, ``file``, ``pos``, ``row``, ``thread`` and ``query`` after the
common fields (the two differ only in their names and namespaces); we write
the same (``thread`` and ``query`` are always null), so consumers written for
Debezium read our records unchanged. The writer runs once per event on the
source's hot path: the binlog coordinates, GTIDs and commit time are the same
for all events of a transaction, so those bytes (and the position JSON around
the event's index) are built once per transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from cdc.errors import SerializationError
from cdc.events import SourceInfo, TableId
from cdc.positions import position_json
from cdc.serde.binary import INT32_MAX, NULL_BRANCH, VALUE_BRANCH, zigzag
from cdc.serde.binary import string as _string
from cdc.serde.sourceblock import CommonFields, source_with_index
from connectors.mysql.position import MySqlPosition

FIELDS: Final[tuple[Mapping[str, Any], ...]] = (
    {"name": "table", "type": ["null", "string"], "default": None},
    {"name": "server_id", "type": "long"},
    {"name": "gtid", "type": ["null", "string"], "default": None},
    {"name": "file", "type": "string"},
    {"name": "pos", "type": "long"},
    {"name": "row", "type": "int"},
    {"name": "thread", "type": ["null", "long"], "default": None},
    {"name": "query", "type": ["null", "string"], "default": None},
)


#: The bytes between the connector fields before ``row`` and ``cdc_position``'s value
#: for the common indexes: ``row`` (the index), ``thread`` and ``query`` (both null).
_ROW_TO_POSITION: Final = tuple(zigzag(i) + NULL_BRANCH + NULL_BRANCH for i in range(1024))


class MySqlSourceWriter:
    """Writes the ``source`` record of one table's events (:class:`cdc.spi.SourceWriter`)."""

    __slots__ = (
        "_common",
        "_gtid_set",
        "_my_head",
        "_my_snapshot",
        "_post",
        "_pre",
        "_table_part",
        "_tails",
        "_tx_key",
    )

    def __init__(self, table: TableId) -> None:
        self._common = CommonFields(table)
        self._table_part = VALUE_BRANCH + _string(table.table)
        self._tx_key: tuple[Any, ...] = ()
        self._pre = self._post = b""
        self._gtid_set: object = None
        self._my_snapshot: object = None
        self._my_head = b""
        self._tails = (b"", b"")  # the JSON after the index: last_in_tx false, true

    def encode(self, src: SourceInfo) -> bytes:
        pos = src.position
        if pos.__class__ is not MySqlPosition:
            raise SerializationError(f"a {src.connector} source event has a {pos.kind} position")
        assert isinstance(pos, MySqlPosition)
        key = (src.ts_ms, pos.file.name, pos.pos, pos.server_id, pos.gtid, src.tx_id,
               src.snapshot, src.name, src.version, src.connector, src.origin, src.db_version,
               pos.vts)  # fmt: skip
        if key != self._tx_key:
            self._new_transaction(src, pos, key)
            self._gtid_set = None  # file/pos/GTID may have changed: split the JSON again
        if pos.gtid_set is not self._gtid_set or pos.snapshot is not self._my_snapshot:
            self._position_parts(pos)
        index = pos.index
        if self._my_head and 0 <= index < 1024:
            # The JSON of to_dict(), from per-transaction pieces (checked in _position_parts)
            return source_with_index(self._pre + _ROW_TO_POSITION[index], self._my_head, index,
                                     self._tails[pos.last_in_tx], self._post)  # fmt: skip
        # row, thread (null), query (null), then cdc_position
        return b"".join((self._pre, zigzag(min(index, INT32_MAX)), NULL_BRANCH, NULL_BRANCH,
                         VALUE_BRANCH, _string(position_json(pos.to_dict())), self._post))  # fmt: skip

    def _position_parts(self, pos: MySqlPosition) -> None:
        """Split a MySqlPosition's JSON around its per-event fields (index, last_in_tx).

        Everything else in it (file, pos, GTIDs, server id, snapshot) is the same
        for all events of a transaction. Exact by construction: the sentinel
        int and the trailing JSON ``false`` are replaced by the event's own.
        """
        self._gtid_set = pos.gtid_set
        self._my_snapshot = pos.snapshot
        self._my_head = b""
        d = pos.to_dict()
        sentinel = 987_654_321_987_654_321
        d["index"], d["last_in_tx"] = sentinel, False
        probe = position_json(d)
        parts = probe.split(str(sentinel))
        if len(parts) != 2 or not parts[1].endswith("false}"):
            return
        mid = parts[1][: -len("false}")]
        self._my_head = parts[0].encode()
        self._tails = ((mid + "false}").encode(), (mid + "true}").encode())

    def _new_transaction(self, src: SourceInfo, pos: MySqlPosition, key: tuple[Any, ...]) -> None:
        head, self._post = self._common.around(src)
        self._pre = b"".join(
            (
                head,
                self._table_part,
                zigzag(pos.server_id),
                NULL_BRANCH if pos.gtid is None else VALUE_BRANCH + _string(pos.gtid),
                _string(pos.file.name),
                zigzag(pos.pos),
            )
        )
        self._tx_key = key


class MySqlSourceBlock:
    """A MySQL-shaped source block (:class:`cdc.spi.SourceBlock`): ``mysql`` or ``mariadb``."""

    fields: Sequence[Mapping[str, Any]] = FIELDS

    def __init__(self, connector: str) -> None:
        self.connector = connector
        self.namespace = f"io.debezium.connector.{connector}"

    def writer(self, table: TableId) -> MySqlSourceWriter:
        return MySqlSourceWriter(table)


BLOCKS: Final = (MySqlSourceBlock("mysql"), MySqlSourceBlock("mariadb"))
