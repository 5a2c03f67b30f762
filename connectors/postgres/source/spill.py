"""The spill buffer: one transaction's raw pgoutput messages, in memory or in a temp file.

Events carry the transaction's commit *end* LSN, which pgoutput only reveals
in the Commit (or Stream Commit) message, so the stream reader
(:mod:`.replication`) keeps each open transaction's messages in a
:class:`TxBuffer` and replays them into events at commit
(:mod:`.changes`). Past ``spill_bytes`` a buffer moves to a temporary file,
so memory stays flat however large a transaction is. Streamed in-progress
transactions use one buffer per xid, holding the messages with their xid
prefix; the buffer also records the subtransactions a Stream Abort dropped.

It neither decodes messages nor decides when a transaction ends.
"""

from __future__ import annotations

import logging
import struct
import tempfile
from collections.abc import Iterator
from typing import IO, Final

from cdc.errors import SerializationError

log = logging.getLogger(__name__)

_LEN: Final = struct.Struct(">I")


class TxBuffer:
    """The raw pgoutput messages of one transaction, spilled to a temp file when large.

    Raw bytes are what is kept because they are the most compact form (a
    10-column row is ~100 bytes) and trivially written to disk; decoding
    happens once, at commit. ``streamed`` buffers hold messages with the xid
    prefix of stream blocks; ``aborted`` lists subtransactions whose changes
    are dropped at replay (Stream Abort of a subxact).
    """

    __slots__ = (
        "aborted",
        "file",
        "items",
        "limit",
        "size",
        "streamed",
        "xid",
    )

    def __init__(self, xid: int, *, streamed: bool, limit: int) -> None:
        self.xid = xid
        self.streamed = streamed
        self.limit = limit
        self.items: list[bytes] = []
        self.size = 0
        self.file: IO[bytes] | None = None
        self.aborted: set[int] = set()

    def add(self, payload: bytes) -> None:
        if self.file is not None:
            self.file.write(_LEN.pack(len(payload)))
            self.file.write(payload)
            return
        self.items.append(payload)
        self.size += len(payload)
        if self.size > self.limit:
            self._spill()

    def _spill(self) -> None:
        # Lives as long as the buffer (closed by close()); deleted by the OS on close.
        f = tempfile.TemporaryFile(prefix=f"cdc-pg-tx{self.xid}-", buffering=1 << 20)  # noqa: SIM115
        pack = _LEN.pack
        for p in self.items:
            f.write(pack(len(p)))
            f.write(p)
        log.info("transaction %d: %d messages (%d bytes) spilled to disk", self.xid,
                 len(self.items), self.size)
        self.items = []
        self.file = f

    @property
    def spilled(self) -> bool:
        return self.file is not None

    def __iter__(self) -> Iterator[bytes]:
        f = self.file
        if f is None:
            yield from self.items
            return
        f.flush()
        f.seek(0)
        read = f.read
        unpack = _LEN.unpack
        while True:
            head = read(4)
            if not head:
                return
            if len(head) != 4:
                raise SerializationError(f"transaction {self.xid}: truncated spill file")
            (n,) = unpack(head)
            payload = read(n)
            if len(payload) != n:
                raise SerializationError(f"transaction {self.xid}: truncated spill file")
            yield payload

    def close(self) -> None:
        self.items = []
        if self.file is not None:
            self.file.close()
            self.file = None

