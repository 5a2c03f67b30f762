"""The runner's resumable snapshot: chunk progress is stored only once Kafka acknowledged
every row before it, a restart hands it back with the next attempt number, and offsets
written before chunk progress existed still read (a fresh snapshot)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.events import ChangeEvent, Column, ColumnType, Kind, Op, SourceInfo, TableId, TableSchema
from cdc.offsets.store import SourceOffset, resume_from_snapshot, resume_to_dict
from cdc.offsets.tracker import AckTracker
from cdc.runtime import source_runner
from cdc.runtime.source_runner import RunnerSettings, SnapshotMode, SourceRunner
from cdc.serde import EncodedChange
from cdc.spi import Heartbeat, Position, SnapshotChunk, SnapshotResume, StreamItem
from connectors.postgres.position import Lsn, PgPosition

TABLE = TableSchema(TableId("db", "s", "t"), (Column("id", ColumnType(Kind.INT64)),), ("id",))
START = PgPosition(Lsn(1000))


def _row(i: int, index: int) -> ChangeEvent:
    pos = PgPosition(START.lsn, index, True, False)
    src = SourceInfo("postgresql", "src", "0", "16", pos, 1, None, "true", None)
    return ChangeEvent(Op.READ, TABLE, {"id": i}, None, {"id": i}, src, 1)


class FakeSource:
    """Ten-row chunks of ids 0..rows-1 of one table; resumes after the given key."""

    def __init__(self, rows: int, *, fresh_on_resume: bool = False) -> None:
        self.rows = rows
        self.resumed: list[SnapshotResume | None] = []
        self.streamed_from: list[Position | None] = []
        self.fresh_on_resume = fresh_on_resume
        self.stop = threading.Event()  # set once streaming: the runner then returns

    def resumable_snapshot(
        self, resume: SnapshotResume | None
    ) -> tuple[Position, Iterator[ChangeEvent | SnapshotChunk]]:
        self.resumed.append(resume)
        if resume is not None and self.fresh_on_resume:
            resume = None
        start = resume.start if resume is not None else START
        first = int(resume.after[0]) + 1 if resume is not None and resume.after else 0
        base = (resume.attempt << 40) if resume is not None else 0

        def rows() -> Iterator[ChangeEvent | SnapshotChunk]:
            for i in range(first, self.rows):
                yield _row(i, base + i)
                if i % 10 == 9 or i == self.rows - 1:
                    yield SnapshotChunk("s.t", (str(i),))
            yield SnapshotChunk("s.t", None, True)

        return start, rows()

    def snapshot(self, resume: Position | None) -> tuple[Position, Iterator[ChangeEvent]]:
        raise AssertionError("the runner must use resumable_snapshot")

    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        self.streamed_from.append(start)
        assert start is not None
        self.stop.set()
        yield Heartbeat(start)

    def acknowledge(self, position: Position) -> None:
        pass

    def check(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


class FakeProducer:
    """Acknowledges the first ``acked`` records at once and holds the rest; ``flush``
    with records held is the crash (kill -9 before Kafka answered)."""

    def __init__(self, acked: int | None = None) -> None:
        self.tracker = AckTracker()
        self.acked = acked
        self.sent = 0
        self.held: list[Any] = []

    def send(self, topic: str, key: bytes | None, value: bytes | None, *,
             position: Position | None = None, boundary: bool = False, **_: Any) -> None:
        token = self.tracker.register(position, boundary=boundary)
        if self.acked is None or self.sent < self.acked:
            token(None, None)
        else:
            self.held.append(token)
        self.sent += 1

    def mark(self, position: Position) -> None:
        self.tracker.mark(position)

    def poll(self, timeout: float = 0.0) -> None:
        pass

    def flush(self, timeout: float = 60.0) -> None:
        if self.held:
            raise RuntimeError("killed")

    @property
    def durable(self) -> Position | None:
        return self.tracker.durable


class FakeOffsets:
    def __init__(self) -> None:
        self.saved: list[SourceOffset] = []

    def load(self, name: str) -> SourceOffset | None:
        # Through JSON, as the offsets topic holds it.
        return SourceOffset.from_json(self.saved[-1].to_json()) if self.saved else None

    def save(self, name: str, offset: SourceOffset) -> None:
        self.saved.append(offset)


class FakeTopics:
    def ensure(self, topics: Any, spec: Any) -> None:
        pass

    def partitions(self, topic: str) -> int:
        return 1


class FakeEncoder:
    def encode(self, event: ChangeEvent) -> EncodedChange:
        return EncodedChange("t", b"k", b"v")


def _runner(source: FakeSource, producer: FakeProducer, offsets: FakeOffsets) -> SourceRunner:
    return SourceRunner("src", source, FakeEncoder(), producer, offsets,  # type: ignore[arg-type]
                        FakeTopics(), RunnerSettings(snapshot_mode=SnapshotMode.INITIAL),
                        stop=source.stop)


@pytest.fixture(autouse=True)
def _save_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_runner, "CHUNK_SAVE_INTERVAL_S", 0.0)


def test_progress_is_stored_only_for_acknowledged_chunks_and_resumed() -> None:
    offsets = FakeOffsets()
    source = FakeSource(100)
    # Kafka acknowledged rows 0..34 only: chunks 0-9, 10-19 and 20-29 are durable.
    with pytest.raises(RuntimeError, match="killed"):
        _runner(source, FakeProducer(acked=35), offsets).run()
    stored = offsets.load("src")
    assert stored is not None and stored.position is None
    resume = resume_from_snapshot(stored.snapshot)
    assert resume is not None
    assert (resume.table, resume.after, resume.rows, resume.attempt) == ("s.t", ("29",), 30, 0)
    assert resume.start == START

    # The restart resumes after key 29, as attempt 1, and streams from the first point.
    source2 = FakeSource(100)
    runner = _runner(source2, FakeProducer(), offsets)
    runner.run()
    first = source2.resumed[0]
    assert first is not None and first.after == ("29",) and first.attempt == 1
    assert runner.stats.snapshot_rows == 70
    assert source2.streamed_from == [START]
    final = offsets.load("src")
    assert final is not None and final.snapshot is None and final.position == START


def test_a_crash_of_a_resumed_attempt_keeps_counting_attempts() -> None:
    offsets = FakeOffsets()
    with pytest.raises(RuntimeError):
        _runner(FakeSource(100), FakeProducer(acked=15), offsets).run()
    with pytest.raises(RuntimeError):  # attempt 1 dies before any chunk is acknowledged
        _runner(FakeSource(100), FakeProducer(acked=0), offsets).run()
    resume = resume_from_snapshot(offsets.load("src").snapshot)  # type: ignore[union-attr]
    assert resume is not None and resume.attempt == 1 and resume.after == ("9",)
    source = FakeSource(100)
    runner = _runner(source, FakeProducer(), offsets)
    runner.run()
    assert source.resumed[0] is not None and source.resumed[0].attempt == 2


def test_offsets_of_older_versions_snapshot_again() -> None:
    offsets = FakeOffsets()
    offsets.saved.append(SourceOffset(None, snapshot={"state": "running"}))
    source = FakeSource(25)
    runner = _runner(source, FakeProducer(), offsets)
    runner.run()
    assert source.resumed == [None] and runner.stats.snapshot_rows == 25


def test_a_source_that_cannot_resume_starts_its_progress_afresh() -> None:
    offsets = FakeOffsets()
    r = SnapshotResume(PgPosition(Lsn(5)), (), "s.t", ("29",), 30, 0)
    offsets.saved.append(SourceOffset(None, snapshot={"state": "running",
                                                      "resume": resume_to_dict(r)}))
    source = FakeSource(25, fresh_on_resume=True)
    runner = _runner(source, FakeProducer(acked=12), offsets)
    with pytest.raises(RuntimeError):
        runner.run()
    resume = resume_from_snapshot(offsets.load("src").snapshot)  # type: ignore[union-attr]
    assert resume is not None and resume.start == START and resume.attempt == 0
    assert resume.rows == 10


keys = st.tuples(*[st.one_of(st.none(), st.text(), st.binary(), st.integers(-2**63, 2**63),
                             st.booleans())] * 2)


@given(st.lists(st.text(min_size=1), max_size=3), st.one_of(st.none(), keys),
       st.integers(0, 2**40), st.integers(0, 100))
def test_stored_progress_reads_back(done: list[str], after: tuple[Any, ...] | None, rows: int,
                                    attempt: int) -> None:
    r = SnapshotResume(PgPosition(Lsn(77), 3, True, False), tuple(done),
                       None if after is None else "s.t", after, rows, attempt)
    offset = SourceOffset(None, snapshot={"state": "running", "resume": resume_to_dict(r)})
    back = SourceOffset.from_json(offset.to_json())
    assert resume_from_snapshot(back.snapshot) == r
