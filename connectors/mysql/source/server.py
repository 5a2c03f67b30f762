"""Talking to the source server outside the binlog protocol itself.

The snapshot, the binlog reader and the preflight check all need the same few
facts (flavor, server id, current binlog position and GTID state, the list of
binary logs) and the same classification of PyMySQL errors into "the server
went away, retry" versus everything else. They live here so the three agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pymysql
import pymysql.connections
import pymysql.err

from cdc.errors import PrerequisiteError, RetriableError
from connectors.mysql.latin1 import MYSQL_LATIN1
from connectors.mysql.position import BinlogFile, GtidSet

#: Client/server error codes that mean "the connection is gone": can't
#: connect (2003), server gone away (2006), lost during query (2013), lost at
#: handshake (2055, 2026 TLS), server shutdown in progress (1053), connection
#: killed (1927, MariaDB), too many connections (1040).
DISCONNECT_CODES: Final = frozenset({1040, 1053, 1927, 2003, 2006, 2013, 2026, 2055})
#: ER_MASTER_FATAL_ERROR_READING_BINLOG: the requested position or GTID state
#: is not in the server's binary logs (purged, or from another server).
ER_BINLOG_POSITION_GONE: Final = 1236

RESNAPSHOT_HINT: Final = (
    "the binlog this source stopped at is no longer on the server; take a new snapshot "
    "(cdc reset-source FILE --name <source>, or run once with snapshot mode `always`), "
    "and keep "
    "binlogs longer (binlog_expire_logs_seconds / expire_logs_days) than cdc may be stopped"
)


class ConnectionLost(RetriableError):
    """The server closed or dropped the connection; reconnecting may succeed."""


def is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionLost):
        return True
    if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
        code = exc.args[0] if exc.args else None
        return code in DISCONNECT_CODES or isinstance(exc, pymysql.err.InterfaceError)
    return isinstance(exc, ConnectionError | TimeoutError)


class StreamConnection(pymysql.connections.Connection):  # type: ignore[misc]
    """A PyMySQL connection whose lost-connection errors are :class:`ConnectionLost`.

    mysql-replication catches OperationalError 2006/2013 inside ``fetchone``
    and silently reconnects from the last *event* it saw - in the middle of a
    transaction, or (with GTIDs) from the GTID state it started with, which
    replays everything. Raising a different type takes reconnection away from
    it, so the reader can resume from the last transaction it fully emitted.
    """

    def __init__(self, **kwargs: Any) -> None:
        # mysql-replication passes the deprecated ``db`` for its control connection.
        if "db" in kwargs:
            kwargs["database"] = kwargs.pop("db")
        super().__init__(**kwargs)

    def _read_packet(self, packet_type: Any = pymysql.connections.MysqlPacket) -> Any:
        try:
            return super()._read_packet(packet_type)
        except pymysql.err.OperationalError as e:
            if e.args and e.args[0] in DISCONNECT_CODES:
                raise ConnectionLost(f"connection to the source lost: {e.args[-1]}") from e
            raise


def connect(kwargs: Mapping[str, Any], **extra: Any) -> pymysql.connections.Connection:
    """A PyMySQL connection; an unreachable server is :class:`ConnectionLost`."""
    args = {"autocommit": True, **kwargs, **extra}
    try:
        conn = pymysql.connect(**args)
    except pymysql.err.OperationalError as e:
        if is_disconnect(e):
            where = f"{args.get('host')}:{args.get('port')}"
            raise ConnectionLost(f"cannot reach the MySQL source at {where}: {e.args[-1]}") from e
        raise
    if conn.encoding == "cp1252":
        # A latin1 connection: PyMySQL decodes it as strict cp1252, which raises on
        # the five bytes MySQL's latin1 maps to U+0081... (latin1.MYSQL_LATIN1).
        conn.encoding = MYSQL_LATIN1
    return conn


@dataclass(frozen=True, slots=True)
class ServerInfo:
    version: str  # e.g. "10.11.19-MariaDB-0+deb12u1-log"
    mariadb: bool
    server_id: int


def server_info(cur: Any) -> ServerInfo:
    cur.execute("SELECT VERSION(), @@server_id")
    version, server_id = cur.fetchone()
    version = version.decode() if isinstance(version, bytes) else str(version)
    return ServerInfo(version, "mariadb" in version.lower(), int(server_id))


def variables(cur: Any, *names: str) -> dict[str, str | None]:
    """Global variables by name (None when the server has no such variable)."""
    out: dict[str, str | None] = dict.fromkeys(names)
    cur.execute(
        "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES "
        "WHERE VARIABLE_NAME IN (" + ",".join(["%s"] * len(names)) + ")",
        [n.upper() for n in names],
    )
    by_upper = {n.upper(): n for n in names}
    for name, value in cur.fetchall():
        name = name.decode() if isinstance(name, bytes) else name
        value = value.decode() if isinstance(value, bytes) else value
        out[by_upper[str(name).upper()]] = None if value is None else str(value)
    return out


def master_status(cur: Any) -> tuple[BinlogFile, int]:
    """The binlog file and position the next transaction will be written at."""
    try:
        cur.execute("SHOW BINARY LOG STATUS")  # MySQL >= 8.2
    except pymysql.err.ProgrammingError:
        cur.execute("SHOW MASTER STATUS")
    except pymysql.err.OperationalError as e:
        if is_disconnect(e):
            raise
        cur.execute("SHOW MASTER STATUS")
    row = cur.fetchone()
    if row is None:
        raise PrerequisiteError(
            "the source server has binary logging off (SHOW MASTER STATUS is empty)",
            hint="start it with log_bin (e.g. --log-bin=mysql-bin) and binlog_format=ROW",
        )
    name = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
    return BinlogFile(name), int(row[1])


def gtid_state(cur: Any, mariadb: bool) -> GtidSet:
    """The server's executed GTID state (MariaDB ``gtid_binlog_pos``)."""
    if mariadb:
        cur.execute("SELECT @@GLOBAL.gtid_binlog_pos")
    else:
        cur.execute("SELECT @@GLOBAL.gtid_executed")
    (value,) = cur.fetchone()
    text = value.decode() if isinstance(value, bytes) else str(value or "")
    return GtidSet.parse(text)


def binary_logs(cur: Any) -> list[tuple[BinlogFile, int]]:
    """``SHOW BINARY LOGS``: every binlog file still on the server, oldest first."""
    cur.execute("SHOW BINARY LOGS")
    out = []
    for row in cur.fetchall():
        name = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
        out.append((BinlogFile(name), int(row[1])))
    return sorted(out)


def check_position_available(
    logs: list[tuple[BinlogFile, int]], file: BinlogFile, pos: int
) -> None:
    """Raise PrerequisiteError unless ``file``/``pos`` is still readable on the server."""
    if not logs:
        raise PrerequisiteError(
            "the source server lists no binary logs", hint="enable log_bin on the server"
        )
    sizes = dict(logs)
    if file in sizes:
        if pos > sizes[file]:
            raise PrerequisiteError(
                f"binlog position {file}:{pos} is past the end of that file "
                f"({sizes[file]} bytes): the stored position is from another server or a "
                "rebuilt one",
                hint=RESNAPSHOT_HINT,
            )
        return
    oldest, newest = logs[0][0], logs[-1][0]
    if file < oldest:
        raise PrerequisiteError(
            f"binlog {file} has been purged from the source (oldest kept: {oldest})",
            hint=RESNAPSHOT_HINT,
        )
    raise PrerequisiteError(
        f"binlog {file} is not on the source (it has {oldest} .. {newest}): the stored "
        "position is from another server, or the server's binlogs were reset",
        hint=RESNAPSHOT_HINT,
    )
