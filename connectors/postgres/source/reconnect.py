"""The reconnect policy: resume a dropped replication stream from the acknowledged position.

:class:`ReconnectPolicy` is the outer part of
:class:`~.replication.StreamReader`: its :meth:`~ReconnectPolicy.stream` is
the reader's entry point. A dropped connection (server restart, network) is
retried with bounded exponential backoff (``reconnect_initial_s`` doubling up
to ``reconnect_max_s``) for at most ``reconnect_timeout_s``, yielding
heartbeats while it waits so the runtime can still checkpoint and stop, and
each new session resumes from the last acknowledged position. Before every
START_REPLICATION the slot is checked (:meth:`~ReconnectPolicy._start_lsn`):
a slot that has disappeared, belongs to another plugin or database, was
invalidated, or was consumed past the stored position is fatal, never
papered over. Transactions the server resends are skipped by
:mod:`.changes`, so a reconnect adds no duplicates. :class:`Session` is
what one connection holds and a reconnect discards.

It does not read messages: the session loop (``StreamReader._run``) does.
It is a base class rather than a wrapper object, so the events pass through
one generator here, as before the split; the reader's state it uses is
declared below for the type checker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from cdc.errors import CdcError, PrerequisiteError, RetriableError, UnreachableError
from cdc.spi import Heartbeat, StreamItem
from connectors.postgres.position import Lsn, PgPosition
from connectors.postgres.source import catalog
from connectors.postgres.source.messages import Begin
from connectors.postgres.source.spill import TxBuffer
from connectors.postgres.source.wire import ReplicationConnection, classify

if TYPE_CHECKING:
    from connectors.postgres.source.replication import StreamSettings

log = logging.getLogger(__name__)


def lsn_of(position: PgPosition | None) -> int:
    """The LSN of ``position`` as an int, 0 for none."""
    return position.lsn.value if position is not None else 0


@dataclass(slots=True)
class Session:
    """Per-connection state; discarded on reconnect (the server resends from the ack)."""

    repl: ReplicationConnection
    tx: TxBuffer | None = None
    tx_begin: Begin | None = None
    streams: dict[int, TxBuffer] = field(default_factory=dict)
    block: TxBuffer | None = None  # the stream block being received
    received: int = 0  # highest LSN known received (write LSN)
    wal_end: int = 0  # WAL end from the last keepalive
    last_status: float = 0.0

    def close(self) -> None:
        if self.tx is not None:
            self.tx.close()
        for b in self.streams.values():
            b.close()
        self.streams.clear()
        self.repl.close()


class ReconnectPolicy:
    """Streams across reconnects and checks the slot before each start (module docstring)."""

    if TYPE_CHECKING:  # the reader's state this reads and advances (replication.StreamReader)
        settings: StreamSettings
        source_name: str
        database: str
        stats: dict[str, int]
        _connect_replication: Callable[[], ReplicationConnection]
        _sql: psycopg.Connection[Any] | None
        _session: Session | None
        _acked: PgPosition | None
        _yielded: PgPosition | None
        _boundary: PgPosition | None
        _progress: int
        _last_yield: float
        _closed: bool

        def sql(self) -> psycopg.Connection[Any]: ...

        def _run(self, s: Session) -> Iterator[StreamItem]: ...

    def stream(
        self, start: PgPosition | None, *, repl: ReplicationConnection | None = None
    ) -> Iterator[StreamItem]:
        """Yield committed changes after ``start`` forever (see module docstring).

        ``repl`` is an already open replication connection to reuse (the one
        that created the slot for the snapshot). Never returns: a stream that
        cannot continue raises.
        """
        self._yielded = start
        self._boundary = start if start is not None and (start.last_in_tx or start.snapshot) else None
        self._acked = start if start is not None and (start.last_in_tx or start.snapshot) else None
        self._progress = lsn_of(start) if start is not None and (start.last_in_tx or start.snapshot) else 0
        items: Iterator[StreamItem] | None = None
        failures = 0
        first_failure = 0.0
        first = True
        while True:
            if self._closed:
                raise RetriableError("the PostgreSQL source was closed while streaming")
            try:
                try:
                    if items is None:
                        handed, repl = repl, None  # a failed open closes it: use it once
                        items = self._open(start if first else None, handed)
                        first = False
                    item = next(items)
                except psycopg.Error as e:
                    raise classify(e, "PostgreSQL connection failed") from e
            except StopIteration:
                raise CdcError("the replication stream ended without an error") from None
            except CdcError as e:
                if not e.retriable:
                    self._drop_session()
                    raise
                self._drop_session()
                items = None
                now = time.monotonic()
                if failures == 0:
                    first_failure = now
                    log.warning("%s: %s; reconnecting", self.source_name, e)
                if now - first_failure > self.settings.reconnect_timeout_s:
                    raise UnreachableError(
                        f"PostgreSQL replication connection lost and not back after "
                        f"{self.settings.reconnect_timeout_s:.0f}s: {e}",
                        hint="check that the server is up and reachable; the source resumes "
                        "from its last durable position when restarted",
                    ) from e
                delay = min(self.settings.reconnect_max_s,
                            self.settings.reconnect_initial_s * (2 ** min(failures, 20)))
                failures += 1
                self.stats["reconnects"] += 1
                yield from self._wait(delay)
                continue
            if failures:
                log.info("%s: replication stream resumed after %d attempt(s)", self.source_name,
                         failures)
                failures = 0
            yield item

    def _wait(self, delay: float) -> Iterator[StreamItem]:
        """Sleep ``delay`` seconds while still yielding heartbeats (stop requests)."""
        deadline = time.monotonic() + delay
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, self.settings.idle_yield_s))
            if self._boundary is not None:
                self._last_yield = time.monotonic()
                yield Heartbeat(self._boundary)

    def _drop_session(self) -> None:
        s, self._session = self._session, None
        if s is not None:
            s.close()
        if self._sql is not None:
            try:
                self._sql.close()
            except Exception:
                log.debug("closing the catalog connection failed", exc_info=True)
            self._sql = None

    def _open(
        self, start: PgPosition | None, repl: ReplicationConnection | None
    ) -> Iterator[StreamItem]:
        """Check the slot, START_REPLICATION, and return the session's item iterator.

        ``start`` is given on the first open only: it is checked against the
        slot. Reconnects resume from the acknowledged position instead.
        """
        try:
            start_lsn = self._start_lsn(start)
        except BaseException:
            if repl is not None:
                repl.close()
            raise
        if repl is None:
            repl = self._connect_replication()
        self._session = session = Session(repl)
        try:
            repl.start(self.settings.slot, Lsn(start_lsn), self.settings.start_options())
        except CdcError:
            self._drop_session()
            raise
        session.received = start_lsn
        session.last_status = time.monotonic()
        log.info("%s: streaming slot %s from %s", self.source_name, self.settings.slot,
                 Lsn(start_lsn))
        return self._run(session)

    def _start_lsn(self, start: PgPosition | None) -> int:
        """Check the slot (fatal if gone, foreign or invalidated); the LSN to start at."""
        conn = self.sql()
        try:
            slot = catalog.slot_facts(conn, self.settings.slot)
        except psycopg.Error as e:
            raise classify(e, "cannot read pg_replication_slots") from e
        resume = self._acked if self._acked is not None else start
        if slot is None:
            raise PrerequisiteError(
                f"replication slot {self.settings.slot} does not exist, but this source has a "
                f"stored position ({resume}): the changes since then are gone",
                hint="cdc never re-creates a slot silently. Reset the source's offsets (cdc "
                "reset-source FILE --name <source>) and let it snapshot again (the slot is "
                "then created), or restore the slot",
            )
        if slot.plugin != "pgoutput" or slot.slot_type != "logical":
            raise PrerequisiteError(
                f"replication slot {slot.name} is a {slot.slot_type} slot of plugin "
                f"{slot.plugin!r}, not a logical pgoutput slot",
                hint="use another slot_name, or, if it is cdc's, drop it with "
                "cdc reset-source FILE --name <source> --release",
            )
        if slot.database is not None and slot.database != self.database:
            raise PrerequisiteError(
                f"replication slot {slot.name} belongs to database {slot.database}, "
                f"not {self.database}",
                hint="use another slot_name for this source",
            )
        if slot.lost:
            raise PrerequisiteError(
                f"replication slot {slot.name} was invalidated (wal_status=lost): the server "
                "removed WAL the slot still needed, so changes are missing",
                hint="cdc reset-source FILE --name <source> --release (drops the slot and the "
                "offsets: the next start snapshots again); raise max_slot_wal_keep_size to "
                "avoid it",
            )
        confirmed = slot.confirmed_flush.value if slot.confirmed_flush is not None else 0
        if resume is not None and (resume.last_in_tx or resume.snapshot):
            if start is not None and confirmed > start.lsn.value:
                raise PrerequisiteError(
                    f"replication slot {slot.name} is confirmed up to {slot.confirmed_flush}, "
                    f"past this source's stored position {resume.lsn}: the changes between "
                    "them were consumed by someone else and would be missing",
                    hint="make sure only this source uses the slot; then reset the source's "
                    "offsets and snapshot again",
                )
            start_lsn = resume.lsn.value
        else:
            start_lsn = confirmed
        if self._yielded is None and confirmed:
            self._yielded = self._boundary = PgPosition(Lsn(confirmed))
        self._progress = max(self._progress, start_lsn)
        if self._acked is None and start_lsn:
            self._acked = PgPosition(Lsn(start_lsn))
        return start_lsn

