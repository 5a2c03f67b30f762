"""The binlog reader's transaction logic on synthetic events (no server).

Events are instances of mysql-replication's classes with only the attributes
the reader uses, fed through a fake ``fetchone``; this pins positions,
one-behind emission, resume skipping, DDL/TRUNCATE handling and heartbeats.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest
from pymysql.protocol import MysqlPacket
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from cdc.errors import PrerequisiteError
from cdc.events import ChangeEvent, Op
from cdc.spi import Heartbeat
from connectors.mysql import types as t
from connectors.mysql.position import BinlogFile, GtidSet, MySqlPosition
from connectors.mysql.source import binlog as b
from connectors.mysql.source import statements
from connectors.mysql.source.connector import table_filter
from connectors.mysql.source.library import BinlogStream, LibraryMismatch, ReplayConnection
from connectors.mysql.source.packets import RawPackets
from connectors.mysql.source.rowimage import native_available
from connectors.mysql.source.schema import SchemaResolver
from connectors.mysql.source.server import ConnectionLost, ServerInfo
from connectors.mysql.source.snapshot import _keyset
from connectors.mysql.source.transaction import with_mysql_gtid
from connectors.mysql.types import CatalogColumn

FILE = "mysql-bin.000003"


class FakePacket:
    def __init__(self, log_pos: int, size: int, flags: int = 0) -> None:
        self.log_pos, self.event_size, self.flags = log_pos, size, flags


class EventFactory:
    """Builds events at increasing binlog offsets, like a server would."""

    def __init__(self, start: int = 1000) -> None:
        self.pos = start
        self.ts = 1_700_000_000

    def make(self, cls: type, size: int = 50, **attrs: Any) -> Any:
        ev: Any = object.__new__(cls)
        ev.packet = FakePacket(self.pos + size, size, attrs.pop("header_flags", 0))
        ev.timestamp = attrs.pop("timestamp", self.ts)
        self.pos += size
        for k, v in attrs.items():
            # RowsEvent.rows is a property over the mangled _RowsEvent__rows
            setattr(ev, "_RowsEvent__rows" if k == "rows" else k, v)
        return ev

    def gtid(self, seq: int, *, standalone: bool = False, replicated: bool = False) -> Any:
        return self.make(
            MariadbGtidEvent,
            domain_id=0,
            server_id=1,
            gtid_seq_no=seq,
            flags=1 if standalone else 12,
            header_flags=0x8000 if replicated else 0,
        )

    def table_map(self, table_id: int, table: str = "t", db: str = "app") -> Any:
        class Col:
            def __init__(self, name: str, type_: int) -> None:
                self.name, self.type, self.unsigned = name, type_, False
                self.collation_name = "utf8mb4_general_ci" if type_ == t.T_VARCHAR else None
                self.max_length = 40
                self.enum_values = self.set_values = None

        class Meta:
            simple_primary_key_list: ClassVar[list[int]] = [0]
            primary_keys_with_prefix: ClassVar[dict[int, int]] = {}

        return self.make(
            TableMapEvent,
            schema=db,
            table=table,
            table_id=table_id,
            columns=[Col("id", t.T_LONG), Col("v", t.T_VARCHAR)],
            null_bitmask=b"\x02",
            optional_metadata=Meta(),
        )

    def write(self, table_id: int, *ids: int) -> Any:
        rows = [{"values": {"id": i, "v": f"v{i}"}, "none_sources": {}} for i in ids]
        return self.make(WriteRowsEvent, table_id=table_id, rows=rows)

    def update(self, table_id: int, old: int, new: int) -> Any:
        rows = [
            {
                "before_values": {"id": old, "v": "a"},
                "before_none_sources": {},
                "after_values": {"id": new, "v": "b"},
                "after_none_sources": {},
            }
        ]
        return self.make(UpdateRowsEvent, table_id=table_id, rows=rows)

    def delete(self, table_id: int, i: int) -> Any:
        rows = [{"values": {"id": i, "v": "x"}, "none_sources": {}}]
        return self.make(DeleteRowsEvent, table_id=table_id, rows=rows)

    def xid(self) -> Any:
        return self.make(XidEvent, xid=1)

    def query(self, q: str, schema: bytes = b"app") -> Any:
        return self.make(QueryEvent, query=q, schema=schema)

    def tx(self, seq: int, table_id: int, *ids: int) -> list[Any]:
        return [self.gtid(seq), self.table_map(table_id), self.write(table_id, *ids), self.xid()]


class FakeCatalog:
    mariadb = True

    def columns(self, database: str, table: str) -> list[CatalogColumn]:
        return [
            CatalogColumn("id", "int", "int(11)", nullable=False),
            CatalogColumn(
                "v", "varchar", "varchar(10)", char_length=10, octet_length=40, charset="utf8mb4"
            ),
        ]

    def primary_key(self, database: str, table: str) -> tuple[str, ...]:
        return ("id",)

    def invalidate_mentioned(self, query: str) -> int:
        return 0


class FakeReader:
    def __init__(self, owner: b.BinlogReader, events: list[Any]) -> None:
        self.owner, self.events = owner, list(events)

    def fetchone(self) -> Any:
        if not self.events:
            self.owner._closed.set()
            return object.__new__(HeartbeatLogEvent)
        return self.events.pop(0)


def make_reader(include: tuple[str, ...] = ("app.*",), heartbeat_s: float = 3600) -> b.BinlogReader:
    r = b.BinlogReader(
        {"host": "x"},
        server_id=99,
        source_name="src",
        table_filter=table_filter(include),
        heartbeat_s=heartbeat_s,
    )
    r.server = ServerInfo("10.11.19-MariaDB", True, 1)
    # rows come as mysql-replication dicts here: the library path
    r._resolver = SchemaResolver(FakeCatalog(), fast_decode=False)  # type: ignore[arg-type]
    return r


def run(r: b.BinlogReader, events: list[Any], start: MySqlPosition | None = None) -> list[Any]:
    start = start or MySqlPosition(
        BinlogFile(FILE), 4, gtid_set=GtidSet.parse("0-1-9"), snapshot=True
    )
    r._boundary = r._resume = start
    r._file = BinlogFile(FILE)
    r._gtid_set = start.gtid_set
    r._skip = None if start.snapshot else start
    r._closed.clear()
    return list(r._read(FakeReader(r, events)))


def changes(items: list[Any]) -> list[ChangeEvent]:
    return [i for i in items if isinstance(i, ChangeEvent)]


def pos(item: ChangeEvent | Heartbeat) -> MySqlPosition:
    p = item.position
    assert isinstance(p, MySqlPosition)
    return p


def test_transaction_positions_and_one_behind() -> None:
    f = EventFactory()
    r = make_reader()
    events = f.tx(10, 7, 1, 2, 3)
    out = changes(run(r, events))
    assert [e.op for e in out] == [Op.CREATE] * 3
    assert [e.position.index for e in out] == [0, 1, 2]
    assert [e.position.last_in_tx for e in out] == [False, False, True]
    gtid_start = events[0].packet.log_pos - events[0].packet.event_size
    assert {(pos(e).file.name, pos(e).pos) for e in out} == {(FILE, gtid_start)}
    assert str(pos(out[0]).gtid_set) == "0-1-9"  # before the transaction
    assert str(pos(out[2]).gtid_set) == "0-1-10"  # after it
    assert all(e.source.tx_id == "0-1-10" and e.source.ts_ms == f.ts * 1000 for e in out)
    assert [e.transaction.total_order for e in out if e.transaction] == [1, 2, 3]
    assert out[0].key == {"id": 1} and out[0].after == {"id": 1, "v": "v1"}
    assert out[0].schema.primary_key == ("id",)
    assert r.position == out[2].position


def test_resume_mid_transaction_skips_emitted_rows() -> None:
    f = EventFactory()
    events = f.tx(10, 7, 1, 2, 3) + f.tx(11, 7, 4)
    first = changes(run(make_reader(), events))
    mid = pos(first[1])
    assert not mid.last_in_tx
    again = changes(run(make_reader(), events, start=pos(first[1])))
    assert [e.after["id"] for e in again if e.after] == [3, 4]
    assert again[0].position == first[2].position and again[0].position.last_in_tx


def test_resume_after_transaction_skips_it() -> None:
    f = EventFactory()
    events = f.tx(10, 7, 1, 2) + f.tx(11, 7, 3)
    first = changes(run(make_reader(), events))
    again = changes(run(make_reader(), events, start=pos(first[1])))
    assert [e.after["id"] for e in again if e.after] == [3]


def test_skip_replicated_drops_marked_transactions_and_moves_past_them() -> None:
    """skip_replicated_changes: a transaction whose GTID event carries MariaDB's
    skip_replication flag (a cdc sink wrote it) yields nothing, but the position
    moves past it; a reader without the setting publishes it."""
    f = EventFactory()
    marked = [f.gtid(11, replicated=True), f.table_map(7), f.write(7, 2), f.xid()]
    events = f.tx(10, 7, 1) + marked
    r = make_reader(heartbeat_s=0)
    r.skip_replicated = True
    items = run(r, events)
    assert [e.after["id"] for e in changes(items) if e.after] == [1]
    assert r.metrics.skipped_transactions == 1
    assert isinstance(items[-1], Heartbeat) and pos(items[-1]).gtid == "0-1-11"
    assert pos(items[-1]).last_in_tx
    # resumed from there (a restart): still nothing of it, the next transaction flows
    later = f.tx(12, 7, 3)
    again = changes(run(make_reader(), [*marked, *later], start=pos(items[-1])))
    assert [e.after["id"] for e in again if e.after] == [3]
    # default: no filtering
    everything = changes(run(make_reader(), events))
    assert [e.after["id"] for e in everything if e.after] == [1, 2]


def test_key_change_is_delete_plus_create() -> None:
    f = EventFactory()
    events = [
        f.gtid(10),
        f.table_map(7),
        f.update(7, 1, 1),
        f.update(7, 1, 2),
        f.delete(7, 2),
        f.xid(),
    ]
    out = changes(run(make_reader(), events))
    assert [(e.op, e.key) for e in out] == [
        (Op.UPDATE, {"id": 1}),
        (Op.DELETE, {"id": 1}),
        (Op.CREATE, {"id": 2}),
        (Op.DELETE, {"id": 2}),
    ]
    assert out[1].before is not None and out[1].after is None
    assert [e.position.index for e in out] == [0, 1, 2, 3]


def test_filtered_tables_and_ddl_move_the_boundary() -> None:
    f = EventFactory()
    events = [
        f.gtid(10),
        f.table_map(8, table="other", db="elsewhere"),
        f.write(8, 1),
        f.xid(),
        f.gtid(11, standalone=True),
        f.query("ALTER TABLE t ADD c INT"),
    ]
    r = make_reader()
    assert changes(run(r, events)) == []
    ddl_start = events[4].packet.log_pos - events[4].packet.event_size
    assert r.position is not None
    assert (r.position.pos, r.position.last_in_tx, str(r.position.gtid_set)) == (
        ddl_start,
        True,
        "0-1-11",
    )


def test_truncate_event() -> None:
    f = EventFactory()
    out = changes(
        run(make_reader(), [f.gtid(10, standalone=True), f.query("TRUNCATE TABLE `app`.`t`")])
    )
    assert [(e.op, e.key, e.table.qualified) for e in out] == [(Op.TRUNCATE, None, "app.t")]
    assert out[0].position.last_in_tx
    ignored = changes(
        run(make_reader(), [f.gtid(11, standalone=True), f.query("truncate other_db.t")])
    )
    assert ignored == []


def test_statement_logged_dml_on_captured_table_is_fatal() -> None:
    f = EventFactory()
    with pytest.raises(PrerequisiteError, match="statement-logged"):
        run(make_reader(), [f.gtid(10), f.query("INSERT INTO t VALUES (1)"), f.xid()])
    # the same on a table that is not captured passes
    run(make_reader(), [f.gtid(10), f.query("INSERT INTO other.t VALUES (1)"), f.xid()])


def test_mysql_style_begin_commit_and_ddl() -> None:
    f = EventFactory()
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    sid = bytes.fromhex(uuid.replace("-", ""))

    def gtid(n: int) -> Any:  # GtidEvent.gtid is a property over sid and gno
        return f.make(GtidEvent, sid=sid, gno=n)

    events = [
        gtid(5),
        f.query("BEGIN"),
        f.table_map(7),
        f.write(7, 1),
        f.query("COMMIT"),
        gtid(6),
        f.query("CREATE TABLE x (a int)"),
        gtid(7),
        f.query("BEGIN"),
        f.table_map(7),
        f.write(7, 2),
        f.xid(),
    ]
    start = MySqlPosition(BinlogFile(FILE), 4, gtid_set=GtidSet.parse(f"{uuid}:1-4"), snapshot=True)
    out = changes(run(make_reader(), events, start=start))
    assert [e.after["id"] for e in out if e.after] == [1, 2]
    assert str(pos(out[0]).gtid_set) == f"{uuid}:1-5"
    assert str(pos(out[1]).gtid_set) == f"{uuid}:1-7"


def test_begin_without_gtid() -> None:
    f = EventFactory()
    events = [f.query("BEGIN"), f.table_map(7), f.write(7, 1, 2), f.xid()]
    out = changes(run(make_reader(), events))
    assert out[0].source.tx_id is None
    assert out[0].transaction is not None and out[0].transaction.id == f"{FILE}:{pos(out[0]).pos}"
    assert pos(out[0]).pos == events[0].packet.log_pos - events[0].packet.event_size


def test_heartbeats_between_transactions() -> None:
    f = EventFactory()
    r = make_reader(heartbeat_s=0)
    items = run(r, [f.make(HeartbeatLogEvent, ident=FILE, timestamp=0), *f.tx(10, 7, 1)])
    beats = [i for i in items if isinstance(i, Heartbeat)]
    assert beats and beats[0].position.snapshot  # before any transaction: the start
    assert isinstance(items[-1], Heartbeat) and pos(items[-1]).gtid == "0-1-10"
    assert r.metrics.heartbeats == 1


def test_rotate_updates_file() -> None:
    f = EventFactory()
    events = [
        f.make(RotateEvent, next_binlog="mysql-bin.000004", position=4, timestamp=1),
        *f.tx(10, 7, 1),
    ]
    out = changes(run(make_reader(), events))
    assert pos(out[0]).file.name == "mysql-bin.000004"


def test_end_of_stream_is_a_lost_connection() -> None:
    r = make_reader()

    class Eof:
        def fetchone(self) -> None:
            return None

    r._boundary = r._resume = MySqlPosition(BinlogFile(FILE), 4, snapshot=True)
    with pytest.raises(ConnectionLost):
        list(r._read(Eof()))


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("q", "kind"),
    [
        ("BEGIN", "begin"),
        ("COMMIT", "commit"),
        ("ROLLBACK", "commit"),
        ("ROLLBACK TO SAVEPOINT s", "ignore"),
        ("SAVEPOINT s", "ignore"),
        ("XA END 'x'", "ignore"),
        ("ALTER TABLE t ADD c INT", "statement"),
        ("  insert into t values (1)", "statement"),
    ],
)
def test_query_kind(q: str, kind: str) -> None:
    assert statements.query_kind(q) == kind


@pytest.mark.parametrize(
    ("q", "table"),
    [
        ("INSERT INTO t VALUES (1)", ("app", "t")),
        ("insert ignore into `my db`.`t``x` values (1)", ("my db", "t`x")),
        ("REPLACE other.t SET a=1", ("other", "t")),
        ("UPDATE LOW_PRIORITY t SET a=1", ("app", "t")),
        ("DELETE QUICK FROM db2.t WHERE 1", ("db2", "t")),
        ("LOAD DATA INFILE 'x' INTO TABLE t", ("app", "t")),
    ],
)
def test_dml_target(q: str, table: tuple[str, str]) -> None:
    m = next(m for p in statements.DML if (m := p.match(q)))
    assert statements.table_of(m, "app") == table


def test_truncate_target() -> None:
    m = statements.TRUNCATE.match("TRUNCATE `a`.b")
    assert m is not None and statements.table_of(m, "x") == ("a", "b")
    m = statements.TRUNCATE.match("truncate table t")
    assert m is not None and statements.table_of(m, "x") == ("x", "t")


def test_mysql_gtid_set_merge() -> None:
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    g = GtidSet.parse(f"{uuid}:1-3:5")
    assert str(with_mysql_gtid(g, f"{uuid}:4")) == f"{uuid}:1-5"
    assert str(with_mysql_gtid(g, f"{uuid}:7")) == f"{uuid}:1-3:5:7"
    other = "00000000-0000-0000-0000-000000000001"
    assert str(with_mysql_gtid(GtidSet(), f"{other}:1")) == f"{other}:1"


def test_keyset_condition() -> None:
    cond, params = _keyset(["`a`", "`b`"], ["1", "x"])
    assert cond == "(`a` > %s) OR (`a` = %s AND `b` > %s)"
    assert params == ["1", "1", "x"]


def test_table_filter() -> None:
    f = table_filter(["app.*", "x.orders"], ["app.audit_*"])
    assert f("app", "users") and f("x", "orders")
    assert not f("app", "audit_log") and not f("x", "other") and not f("mysql", "user")
    assert not table_filter()("information_schema", "TABLES")


def test_position_checks() -> None:
    from cdc.errors import PrerequisiteError as P
    from connectors.mysql.source.server import check_position_available as check

    logs = [(BinlogFile("mysql-bin.000005"), 1000), (BinlogFile("mysql-bin.000006"), 500)]
    check(logs, BinlogFile("mysql-bin.000006"), 400)
    with pytest.raises(P, match="purged"):
        check(logs, BinlogFile("mysql-bin.000004"), 4)
    with pytest.raises(P, match="past the end"):
        check(logs, BinlogFile("mysql-bin.000005"), 2000)
    with pytest.raises(P, match="not on the source"):
        check(logs, BinlogFile("mysql-bin.000009"), 4)


# ------------------------------------------------------------------ raw rows packets

native_only = pytest.mark.skipif(
    not native_available(), reason="_crowimage not built"
)


def raw_packets(
    checksum: bool,
    tables: dict[int, Any],
    mapped: dict[int, bytes | None] | None = None,
    post_header: tuple[int, ...] | None = None,
    metrics: b.BinlogMetrics | None = None,
) -> RawPackets:
    """A RawPackets with the format a stream's FormatDescriptionEvent gave (see attach)."""
    raw = RawPackets(tables, {} if mapped is None else mapped, metrics or b.BinlogMetrics())
    raw.checksum, raw.post_header = (4 if checksum else 0), post_header
    return raw


def raw_packet(etype: int, body: bytes, *, log_pos: int = 5000, checksum: bool = True,
               flags: int = 0) -> Any:
    size = 19 + len(body) + (4 if checksum else 0)
    head = (1_700_000_000).to_bytes(4, "little") + bytes([etype]) + (1).to_bytes(4, "little")
    head += size.to_bytes(4, "little") + log_pos.to_bytes(4, "little") + flags.to_bytes(2, "little")
    pkt = object.__new__(MysqlPacket)
    pkt._data, pkt._position = b"\x00" + head + body + (b"\xaa" * 4 if checksum else b""), 0
    return pkt


def fast_table() -> Any:
    from connectors.mysql.types import BinlogColumn

    resolver = SchemaResolver(FakeCatalog(), fast_decode=True)  # type: ignore[arg-type]
    cols = [
        BinlogColumn("id", t.T_LONG, nullable=False),
        BinlogColumn("v", t.T_VARCHAR, max_length=40, collation="utf8mb4_general_ci"),
    ]
    return resolver.resolve("app", "t", cols, ["id"])


def row(i: int, v: str) -> bytes:
    text = v.encode()
    return b"\x00" + i.to_bytes(4, "little") + bytes([len(text)]) + text


@native_only
@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("checksum", [False, True])
def test_raw_rows_packets(v2: bool, checksum: bool) -> None:
    table = fast_table()
    assert table.fast is not None and table.fast.program is not None
    tables: dict[int, Any] = {7: table, 8: None}
    metrics = b.BinlogMetrics()
    raw = raw_packets(checksum, tables, metrics=metrics)
    head = (7).to_bytes(6, "little") + b"\x01\x00" + (b"\x02\x00" if v2 else b"")
    write, update = (30, 31) if v2 else (23, 24)

    pkt = raw_packet(write, head + b"\x02\xff" + row(1, "a") + row(2, "é"), checksum=checksum)
    got = raw.parse(pkt)
    assert got is not None
    size = len(pkt._data) - 1
    assert got == (WriteRowsEvent, table, [{"id": 1, "v": "a"}, {"id": 2, "v": "é"}], 5000 - size)
    assert metrics.raw_events == 1 and metrics.fast_images == 2 and metrics.pos == 5000

    pkt = raw_packet(update, head + b"\x02\x03\x03" + row(1, "a") + row(1, "b"), checksum=checksum)
    got = raw.parse(pkt)
    assert got is not None and got[0] is UpdateRowsEvent
    assert got[2] == [({"id": 1, "v": "a"}, {"id": 1, "v": "b"})]

    # the library's cases: minimal image, unknown table, other events
    assert raw.parse(raw_packet(write, head + b"\x02\x01" + b"\x00" + bytes(4))) is None
    other = (9).to_bytes(6, "little") + head[6:]
    assert raw.parse(raw_packet(write, other + b"\x02\x03" + row(1, "a"))) is None
    assert raw.parse(raw_packet(2, bytes(20), checksum=checksum)) is None  # a query
    assert raw.parse(raw_packet(16, bytes(8), checksum=checksum)) == (XidEvent,)
    gtid = (77).to_bytes(8, "little") + (3).to_bytes(4, "little") + b"\x0c"
    pkt = raw_packet(162, gtid + bytes(8), checksum=checksum)
    start = 5000 - (len(pkt._data) - 1)
    assert raw.parse(pkt) == (MariadbGtidEvent, 3, 1, 77, 12, 1_700_000_000, start, 0)
    marked = raw_packet(162, gtid + bytes(8), checksum=checksum, flags=0x8008)
    assert raw.parse(marked) == (MariadbGtidEvent, 3, 1, 77, 12, 1_700_000_000, start, 0x8008)    # a table that is not captured: skipped without decoding
    skipped = (8).to_bytes(6, "little") + head[6:]
    got = raw.parse(raw_packet(write, skipped + b"\x02\x03" + b"junk", checksum=checksum))
    assert got is not None and got[1] is None and got[2] is None
    # a truncated body is an error, not a crash
    with pytest.raises(ValueError, match="truncated"):
        raw.parse(raw_packet(write, head + b"\x02\x03" + row(1, "abc")[:-2], checksum=checksum))


@native_only
def test_raw_rows_refuses_unusual_post_headers_and_library_tables() -> None:
    table = fast_table()
    post = [0] * 40
    post[23 - 1] = 10  # a server declaring a longer v1 post-header than the library knows
    raw = raw_packets(True, {7: table}, post_header=tuple(post))
    head = (7).to_bytes(6, "little") + b"\x01\x00"
    assert raw.parse(raw_packet(23, head + b"\x02\x03" + row(1, "a"))) is None
    library = dataclasses.replace(table, fast=None)
    raw = raw_packets(True, {7: library})
    assert raw.parse(raw_packet(23, head + b"\x02\x03" + row(1, "a"))) is None


def test_raw_packets_attach_to_the_stream_once_its_format_is_known() -> None:
    stream = BinlogStream(connection_settings={"host": "x"}, server_id=99, only_events=[])
    raw = RawPackets({}, {}, b.BinlogMetrics())
    assert raw.attach(stream) is None  # no FormatDescriptionEvent yet
    stream.checksum_bytes, stream.post_header_lengths = 4, (56, 13)
    with pytest.raises(LibraryMismatch, match="_stream_connection is NoneType"):
        raw.attach(stream)  # the library did not keep cdc's connection: loud, not a fallback
    conn = ReplayConnection(defer_connect=True, host="x")
    stream._stream_connection = conn  # what BinLogStreamReader sets when it connects
    assert raw.attach(stream) is conn
    assert (raw.checksum, raw.post_header) == (4, (56, 13))


@native_only
def test_raw_table_map_in_effect_is_skipped() -> None:
    mapped: dict[int, bytes | None] = {}
    raw = raw_packets(True, {}, mapped)
    body = (7).to_bytes(6, "little") + b"table map body"
    pkt = raw_packet(19, body)
    assert raw.parse(pkt) is None  # not resolved yet: the library parses it
    assert raw.take_table_map(8) is None  # (not the table the library just parsed)
    assert raw.parse(pkt) is None
    mapped[7] = raw.take_table_map(7)
    assert mapped[7] == body and raw.take_table_map(7) is None
    assert raw.parse(pkt) == (TableMapEvent,)
    assert raw.parse(raw_packet(19, (7).to_bytes(6, "little") + b"another body")) is None
    mapped.clear()  # a DDL or a rotation
    assert raw.parse(pkt) is None
