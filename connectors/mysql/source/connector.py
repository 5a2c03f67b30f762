"""``MySqlSource``: the MySQL/MariaDB implementation of :class:`cdc.spi.SourceConnector`.

It wires the pieces together and owns nothing clever itself: the preflight
check, :class:`~connectors.mysql.source.snapshot.SnapshotReader` for the
consistent copy, :class:`~connectors.mysql.source.binlog.BinlogReader` for the
stream. A binlog has no server-side replication slot, so ``acknowledge`` only
records how far the pipeline is durable (the server keeps binlogs by its own
retention; see TYPES.md / README for sizing it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Literal

import pymysql.err

from cdc.errors import ConfigError, PositionError, UnreachableError
from cdc.events import ChangeEvent, TableId
from cdc.spi import (
    Chunk,
    KeyGenerator,
    Position,
    Problem,
    SnapshotChunk,
    SnapshotResume,
    SnapshotRows,
    StreamItem,
    TableCopy,
)
from connectors.mysql import guardrail
from connectors.mysql.guardrail import BinlogGuard
from connectors.mysql.position import MySqlPosition
from connectors.mysql.source import multiwriter
from connectors.mysql.source.binlog import BinlogReader
from connectors.mysql.source.incremental import SIGNAL_TABLE_DDL, IncrementalReads
from connectors.mysql.source.incremental import position_after as _position_after
from connectors.mysql.source.server import connect, server_info, variables
from connectors.mysql.source.snapshot import (
    SYSTEM_SCHEMAS,
    CannotResume,
    SnapshotLock,
    SnapshotReader,
    list_tables,
    quote,
)
from connectors.mysql.values import ZeroDatePolicy

if TYPE_CHECKING:
    from connectors.mysql.config import MySqlSourceConfig

log = logging.getLogger(__name__)

__all__ = ["MySqlSource", "table_filter"]

GtidMode = Literal["auto", "on", "off"]
_GRANT = re.compile(r"^GRANT\s+(?P<privs>.+?)\s+ON\s+(?P<on>\S+)\s+TO\s", re.IGNORECASE)


def table_filter(
    include: Sequence[str] = ("*.*",), exclude: Sequence[str] = ()
) -> Callable[[str, str], bool]:
    """``database.table`` shell patterns (case-sensitive); system schemas never match."""
    include, exclude = tuple(include), tuple(exclude)

    def captured(database: str, table: str) -> bool:
        if database in SYSTEM_SCHEMAS:
            return False
        name = f"{database}.{table}"
        return any(fnmatchcase(name, p) for p in include) and not any(
            fnmatchcase(name, p) for p in exclude
        )

    return captured


class MySqlSource:
    """A MySQL or MariaDB source (see the package README and TYPES.md).

    ``connect_kwargs`` are PyMySQL arguments; ``server_id`` is the replica id
    the binlog reader presents. ``heartbeat_s`` is how often an idle stream
    yields a Heartbeat (and asks the server for replication heartbeats).
    """

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        *,
        name: str,
        server_id: int,
        include: Sequence[str] = ("*.*",),
        exclude: Sequence[str] = (),
        zero_date: ZeroDatePolicy = "null",
        gtid_mode: GtidMode = "auto",
        chunk_size: int = 10_000,
        snapshot_lock: SnapshotLock = "auto",
        heartbeat_s: float = 1.0,
        reconnect_timeout_s: float = 120.0,
        fast_decode: bool = True,
        binlog_guard: BinlogGuard | None = None,
        skip_replicated: bool = False,
        signal_table: str | None = None,
    ) -> None:
        self.connect_kwargs = dict(connect_kwargs)
        self.name = name
        self.server_id = server_id
        self.include, self.exclude = tuple(include), tuple(exclude)
        self.captured = table_filter(include, exclude)
        self.zero_date: ZeroDatePolicy = zero_date
        self.gtid_mode: GtidMode = gtid_mode
        self.chunk_size = chunk_size
        self.snapshot_lock: SnapshotLock = snapshot_lock
        self.heartbeat_s = heartbeat_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self.acknowledged: MySqlPosition | None = None
        self.guard = binlog_guard  # connectors.mysql.guardrail
        self._snapshot: SnapshotReader | None = None
        self._batch_snapshot = False  # cdc.spi.BatchesSnapshot
        self.signal = signal_table
        self._incremental: IncrementalReads | None = None
        self.reader = BinlogReader(
            self.connect_kwargs,
            server_id=server_id,
            source_name=name,
            table_filter=self.captured,
            zero_date=zero_date,
            use_gtid={"auto": None, "on": True, "off": False}[gtid_mode],
            heartbeat_s=heartbeat_s,
            reconnect_timeout_s=reconnect_timeout_s,
            fast_decode=fast_decode,
            skip_replicated=skip_replicated,
        )

    @classmethod
    def from_config(cls, config: MySqlSourceConfig, *, name: str | None = None) -> MySqlSource:
        """Build from the validated ``MySqlSourceConfig``.

        The stream yields heartbeats at least every second (the runtime needs
        control back to checkpoint and to notice a stop), or more often if
        ``heartbeat_interval_s`` asks for it.
        """
        return cls(
            config.connection.pymysql_kwargs(),
            name=name or config.name,
            server_id=config.server_id,
            include=config.tables.include,
            exclude=config.tables.exclude,
            zero_date=config.zero_date,
            gtid_mode=config.gtid_mode,
            chunk_size=config.snapshot.chunk_size,
            snapshot_lock=config.snapshot_lock,
            heartbeat_s=min(1.0, config.heartbeat_interval_s),
            binlog_guard=config.binlog_guard,
            skip_replicated=config.skip_replicated_changes,
            signal_table=config.signal.table if config.signal is not None else None,
        )

    # ------------------------------------------------------------------ SPI

    def check(self) -> list[Problem]:
        """Every unmet prerequisite (none raised; a connection failure is one Problem)."""
        try:
            conn = connect(self.connect_kwargs)
        except Exception as e:
            return [
                Problem(
                    f"cannot connect to the MySQL source: {e}",
                    "check host, port, user and password, and that the server runs",
                    key="connection",
                )
            ]
        try:
            with conn.cursor() as cur:
                return self._check(cur)
        finally:
            conn.close()

    def captured_tables(self) -> list[TableId]:
        """cdc.spi.ListsTables: the tables the filter captures now."""
        try:
            conn = connect(self.connect_kwargs)
        except Exception as e:
            raise UnreachableError(f"{self.name}: cannot connect to the MySQL source: {e}") from e
        try:
            with conn.cursor() as cur:
                return [TableId(db, None, table) for db, table, _ in list_tables(cur, self.captured)]
        finally:
            conn.close()

    def key_generators(self) -> list[KeyGenerator]:
        """cdc.spi.ChecksMultiWriter: auto-increment columns of the captured tables."""
        try:
            conn = connect(self.connect_kwargs)
        except Exception as e:
            raise UnreachableError(f"{self.name}: cannot connect to the MySQL source: {e}") from e
        try:
            with conn.cursor() as cur:
                return multiwriter.key_generators(cur, self.captured)
        finally:
            conn.close()

    def copy_tables(self) -> TableCopy:
        """cdc.spi.CopiesTables: one consistent copy for snapshot replication."""
        from connectors.mysql.source.copy_run import copy_tables

        return copy_tables(self)

    def multi_writer_problems(self) -> list[Problem]:
        """cdc.spi.ChecksMultiWriter: none (row images are FULL: the source checks that)."""
        return []

    def batch_snapshot(self) -> None:
        """cdc.spi.BatchesSnapshot: later snapshots yield a chunk's rows as SnapshotRows."""
        self._batch_snapshot = True

    def snapshot(self, resume: Position | None) -> tuple[Position, Iterator[ChangeEvent]]:
        """A consistent snapshot from the start (the runner resumes through
        :meth:`resumable_snapshot`; ``resume`` is only logged)."""
        if resume is not None:
            log.warning(
                "%s: the previous snapshot was interrupted at %s; snapshotting again "
                "from the start",
                self.name,
                resume,
            )
        start, items = self._open(None, marks=False)
        return start, (i for i in items if type(i) is not SnapshotChunk)  # type: ignore[misc]

    def resumable_snapshot(
        self, resume: SnapshotResume | None
    ) -> tuple[Position, Iterator[ChangeEvent | SnapshotChunk | SnapshotRows]]:
        """cdc.spi.ResumesSnapshot: the snapshot with chunk marks, or its remaining chunks
        read in a new consistent view, positioned at (and streamed from) the first
        attempt's binlog position (SOURCE.md, "Resuming a snapshot")."""
        if resume is not None:
            if not isinstance(resume.start, MySqlPosition):
                raise PositionError(f"{self.name}: cannot resume a snapshot at {resume.start!r}")
            try:
                return self._open(resume, marks=True)
            except CannotResume as e:
                log.warning("%s: the interrupted snapshot is taken again from the start: %s, so "
                            "rows changed since %s could not be told from rows read again",
                            self.name, e, resume.start)
        return self._open(None, marks=True)

    def estimate_rows(self) -> dict[str, int]:
        """cdc.spi.EstimatesRows: ``information_schema.TABLES.TABLE_ROWS`` of the captured
        tables."""
        conn = connect(self.connect_kwargs)
        try:
            with conn.cursor() as cur:
                return {TableId(db, None, table).qualified: max(0, rows)
                        for db, table, rows in list_tables(cur, self.captured)}
        finally:
            conn.close()

    def _open(
        self, resume: SnapshotResume | None, *, marks: bool
    ) -> tuple[Position, Iterator[ChangeEvent | SnapshotChunk | SnapshotRows]]:
        if self._snapshot is not None:
            self._snapshot.close()
        self._snapshot = SnapshotReader(
            self.connect_kwargs,
            source_name=self.name,
            table_filter=self.captured,
            zero_date=self.zero_date,
            chunk_size=self.chunk_size,
            lock=self.snapshot_lock,
        )
        self._snapshot.batches = self._batch_snapshot
        return self._snapshot.open(marks=marks, resume=resume)

    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        if start is not None and not isinstance(start, MySqlPosition):
            raise PositionError(f"{self.name}: a MySQL source cannot start from {start!r}")
        return guardrail.guard(self, self.reader.stream(start), start)

    def acknowledge(self, position: Position) -> None:
        """Record the durable position; the binlog needs no server-side acknowledgement."""
        if not isinstance(position, MySqlPosition):
            raise PositionError(f"{self.name}: not a MySQL position: {position!r}")
        self.acknowledged = position

    def close(self) -> None:
        if self._incremental is not None:
            self._incremental.close()
        self.reader.close()
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None

    # ------------------------------------------------------ incremental snapshots (SPI)

    def _reads(self) -> IncrementalReads:
        if self.signal is None:
            raise ConfigError(f"{self.name}: no signal table is configured",
                              hint="set signal.table in the source's entry")
        if self._incremental is None:
            self._incremental = IncrementalReads(
                self.connect_kwargs, source_name=self.name, signal_table=self.signal,
                captured=self.captured, zero_date=self.zero_date)
        return self._incremental

    def signal_table(self) -> TableId | None:
        """cdc.spi.SnapshotsIncrementally (and the methods below)."""
        if self.signal is None:
            return None
        database, _, table = self.signal.partition(".")
        return TableId(database, None, table)

    def write_signal(self, signal_id: str, signal_type: str, data: str | None) -> None:
        self._reads().write_signal(signal_id, signal_type, data)

    def resolve_table(self, name: str) -> TableId | None:
        return self._reads().resolve(name)

    def table_rows_estimate(self, table: TableId) -> int:
        return self._reads().estimate(table)

    def read_chunk(self, table: TableId, after: Sequence[Any] | None, limit: int,
                   condition: str | None) -> Chunk:
        return self._reads().read_chunk(table, after, limit, condition)

    def position_after(self, position: Position, offset: int, last: bool) -> Position:
        return _position_after(position, offset, last)

    # ------------------------------------------------------------------ metrics

    def metrics(self) -> dict[str, float | None]:
        """cdc.spi.ReportsMetrics: how far the binlog reader is behind the server."""
        return {"mysql_binlog_lag_seconds": self.seconds_behind}

    def inspect_lag(self, position: Position | None) -> Mapping[str, float | None]:
        """cdc.spi.InspectsLag: binlog bytes after ``position``, and whether it is purged."""
        return guardrail.inspect_lag(self, position)

    @property
    def seconds_behind(self) -> float:
        return self.reader.seconds_behind

    def bytes_behind(self) -> int | None:
        return self.reader.bytes_behind()

    # ------------------------------------------------------------------ checks

    def _check(self, cur: Any) -> list[Problem]:
        problems: list[Problem] = []
        info = server_info(cur)
        v = variables(
            cur,
            "log_bin",
            "binlog_format",
            "binlog_row_image",
            "binlog_row_metadata",
            "gtid_mode",
            "binlog_row_value_options",
        )
        if (v["log_bin"] or "").upper() not in ("ON", "1"):
            problems.append(
                Problem(
                    "binary logging is off on the source (log_bin=OFF)",
                    "start the server with log_bin (e.g. --log-bin=mysql-bin)",
                )
            )
        if (v["binlog_format"] or "").upper() != "ROW":
            problems.append(
                Problem(
                    f"binlog_format is {v['binlog_format']}, not ROW: changes are logged as "
                    "statements, which carry no row values",
                    "SET GLOBAL binlog_format=ROW and put binlog_format=ROW in the server config",
                )
            )
        if (v["binlog_row_image"] or "").upper() != "FULL":
            problems.append(
                Problem(
                    f"binlog_row_image is {v['binlog_row_image']}, not FULL: updates and deletes "
                    "would lack the columns they did not change",
                    "SET GLOBAL binlog_row_image=FULL and put it in the server config",
                )
            )
        if v["binlog_row_metadata"] is None:
            problems.append(
                Problem(
                    f"the server ({info.version}) has no binlog_row_metadata: binlog rows carry no "
                    "column names",
                    "use MariaDB >= 10.5 or MySQL >= 8.0.14",
                )
            )
        elif v["binlog_row_metadata"].upper() != "FULL":
            problems.append(
                Problem(
                    f"binlog_row_metadata is {v['binlog_row_metadata']}, not FULL: binlog rows "
                    "carry no column names, key or ENUM/SET labels",
                    "SET GLOBAL binlog_row_metadata=FULL and put it in the server config",
                )
            )
        if (v["binlog_row_value_options"] or "").upper().find("PARTIAL_JSON") >= 0:
            problems.append(
                Problem(
                    "binlog_row_value_options=PARTIAL_JSON: JSON updates are logged as diffs",
                    "SET GLOBAL binlog_row_value_options=''",
                )
            )
        if not info.mariadb and self.gtid_mode == "on" and (v["gtid_mode"] or "").upper() != "ON":
            problems.append(
                Problem(
                    f"gtid_mode is {v['gtid_mode']} on the source but the source config says "
                    "gtid_mode: on",
                    "enable GTIDs on the server, or set gtid_mode: auto/off",
                    key="gtid_mode",
                )
            )
        if info.server_id == self.server_id:
            problems.append(
                Problem(
                    f"server_id {self.server_id} is the source server's own server_id",
                    "give cdc a server_id that no server or replica in the topology uses",
                    key="server_id",
                )
            )
        problems.extend(self._check_replicas(cur))
        problems.extend(self._check_grants(cur, info.mariadb))
        problems.extend(self._check_tables(cur))
        return problems

    def _check_replicas(self, cur: Any) -> list[Problem]:
        try:
            cur.execute("SHOW SLAVE HOSTS")
            rows = cur.fetchall()
        except (pymysql.err.ProgrammingError, pymysql.err.OperationalError) as e:
            # Needs REPLICATION MASTER ADMIN (MariaDB); only registered replicas show anyway.
            log.debug("SHOW SLAVE HOSTS not allowed (%s): replica id clash not checked", e)
            return []
        if any(int(r[0]) == self.server_id for r in rows):
            return [
                Problem(
                    f"a replica with server_id {self.server_id} is connected to the source",
                    "give cdc a server_id that no server or replica in the topology uses",
                    key="server_id",
                )
            ]
        return []

    def _check_grants(self, cur: Any, mariadb: bool) -> list[Problem]:
        cur.execute("SHOW GRANTS FOR CURRENT_USER()")
        granted: set[str] = set()
        for (line,) in cur.fetchall():
            m = _GRANT.match(line.decode() if isinstance(line, bytes) else str(line))
            if m is None or m.group("on") != "*.*":
                continue
            for p in m.group("privs").split(","):
                granted.add(p.strip().upper())
        everything = bool(granted & {"ALL", "ALL PRIVILEGES"})
        problems = []
        needs: list[tuple[str, set[str]]] = [
            ("REPLICATION SLAVE", {"REPLICATION SLAVE", "REPLICATION REPLICA"}),
            (
                "BINLOG MONITOR" if mariadb else "REPLICATION CLIENT",
                {"REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"},
            ),
        ]
        lock = self.snapshot_lock
        if lock == "global" or (lock == "auto" and not mariadb):
            needs.append(("RELOAD", {"RELOAD"}))
        missing = [name for name, any_of in needs if not everything and not granted & any_of]
        if missing:
            problems.append(
                Problem(
                    f"the source user lacks {', '.join(missing)}",
                    f"GRANT {', '.join(missing)} ON *.* TO <the cdc user> "
                    "(also SELECT on the captured tables)",
                    key="connection.user",
                )
            )
        return problems

    def _check_tables(self, cur: Any) -> list[Problem]:
        tables = list_tables(cur, self.captured)
        problems: list[Problem] = []
        if self.signal is not None and tuple(self.signal.split(".", 1)) not in {
                (d, t) for d, t, _ in tables}:
            database, _, table = self.signal.partition(".")
            name = f"{quote(database)}.{quote(table)}"
            problems.append(Problem(
                f"signal table {self.signal} does not exist: incremental snapshots cannot be "
                "signalled", f"{SIGNAL_TABLE_DDL.format(table=name)}; and GRANT INSERT, SELECT "
                f"ON {name} TO <the cdc user>", key="signal.table"))
        if not tables:
            return [
                *problems,
                Problem(
                    f"no table matches include {list(self.include)} minus exclude "
                    f"{list(self.exclude)} (or the user cannot see any)",
                    "check the table patterns (database.table) and the user's SELECT grants",
                    fatal=False,
                    key="tables.include",
                ),
            ]
        # Tables without a primary key are captured too: with the FULL row image (a server
        # check) their updates and deletes carry the whole old row, which replicas match.
        for db, table, _ in tables:
            try:
                cur.execute(f"SELECT 1 FROM {quote(db)}.{quote(table)} LIMIT 0")
            except (pymysql.err.OperationalError, pymysql.err.ProgrammingError) as e:
                problems.append(
                    Problem(
                        f"the source user cannot read {db}.{table}: {e.args[-1]}",
                        f"GRANT SELECT ON {quote(db)}.* TO <the cdc user>",
                        key="tables",
                    )
                )
        return problems
