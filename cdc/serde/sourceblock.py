"""Building blocks of connectors' ``source`` writers: the common fields' bytes.

Every ``source`` record starts with Debezium's common fields and ends with
cdc's extensions (:mod:`cdc.serde.envelope` declares both); a connector's
:class:`cdc.spi.SourceWriter` writes its own fields in between. This module
gives writers the bytes of the common parts, cached per transaction, and
:func:`source_with_index`, the native splice of the one per-event text most
writers have (a ``cdc_position`` whose only per-event part is the event's
index). Writers run once per event on the source's hot path: nothing here
allocates more than the bytes it returns.

The simplest correct writer caches nothing but :class:`CommonFields`::

    def encode(self, src: SourceInfo) -> bytes:
        own = ...  # the block's own fields, in order (cdc.serde.binary primitives)
        text = position_json(src.position.to_dict())  # cdc.positions
        head, tail = self.common.around(src)
        return head + own + position_field(text) + tail
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from cdc import native
from cdc.events import SourceInfo, TableId
from cdc.serde.binary import NULL_BRANCH, VALUE_BRANCH, zigzag
from cdc.serde.binary import string as _string

_C: Final = native.load("cdc.serde._cencode")


def _source_with_index(pre: bytes, head: bytes, index: int, tail: bytes, post: bytes) -> bytes:
    """The reference of the native splice (``_cencode.source_with_index``):
    ``pre``, then a ``["null", "string"]`` union's string ``head + str(index) + tail``
    (UTF-8 bytes), then ``post``."""
    text = head + str(index).encode("ascii") + tail
    return b"".join((pre, VALUE_BRANCH, zigzag(len(text)), text, post))


source_with_index: Final[Callable[[bytes, bytes, int, bytes, bytes], bytes]] = (
    _source_with_index if _C is None else _C.source_with_index
)
"""``pre + string(head + str(index) + tail) + post`` as a union's value branch; the C
version takes an ``index`` in the signed 64-bit range (OverflowError beyond)."""


def _sources_with_index(pre: bytes, head: bytes, start: int, count: int, tail: bytes,
                        post: bytes) -> list[bytes]:
    """The reference of ``_cencode.sources_with_index``: :func:`source_with_index` of
    ``start``, ``start + 1``, ... (``count`` of them)."""
    if count < 0:
        raise ValueError("sources_with_index: count must not be negative")
    return [source_with_index(pre, head, start + i, tail, post) for i in range(count)]


sources_with_index: Final[Callable[[bytes, bytes, int, int, bytes, bytes], list[bytes]]] = (
    _sources_with_index if _C is None else _C.sources_with_index
)
"""The source records of consecutive indexes (a snapshot batch's), in one call."""


class CommonFields:
    """The common fields' bytes of one table's source records.

    :meth:`around` gives the bytes before the connector's own fields and after
    ``cdc_position``. What depends only on the connector's lifetime is cached;
    call it once per transaction.
    """

    __slots__ = ("_db", "_head", "_middle", "_statics", "_tail")

    def __init__(self, table: TableId) -> None:
        self._db = _string(table.database)
        self._statics: tuple[Any, ...] = ()
        self._head = self._middle = self._tail = b""

    def _refresh(self, src: SourceInfo) -> None:
        statics = (src.version, src.connector, src.name, src.snapshot, src.origin, src.db_version)
        # Constant for a connector's lifetime (the snapshot flag flips once).
        self._statics = statics
        self._head = b"".join((_string(src.version), _string(src.connector), _string(src.name)))
        # snapshot ([string, null] union: branch 0), db, sequence (null)
        self._middle = b"".join((b"\x00" + _string(src.snapshot), self._db, NULL_BRANCH))
        self._tail = b"".join(
            (
                NULL_BRANCH if src.origin is None else VALUE_BRANCH + _string(src.origin),
                NULL_BRANCH if not src.db_version else VALUE_BRANCH + _string(src.db_version),
            )
        )

    def around(self, src: SourceInfo) -> tuple[bytes, bytes]:
        """``(head, tail)``: the fields before the connector's own (version, connector,
        name, ts_ms, snapshot, db, sequence) and those after ``cdc_position``
        (cdc_origin, cdc_db_version, cdc_tx_id)."""
        if (src.version, src.connector, src.name, src.snapshot, src.origin,
                src.db_version) != self._statics:  # fmt: skip
            self._refresh(src)
        tx = src.tx_id
        return (
            b"".join((self._head, zigzag(src.ts_ms), self._middle)),
            self._tail + (NULL_BRANCH if tx is None else VALUE_BRANCH + _string(tx)),
        )


def position_field(text: str) -> bytes:
    """``cdc_position`` (a ``["null", "string"]`` union) holding ``text``."""
    return VALUE_BRANCH + _string(text)
