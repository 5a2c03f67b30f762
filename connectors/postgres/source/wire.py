"""The replication wire: a ``replication=database`` connection and its error classes.

Owned by the stream reader (:mod:`.replication`) and the source connector
(:mod:`.connector`, which creates the slot on it before a snapshot). It runs
the replication commands (CREATE_REPLICATION_SLOT, START_REPLICATION), sends
standby status updates without blocking on a full send buffer, and explains
why a COPY BOTH stream ended (the server's error and SQLSTATE). It also maps
psycopg errors to retriable (:class:`ConnectionLost`) or fatal ones for the
whole source (:func:`classify`).

It does not read the stream: the reader's session loop drives
``pgconn.get_copy_data`` itself (non-blocking, with ``poll`` on the socket:
a blocking ``get_copy_data(0)`` would hold the GIL; MACHINE-NOTES.md). The
CopyBoth message formats are in :mod:`.decoder`.
"""

from __future__ import annotations

import logging
import select
import time
from typing import Any, Final

import psycopg
from psycopg import pq

from cdc.errors import CdcError, PrerequisiteError, RetriableError
from connectors.postgres.position import Lsn
from connectors.postgres.source.decoder import encode_standby_status
from connectors.postgres.source.messages import pg_timestamp_now

log = logging.getLogger(__name__)


class ConnectionLost(RetriableError):
    """The replication or catalog connection dropped; the stream reconnects."""


# SQLSTATEs meaning "try again later": connection trouble, shutdown, slot busy.
_RETRIABLE_STATES: Final = frozenset({"57P01", "57P02", "57P03", "55006", "53300", "53400"})


def classify(e: BaseException, what: str) -> CdcError:
    """Map a psycopg error to retriable (:class:`ConnectionLost`) or fatal."""
    if isinstance(e, CdcError):
        return e
    state = getattr(getattr(e, "diag", None), "sqlstate", None) or getattr(e, "sqlstate", None)
    if isinstance(e, psycopg.OperationalError) and (
        state is None or state in _RETRIABLE_STATES or str(state).startswith("08")
    ):
        return ConnectionLost(f"{what}: {e}")
    if isinstance(e, (psycopg.InterfaceError, OSError)):
        return ConnectionLost(f"{what}: {e}")
    return PrerequisiteError(f"{what}: {e}" + (f" (SQLSTATE {state})" if state else ""))


class ReplicationConnection:
    """A ``replication=database`` connection: slot commands, then the COPY BOTH stream."""

    def __init__(self, conninfo: str) -> None:
        try:
            self.conn: psycopg.Connection[Any] = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as e:
            raise classify(e, "cannot open a replication connection") from e
        self.pgconn: pq.abc.PGconn = self.conn.pgconn
        self.streaming = False

    def create_slot(self, slot: str, *, temporary: bool, export: bool) -> tuple[Lsn, str | None]:
        """Create a pgoutput slot; with ``export`` also a snapshot of its consistent point.

        The exported snapshot stays importable until the next command on this
        connection, so the caller keeps it idle until the snapshot is imported.
        Uses the pre-15 keyword syntax, which every supported version accepts.
        """
        cmd = (
            f'CREATE_REPLICATION_SLOT "{slot}" {"TEMPORARY " if temporary else ""}LOGICAL pgoutput '
            f"{'EXPORT_SNAPSHOT' if export else 'NOEXPORT_SNAPSHOT'}"
        )
        try:
            row = self.conn.execute(cmd).fetchone()
        except psycopg.Error as e:
            raise classify(e, f"cannot create replication slot {slot}") from e
        assert row is not None
        return Lsn.parse(row[1]), row[2]

    def start(self, slot: str, lsn: Lsn, options: str) -> None:
        cmd = f'START_REPLICATION SLOT "{slot}" LOGICAL {lsn} ({options})'
        try:
            self.conn.execute(cmd)
        except psycopg.Error as e:
            raise classify(e, f"START_REPLICATION on slot {slot} failed") from e
        if self.pgconn.status != pq.ConnStatus.OK:
            raise ConnectionLost(f"START_REPLICATION on slot {slot}: connection is not usable")
        self.streaming = True

    def send_status(self, write: int, flush: int, apply: int, reply: bool = False) -> None:
        msg = encode_standby_status(write, flush, apply, pg_timestamp_now(), reply)
        pgconn = self.pgconn
        try:
            writable: select.poll | None = None
            deadline = 0.0
            queued = False
            while not queued or pgconn.flush() == 1:
                if not queued:
                    queued = pgconn.put_copy_data(msg) == 1
                    if queued:
                        continue
                # The non-blocking send buffer is full: wait until the socket drains.
                if writable is None:
                    writable = select.poll()
                    writable.register(pgconn.socket, select.POLLOUT)
                    deadline = time.monotonic() + 30
                elif time.monotonic() > deadline:
                    raise ConnectionLost("the server has not read a status update for 30s")
                writable.poll(1000)
        except (OSError, psycopg.Error) as e:
            raise ConnectionLost(f"cannot send a standby status update: {e}") from e

    def copy_error(self, cause: BaseException | None = None) -> CdcError:
        """Why the COPY stream ended: the server's error (with SQLSTATE) if it sent one."""
        pgconn = self.pgconn
        detail = pgconn.error_message.decode(errors="replace").strip() if pgconn.error_message else ""
        sqlstate: str | None = None
        try:
            for _ in range(8):  # the COPY's final result(s), then None
                res = pgconn.get_result()
                if res is None:
                    break
                if res.status == pq.ExecStatus.FATAL_ERROR:
                    detail = res.error_message.decode(errors="replace").strip() or detail
                    raw = res.error_field(pq.DiagnosticField.SQLSTATE)
                    sqlstate = raw.decode() if raw else None
        except psycopg.Error:
            pass  # the connection is gone: what we have is all there is to say
        text = detail or (str(cause) if cause else "the server ended the replication stream")
        if sqlstate is None or sqlstate in _RETRIABLE_STATES or sqlstate.startswith("08"):
            return ConnectionLost(f"replication stream ended: {text}")
        return PrerequisiteError(f"replication stream failed: {text} (SQLSTATE {sqlstate})")

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # closing a broken connection: nothing more to learn
            log.debug("closing the replication connection failed", exc_info=True)

