"""Replica-side checkpoints: what each partition has applied, kept with the data.

Every replica holds one row per (consumer group, topic, partition) in
``cdc_offsets``: the last applied Kafka offset and the highest source
position applied from that partition. The row is written in the *same*
transaction as the batch it covers, so the replica's data and its
checkpoint can never disagree, whatever instant a worker dies at. Kafka's
committed offsets are written afterwards for lag monitoring only; a worker
always resumes from the replica (stored offset + 1).

Skipping rule (:func:`is_duplicate`), applied to every consumed record of a
partition with checkpoint ``(offset, position)``:

1. a record at Kafka offset <= ``offset`` was applied already (a rebalance or
   a re-delivery handed it out again);
2. otherwise a record whose source position is <= ``position`` (same kind of
   position) is a replay: a restarted source re-published events after its
   last durable position, at new offsets. Positions are unique per event and
   increase along a partition, so this identifies duplicates exactly.
   Records without a position (Debezium's) rely on rule 1 alone.

Rows are locked (``SELECT .. FOR UPDATE``) at the start of each batch
transaction and compared with what the worker last saw: if another worker
advanced the partition meanwhile (after a rebalance this worker did not notice
in time), the batch is abandoned and the worker re-reads the checkpoint.
That fencing keeps two workers from applying one partition twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cdc.errors import CdcError, PositionError
from cdc.positions import Position, position_from_dict
from cdc.sink.create import create_table
from cdc.spi import ErrorKind, SinkSession, TableName

log = logging.getLogger(__name__)

CHECKPOINT_TABLE = "cdc_offsets"

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A partition's progress on one replica. ``offset`` -1: nothing applied yet."""

    offset: int = -1
    position: Position | None = None

    @property
    def next_offset(self) -> int:
        """Where consumption resumes (the offset after the last applied one)."""
        return self.offset + 1


NOTHING = Checkpoint()


def is_duplicate(cp: Checkpoint, offset: int, position: Position | None) -> bool:
    """Whether a record was applied already (see the module docstring for the rule)."""
    if offset <= cp.offset:
        return True
    stored = cp.position
    if position is None or stored is None or position.kind != stored.kind:
        return False
    return position <= stored


def advance(cp: Checkpoint, offset: int, position: Position | None) -> Checkpoint:
    """The checkpoint after applying (or deliberately skipping) a record."""
    stored = cp.position
    if position is not None and (
        stored is None or position.kind != stored.kind or position > stored
    ):
        stored = position
    return Checkpoint(max(cp.offset, offset), stored)


def encode_position(position: Position | None) -> str | None:
    return None if position is None else json.dumps(position.to_dict(), separators=(",", ":"))


def decode_position(text: str | None, where: str) -> Position | None:
    if text is None or text == "":
        return None
    try:
        return position_from_dict(json.loads(text))
    except (ValueError, PositionError) as e:
        raise PositionError(
            f"checkpoint {where} holds an unreadable source position {text!r:.200}: {e}",
            hint="restore the row from a backup, or delete it to re-apply the partition from "
            "the start of the topic (upserts make that safe, but slow)",
        ) from e


class FencedError(CdcError):
    """Another worker advanced these partitions; this batch must be abandoned."""

    def __init__(self, stored: Mapping[TopicPartition, Checkpoint]) -> None:
        names = ", ".join(f"{t}[{p}]" for t, p in sorted(stored))
        super().__init__(f"another worker of the group advanced {names}; re-reading checkpoints")
        self.stored = dict(stored)


class CheckpointStore:
    """Reads and writes one consumer group's rows of a replica's checkpoint table."""

    def __init__(self, table: TableName, group: str) -> None:
        self.table = table
        self.group = group

    def ensure_table(self, session: SinkSession) -> None:
        if session.describe(self.table) is None:
            create_table(session, self.table, session.dialect.checkpoint_ddl(self.table))

    def _select(
        self, session: SinkSession, topic: str, partitions: Sequence[int], *, lock: bool
    ) -> dict[TopicPartition, Checkpoint]:
        d = session.dialect
        marks = ",".join(["%s"] * len(partitions))
        sql = (
            f"SELECT {d.quote('partition')}, kafka_offset, source_position "
            f"FROM {d.table_sql(self.table)} WHERE consumer_group = %s AND topic = %s "
            f"AND {d.quote('partition')} IN ({marks})" + (" FOR UPDATE" if lock else "")
        )
        out: dict[TopicPartition, Checkpoint] = {}
        for part, offset, position in session.query(sql, [self.group, topic, *partitions]):
            where = f"{self.table}({self.group}, {topic}, {part})"
            out[(topic, int(part))] = Checkpoint(int(offset), decode_position(position, where))
        return out

    def _by_topic(self, tps: Iterable[TopicPartition]) -> dict[str, list[int]]:
        by_topic: dict[str, list[int]] = {}
        for t, p in sorted(set(tps)):
            by_topic.setdefault(t, []).append(p)
        return by_topic

    def load(self, session: SinkSession, tps: Iterable[TopicPartition]) -> dict[TopicPartition, Checkpoint]:
        """Checkpoints of ``tps``, creating missing rows (offset -1) so later
        batches can lock them. Runs its own short transaction."""
        wanted = self._by_topic(tps)
        if not wanted:
            return {}
        for attempt in (1, 2):
            session.begin()
            try:
                found: dict[TopicPartition, Checkpoint] = {}
                for topic, parts in wanted.items():
                    found.update(self._select(session, topic, parts, lock=False))
                missing = [(t, p) for t, parts in wanted.items() for p in parts if (t, p) not in found]
                for t, p in missing:
                    session.execute(
                        f"INSERT INTO {session.dialect.table_sql(self.table)} "
                        f"(consumer_group, topic, {session.dialect.quote('partition')}, kafka_offset, "
                        "source_position, updated_at) VALUES (%s, %s, %s, -1, NULL, CURRENT_TIMESTAMP)",
                        [self.group, t, p],
                    )
                    found[(t, p)] = NOTHING
                session.commit()
                return found
            except Exception as e:
                session.rollback()
                # Two workers inserting the same missing row: the loser reads again.
                if attempt == 1 and session.dialect.classify(e) is ErrorKind.DATA:
                    log.info("checkpoint rows were created concurrently; reading them again")
                    continue
                raise
        raise AssertionError("unreachable")

    def lock(self, session: SinkSession, tps: Iterable[TopicPartition]) -> dict[TopicPartition, Checkpoint]:
        """Lock and read the rows of ``tps`` inside the current transaction."""
        out: dict[TopicPartition, Checkpoint] = {}
        for topic, parts in self._by_topic(tps).items():
            out.update(self._select(session, topic, parts, lock=True))
        return out

    def verify(
        self,
        session: SinkSession,
        expected: Mapping[TopicPartition, Checkpoint],
    ) -> None:
        """Lock the rows and raise FencedError unless they still hold ``expected``."""
        stored = self.lock(session, expected)
        moved = {
            tp: stored.get(tp, NOTHING)
            for tp, cp in expected.items()
            if stored.get(tp, NOTHING).offset != cp.offset
        }
        if moved:
            raise FencedError(moved)

    def save(self, session: SinkSession, checkpoints: Mapping[TopicPartition, Checkpoint]) -> None:
        """Write ``checkpoints`` inside the current transaction (rows locked by verify):
        one ``UPDATE`` per topic whatever the number of its partitions (each statement
        is a round trip to the replica, and a batch usually spans every partition)."""
        d = session.dialect
        part = d.quote("partition")
        by_topic: dict[str, list[tuple[int, Checkpoint]]] = {}
        for (topic, p), cp in sorted(checkpoints.items()):
            by_topic.setdefault(topic, []).append((p, cp))
        for topic, rows in by_topic.items():
            if len(rows) == 1:
                offset_sql, position_sql = "%s", "%s"
                params: list[object] = [rows[0][1].offset, encode_position(rows[0][1].position)]
            else:
                whens = " ".join(["WHEN %s THEN %s"] * len(rows))
                offset_sql = f"CASE {part} {whens} END"
                position_sql = f"CASE {part} {whens} END"
                params = [v for p, cp in rows for v in (p, cp.offset)]
                params += [v for p, cp in rows for v in (p, encode_position(cp.position))]
            marks = ",".join(["%s"] * len(rows))
            sql = (
                f"UPDATE {d.table_sql(self.table)} SET kafka_offset = {offset_sql}, "
                f"source_position = {position_sql}, updated_at = CURRENT_TIMESTAMP "
                f"WHERE consumer_group = %s AND topic = %s AND {part} IN ({marks})"
            )
            n = session.execute(sql, [*params, self.group, topic, *(p for p, _ in rows)])
            if n != len(rows):
                found = self._select(session, topic, [p for p, _ in rows], lock=False)
                missing = ", ".join(str(p) for p, _ in rows if (topic, p) not in found)
                raise CdcError(
                    f"checkpoint row {self.table}({self.group}, {topic}, {missing}) is missing",
                    hint="it was deleted while the sink ran; restart the worker",
                )
