"""pgoutput decoder: real captured streams, round trips, and hostile input.

The captures (tests/fixtures/pgoutput, made by capture.py) hold every CopyData
message a real PostgreSQL 15 and 18 sent for one workload, per protocol
session. Replaying them through a tiny consumer model (apply at commit, drop
aborted streamed subtransactions) must give the same committed changes for
every server and protocol version; the raw message structure is checked per
version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.errors import SerializationError
from connectors.postgres.position import Lsn
from connectors.postgres.source import messages
from connectors.postgres.source.decoder import (
    PgOutputDecoder,
    PrimaryKeepalive,
    XLogData,
    decode_copy_data,
    decode_message,
    encode_standby_status,
)
from connectors.postgres.source.messages import UNCHANGED_TOAST
from tests.fixtures.pgoutput.capture import read_frames
from tests.unit.postgres.pgoutput_encoder import (
    encode,
    encode_keepalive,
    encode_tuple,
    encode_xlogdata,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pgoutput"
CAPTURES = sorted(FIXTURES.glob("pg*-*.bin.gz"))
assert CAPTURES, f"no captures in {FIXTURES}: run tests/fixtures/pgoutput/capture.py"


def _session(path: Path) -> tuple[int, str]:
    major, _, name = path.name.removesuffix(".bin.gz").partition("-")
    return int(major[2:]), name


# --- decoding a capture -------------------------------------------------------


@dataclass
class Decoded:
    frames: list[XLogData | PrimaryKeepalive]
    messages: list[tuple[XLogData, messages.PgOutputMessage]]


_cache: dict[Path, Decoded] = {}


def decoded(path: Path) -> Decoded:
    if path not in _cache:
        dec = PgOutputDecoder()
        frames = [decode_copy_data(raw) for raw in read_frames(path)]
        msgs = [(f, dec.decode(f.payload)) for f in frames if isinstance(f, XLogData)]
        assert not dec.in_stream
        _cache[path] = Decoded(frames, msgs)
    return _cache[path]


@dataclass
class Consumer:
    """What a correct downstream does with the messages: the committed changes."""

    relations: dict[int, str] = field(default_factory=dict)
    committed: list[Any] = field(default_factory=list)
    current: list[Any] | None = None
    origin: str | None = None
    prepared: dict[str, tuple[str | None, list[Any]]] = field(default_factory=dict)
    streams: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)
    stream_xid: int | None = None

    def change(self, m: Any, row: Any) -> None:
        if self.stream_xid is not None:
            assert m.xid is not None
            self.streams.setdefault(self.stream_xid, []).append((m.xid, row))
        else:
            assert self.current is not None, f"{m} outside a transaction"
            self.current.append(row)

    def feed(self, m: messages.PgOutputMessage) -> None:
        rel = self.relations.get
        match m:
            case messages.Begin() | messages.BeginPrepare():
                assert self.current is None
                self.current, self.origin = [], None
            case messages.Commit():
                assert self.current is not None
                self.committed.append(("tx", self.origin, self.current))
                self.current = None
            case messages.Prepare():
                assert self.current is not None
                self.prepared[m.gid] = (self.origin, self.current)
                self.current = None
            case messages.CommitPrepared():
                origin, changes = self.prepared.pop(m.gid)
                self.committed.append(("tx", origin, changes))
            case messages.RollbackPrepared():
                self.prepared.pop(m.gid)
            case messages.Origin():
                self.origin = m.name
            case messages.Relation():
                self.relations[m.relation_id] = f"{m.namespace}.{m.name}"
            case messages.DataType():
                pass
            case messages.Insert():
                self.change(m, ("I", rel(m.relation_id), m.new))
            case messages.Update():
                self.change(m, ("U", rel(m.relation_id), m.old_kind, m.old, m.new))
            case messages.Delete():
                self.change(m, ("D", rel(m.relation_id), m.old_kind, m.old))
            case messages.Truncate():
                tables = tuple(rel(r) for r in m.relation_ids)
                self.change(m, ("T", tables, m.cascade, m.restart_identity))
            case messages.LogicalMessage() if not m.transactional:
                assert m.xid is None
                self.committed.append(("nontx", m.prefix, m.content))
            case messages.LogicalMessage():
                self.change(m, ("M", m.prefix, m.content))
            case messages.StreamStart():
                self.stream_xid = m.xid
            case messages.StreamStop():
                self.stream_xid = None
            case messages.StreamAbort():
                if m.subxid == m.xid:
                    self.streams.pop(m.xid)
                else:
                    self.streams[m.xid] = [c for c in self.streams[m.xid] if c[0] != m.subxid]
            case messages.StreamCommit():
                changes = [row for _, row in self.streams.pop(m.xid)]
                self.committed.append(("tx", self.origin, changes))
            case _:
                raise AssertionError(f"unexpected {m}")


BIG = "".join(hashlib.md5(str(g).encode()).hexdigest() for g in range(1, 101))
N = None


def expected_committed(typed_rows: list[list[str | None]]) -> list[Any]:
    items = "public.items"
    full = "public.items_full"
    other = "public.other"
    by_id = {r[0]: tuple(r) for r in typed_rows}
    return [
        (
            "tx",
            None,
            [
                ("I", items, ("1", "apple", "3", "happy", "1.50", '{red,"green apple",NULL}', BIG)),
                ("I", items, ("2", "pear", N, "sad", "-0.25", "{}", "small")),
                ("I", items, ("3", "ünïcödé ☃", "1", N, N, N, "")),
            ],
        ),
        (
            "tx",
            None,
            [
                (
                    "U",
                    items,
                    N,
                    N,
                    (
                        "1",
                        "apple",
                        "4",
                        "happy",
                        "1.50",
                        '{red,"green apple",NULL}',
                        UNCHANGED_TOAST,
                    ),
                )
            ],
        ),
        (
            "tx",
            None,
            [
                (
                    "U",
                    items,
                    "K",
                    ("2", N, N, N, N, N, N),
                    ("20", "pear", N, "sad", "-0.25", "{}", "small"),
                )
            ],
        ),
        ("tx", None, [("D", items, "K", ("20", N, N, N, N, N, N))]),
        (
            "tx",
            None,
            [
                ("I", full, ("1", "x", "n1")),
                ("I", full, ("2", "y", N)),
                ("U", full, "O", ("1", "x", "n1"), ("1", "x", "n2")),
                ("D", full, "O", ("2", "y", N)),
            ],
        ),
        (
            "tx",
            None,
            [
                ("I", "public.parent", ("1",)),
                ("I", "public.parent", ("2",)),
                ("I", "public.child", ("1", "1")),
                ("I", other, ("1", "o1")),
            ],
        ),
        ("tx", None, [("T", ("public.parent", other, "public.child"), True, True)]),
        ("tx", None, [("I", other, ("1", "with message")), ("M", "tx-prefix", b"hello tx")]),
        ("nontx", "nontx-prefix", b"\x00\xff"),
        ("tx", "upstream", [("I", other, ("2", "from origin"))]),
        ("tx", None, [("I", other, ("3", "after alter", "7"))]),
        (
            "tx",
            None,
            [
                *(("I", "public.bulk", (str(g), f"row {g}")) for g in range(1, 501)),
                ("I", "public.bulk", ("5000", "after rollback to savepoint")),
                ("M", "stream-prefix", b"in stream"),
            ],
        ),
        ("tx", None, [("I", other, ("4", "prepared", "7"))]),
        ("tx", None, [("I", "public.typed", by_id[i]) for i in ("1", "3", "2")]),
        ("tx", None, [("U", "public.typed", N, N, by_id["1"])]),
        ("nontx", "capture-end", b""),
    ]


def manifest(major: int) -> dict[str, Any]:
    return json.loads((FIXTURES / f"pg{major}.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_capture_replays_to_the_workload(path: Path) -> None:
    major, _ = _session(path)
    consumer = Consumer()
    for _, m in decoded(path).messages:
        consumer.feed(m)
    assert not consumer.streams and not consumer.prepared and consumer.current is None
    expected = expected_committed(manifest(major)["typed_select"])
    assert len(consumer.committed) == len(expected)
    for got, want in zip(consumer.committed, expected, strict=True):
        assert got == want


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_capture_structure(path: Path) -> None:
    major, session = _session(path)
    dec = decoded(path)
    msgs = [m for _, m in dec.messages]
    kinds = {type(m) for m in msgs}
    streaming = session != "v1"

    # Stream blocks: xid on every change inside, none outside.
    inside = False
    seen_streams: set[int] = set()
    for m in msgs:
        if isinstance(m, messages.StreamStart):
            assert m.first_segment == (m.xid not in seen_streams)
            seen_streams.add(m.xid)
            inside = True
        elif isinstance(m, messages.StreamStop):
            inside = False
        elif isinstance(
            m, messages.Relation | messages.DataType | messages.Insert | messages.Update | messages.Delete | messages.Truncate
        ) or (isinstance(m, messages.LogicalMessage) and m.transactional):
            assert (m.xid is not None) == inside, m
    assert bool(seen_streams) == streaming
    if not streaming:
        assert not kinds & {messages.StreamStart, messages.StreamStop, messages.StreamCommit, messages.StreamAbort}
    else:
        aborts = [m for m in msgs if isinstance(m, messages.StreamAbort)]
        assert any(a.subxid != a.xid for a in aborts)  # ROLLBACK TO SAVEPOINT
        # PostgreSQL 18 skips decoding transactions it already knows aborted.
        assert any(a.subxid == a.xid for a in aborts) == (major < 18)
        parallel = session == "v4-parallel"
        assert all((a.abort_lsn is not None) == parallel for a in aborts)
        assert all((a.abort_ts is not None) == parallel for a in aborts)
        # The first time 'bulk' is seen is inside the stream: Relation carries the xid.
        bulk = next(m for m in msgs if isinstance(m, messages.Relation) and m.name == "bulk")
        assert bulk.xid is not None
        assert messages.StreamCommit in kinds

    two_phase = {messages.BeginPrepare, messages.Prepare, messages.CommitPrepared, messages.RollbackPrepared}
    if session == "v3-twophase":
        assert two_phase <= kinds
        gids = [m.gid for m in msgs if isinstance(m, messages.BeginPrepare)]
        assert gids == ["gid-commit", "gid-rollback"]
    else:
        assert not kinds & two_phase

    # Type messages precede the first Relation that uses them.
    first_items = next(
        i for i, m in enumerate(msgs) if isinstance(m, messages.Relation) and m.name == "items"
    )
    types = {m.type_oid: m for m in msgs[:first_items] if isinstance(m, messages.DataType)}
    items = msgs[first_items]
    assert isinstance(items, messages.Relation)
    assert items.replica_identity == "d"
    assert items.key_columns == ("id",)
    cols = [(c.name, c.type_oid, c.type_modifier) for c in items.columns]
    assert [c[0] for c in cols] == ["id", "name", "qty", "feeling", "price", "tags", "big"]
    assert cols[0][1:] == (23, -1) and cols[4][1:] == (1700, (10 << 16 | 2) + 4)
    assert cols[5][1] == 1009
    mood = types[cols[3][1]]
    assert (mood.namespace, mood.name) == ("public", "mood")
    posint = types[cols[2][1]]
    assert (posint.namespace, posint.name) == ("", "int4")  # domains are sent as their base

    full = next(m for m in msgs if isinstance(m, messages.Relation) and m.name == "items_full")
    assert full.replica_identity == "f" and all(c.is_key for c in full.columns)
    others = [m for m in msgs if isinstance(m, messages.Relation) and m.name == "other"]
    assert [len(m.columns) for m in others][-1] == 3  # re-sent after ALTER TABLE

    truncate = next(m for m in msgs if isinstance(m, messages.Truncate))
    assert truncate.cascade and truncate.restart_identity and len(truncate.relation_ids) == 3

    origin = next(m for m in msgs if isinstance(m, messages.Origin))
    assert origin.commit_lsn == Lsn.parse("0/ABCDEF")
    i = msgs.index(origin)
    begin = msgs[i - 1]
    assert isinstance(begin, messages.Begin)
    assert begin.ts_ms == 1_704_067_200_000  # the origin's commit time, 2024-01-01


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_capture_lsns_and_framing(path: Path) -> None:
    dec = decoded(path)
    assert any(isinstance(f, PrimaryKeepalive) for f in dec.frames)
    # Relation/Type messages are framed with LSN 0; every other frame moves forward.
    wal_ends = [f.wal_end for f in dec.frames if f.wal_end]
    assert wal_ends == sorted(wal_ends)
    for f, m in dec.messages:
        assert (f.data_start == 0) == isinstance(m, messages.Relation | messages.DataType) or isinstance(
            m, messages.Begin | messages.Origin
        )
    starts = [f.data_start for f, _ in dec.messages if f.data_start]
    assert starts == sorted(starts)

    ends: list[int] = []
    begin: messages.Begin | None = None
    for frame, m in dec.messages:
        assert frame.wal_end >= frame.data_start
        if isinstance(m, messages.Begin):
            begin = m
        elif isinstance(m, messages.Commit):
            assert begin is not None and begin.final_lsn == m.commit_lsn
            assert m.commit_ts == begin.commit_ts
            assert m.end_lsn > m.commit_lsn
            ends.append(m.end_lsn.value)
        elif isinstance(m, messages.StreamCommit | messages.CommitPrepared):
            ends.append(m.end_lsn.value)
        elif isinstance(m, messages.LogicalMessage):
            assert m.lsn.value > 0
    assert ends == sorted(ends) and len(set(ends)) == len(ends)
    # Commit times are recent (the workload ran at capture time), unix ms.
    commit = next(m for _, m in dec.messages if isinstance(m, messages.Commit))
    assert 1_700_000_000_000 < commit.ts_ms < 4_000_000_000_000


def test_pg_epoch_conversion() -> None:
    assert messages.pg_timestamp_to_unix_ms(0) == 946_684_800_000
    assert messages.pg_timestamp_to_unix_ms(-1) == 946_684_799_999  # floors, like the clock
    now_ms = time.time_ns() // 1_000_000
    assert abs(messages.pg_timestamp_to_unix_ms(messages.pg_timestamp_now()) - now_ms) < 1000


# --- framing ------------------------------------------------------------------


def test_standby_status_update_layout() -> None:
    raw = encode_standby_status(Lsn(0x1_0000_0002), 3, Lsn(4), 5, reply_requested=True)
    assert raw == b"r" + struct.pack(">QQQqB", 0x1_0000_0002, 3, 4, 5, 1)
    assert len(raw) == 34


def test_framing_round_trip_and_errors() -> None:
    f = decode_copy_data(encode_xlogdata(1, 2, -3, b"Epayload"))
    assert f == XLogData(1, 2, -3, b"Epayload")
    assert f.start_lsn == Lsn(1)
    assert decode_copy_data(bytearray(encode_keepalive(9, 8, True))) == PrimaryKeepalive(9, 8, True)
    for bad in (b"", b"w" + b"\0" * 23, b"k" + b"\0" * 16, b"k" + b"\0" * 18, b"x123"):
        with pytest.raises(SerializationError):
            decode_copy_data(bad)


# --- decoder state ----------------------------------------------------------


def test_stream_state_is_tracked_and_enforced() -> None:
    dec = PgOutputDecoder()
    ins = messages.Insert(7, ("a",), xid=42)
    with pytest.raises(SerializationError, match="Stream Stop message outside"):
        dec.decode(b"E")
    assert dec.decode(encode(messages.StreamStart(41, True))) == messages.StreamStart(41, True)
    assert (dec.in_stream, dec.stream_xid) == (True, 41)
    assert dec.decode(encode(ins, in_stream=True)) == ins
    for outside in (messages.StreamStart(41, False), messages.Begin(Lsn(1), 2, 3)):
        with pytest.raises(SerializationError, match="inside a stream block"):
            dec.decode(encode(outside))
    # An Origin can be inside (PostgreSQL sends it after the first Stream Start).
    assert dec.decode(encode(messages.Origin(Lsn(0), "o"))) == messages.Origin(Lsn(0), "o")
    assert dec.decode(b"E") == messages.StreamStop()
    assert (dec.in_stream, dec.stream_xid) == (False, None)
    # Outside a block the same bytes would be misread: the xid is not expected.
    with pytest.raises(SerializationError):
        decode_message(encode(ins, in_stream=True), in_stream=False)


def test_error_names_message_type_and_offset() -> None:
    raw = encode(messages.Insert(5, ("abc", None)))
    with pytest.raises(
        SerializationError, match=r"Insert message at offset 16 of 16 bytes: truncated"
    ):
        decode_message(raw[:-1])
    with pytest.raises(SerializationError, match=r"Relation message .*offset"):
        decode_message(b"R\0\0\0\1public")
    with pytest.raises(SerializationError, match="unknown pgoutput message type 'Z'"):
        decode_message(b"Z")
    with pytest.raises(SerializationError, match="not valid UTF-8"):
        decode_message(b"I\0\0\0\1N\0\1t\0\0\0\2\xff\xfe")
    with pytest.raises(SerializationError, match="unknown tuple value kind"):
        decode_message(b"I\0\0\0\1N\0\1x")
    with pytest.raises(SerializationError, match="trailing"):
        decode_message(encode(messages.Begin(Lsn(1), 2, 3)) + b"\0")
    with pytest.raises(SerializationError, match="truncated"):
        decode_message(b"I\0\0\0\1N\0\2n")


def test_toast_sentinel_is_not_none() -> None:
    m = decode_message(encode(messages.Update(1, (UNCHANGED_TOAST, None, "x", b"\x00"))))
    assert isinstance(m, messages.Update)
    assert m.new == (UNCHANGED_TOAST, None, "x", b"\x00")
    assert m.new[0] is UNCHANGED_TOAST and m.new[0] is not None and bool(repr(m.new[0]))


def test_input_types_accepted() -> None:
    raw = encode(messages.Insert(1, ("é",)))
    for data in (raw, bytearray(raw), memoryview(raw)):
        assert decode_message(data) == messages.Insert(1, ("é",))


# --- property tests: round trips --------------------------------------------

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
lsns = u64.map(Lsn)
names = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20)
values: st.SearchStrategy[messages.TupleValue] = st.one_of(
    st.none(),
    st.just(UNCHANGED_TOAST),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
    st.binary(max_size=30),
)
tuples = st.lists(values, max_size=12).map(tuple)
columns = st.builds(
    messages.RelationColumn, st.integers(0, 1), names, u32, st.integers(-(2**31), 2**31 - 1)
)


def row_messages(xid: st.SearchStrategy[int | None]) -> st.SearchStrategy[messages.PgOutputMessage]:
    old_kinds = st.sampled_from(["K", "O"])
    updates = st.one_of(
        st.builds(messages.Update, u32, tuples, st.none(), st.none(), xid),
        st.builds(messages.Update, u32, tuples, tuples, old_kinds, xid),
    )
    return st.one_of(
        st.builds(messages.Insert, u32, tuples, xid),
        updates,
        st.builds(messages.Delete, u32, tuples, old_kinds, xid),
        st.builds(
            messages.Relation,
            u32,
            names,
            names,
            st.sampled_from("dnfi"),
            st.lists(columns, max_size=8).map(tuple),
            xid,
        ),
        st.builds(messages.DataType, u32, names, names, xid),
        st.builds(messages.Truncate, st.lists(u32, max_size=5).map(tuple), st.integers(0, 3), xid),
        st.builds(messages.LogicalMessage, st.booleans(), lsns, names, st.binary(max_size=40), xid),
    )


control = st.one_of(
    st.builds(messages.Begin, lsns, i64, u32),
    st.builds(messages.Commit, st.integers(0, 255), lsns, lsns, i64),
    st.builds(messages.Origin, lsns, names),
    st.builds(messages.StreamStart, u32, st.booleans()),
    st.builds(messages.StreamCommit, u32, st.integers(0, 255), lsns, lsns, i64),
    st.builds(messages.StreamAbort, u32, u32),
    st.builds(messages.StreamAbort, u32, u32, lsns, i64),
    st.builds(messages.BeginPrepare, lsns, lsns, i64, u32, names),
    st.builds(messages.Prepare, st.integers(0, 255), lsns, lsns, i64, u32, names),
    st.builds(messages.CommitPrepared, st.integers(0, 255), lsns, lsns, i64, u32, names),
    st.builds(messages.RollbackPrepared, st.integers(0, 255), lsns, lsns, i64, i64, u32, names),
    st.builds(messages.StreamPrepare, st.integers(0, 255), lsns, lsns, i64, u32, names),
)
outside = st.one_of(row_messages(st.none()), control)
inside = st.one_of(row_messages(u32), st.just(messages.StreamStop()))

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(outside)
def test_round_trip_outside_stream(msg: messages.PgOutputMessage) -> None:
    assert decode_message(encode(msg)) == msg


@PROPS
@given(inside)
def test_round_trip_inside_stream(msg: messages.PgOutputMessage) -> None:
    assert decode_message(encode(msg, in_stream=True), in_stream=True) == msg


@PROPS
@given(st.data())
def test_truncated_input_raises(data: st.DataObject) -> None:
    in_stream = data.draw(st.booleans())
    msg = data.draw(inside if in_stream else outside)
    raw = encode(msg, in_stream)
    cut = data.draw(st.integers(0, len(raw) - 1))
    if isinstance(msg, messages.StreamAbort) and msg.abort_lsn is not None and cut == 9:
        return  # a protocol-4 Stream Abort cut after the subxid is a valid protocol-2 one
    with pytest.raises(SerializationError):
        decode_message(raw[:cut], in_stream=in_stream)


@PROPS
@given(st.data())
def test_garbled_input_never_raises_anything_else(data: st.DataObject) -> None:
    in_stream = data.draw(st.booleans())
    msg = data.draw(inside if in_stream else outside)
    raw = bytearray(encode(msg, in_stream))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    # Either a message or SerializationError; any other exception fails the test.
    try:
        msg = decode_message(bytes(raw), in_stream=in_stream)
    except SerializationError:
        return
    assert isinstance(msg, messages.PgOutputMessage)


@PROPS
@given(st.binary(max_size=64), st.booleans())
def test_random_bytes_never_raise_anything_else(raw: bytes, in_stream: bool) -> None:
    # Each call returns its documented type or raises SerializationError; any other
    # exception fails the test.
    for data in (raw, b"IUDRTMYOBCScAbPKrpE"[len(raw) % 19 : len(raw) % 19 + 1] + raw):
        with contextlib.suppress(SerializationError):
            assert isinstance(decode_message(data, in_stream=in_stream), messages.PgOutputMessage)
        with contextlib.suppress(SerializationError):
            assert isinstance(decode_copy_data(data), XLogData | PrimaryKeepalive)


def test_huge_counts_fail_fast() -> None:
    # Claimed counts far beyond the message: no allocation storm, no loop.
    with pytest.raises(SerializationError):
        decode_message(b"T\xff\xff\xff\xff\x00")
    with pytest.raises(SerializationError):
        decode_message(b"I\0\0\0\1N\xff\xff" + b"n" * 10)
    with pytest.raises(SerializationError):
        decode_message(b"I\0\0\0\1N\0\1t\xff\xff\xff\xffabc")
    with pytest.raises(SerializationError):
        decode_message(b"M\0" + b"\0" * 8 + b"p\0\xff\xff\xff\xff")


def test_tuple_encoding_helper_matches_captured_bytes() -> None:
    # Sanity check of the test encoder against a real message from the capture.
    path = next(p for p in CAPTURES if p.name.endswith("v1.bin.gz"))
    for raw in read_frames(path):
        f = decode_copy_data(raw)
        if isinstance(f, XLogData) and f.payload[:1] == b"I":
            m = decode_message(f.payload)
            assert isinstance(m, messages.Insert)
            assert encode(m) == f.payload
            assert f.payload.endswith(encode_tuple(m.new))
            break
    else:
        pytest.fail("no Insert in the capture")
