"""The generic applier: one batch of consumed records -> one replica transaction.

A batch holds, per topic partition, a run of consecutive records. Applying
it takes three phases:

1. **Prepare** (no transaction open). Decode each record, skip what was
   applied already (the checkpoint rule of :mod:`cdc.sink.checkpoint`),
   tombstones and records of the sink's own origin; plan its replica table
   (creating or evolving it, see :mod:`cdc.sink.schema`) and turn it into
   mutations. A record that cannot be decoded, mapped or converted is a *bad
   record*. Runs skip all of that when the session
   :class:`~cdc.spi.CopiesRuns`: consecutive inserts and snapshot reads of a
   partition that its encoder takes, or consecutive same-key updates of full
   rows, become one payload written straight from the record bytes
   (:meth:`Applier._run`), in order with the rest.
2. **Reduce**: mutations go, in order, to one :class:`TableReducer` per
   replica table, which keeps the final state per key (a table without a
   primary key gets a :class:`KeylessReducer`, which keeps every change in
   order: its rows are matched by their whole image).
3. **Apply**: one transaction that locks and checks the partitions'
   checkpoint rows (fencing), runs the reduced statements, writes the new
   checkpoints, flushes dead letters, and commits.

If the database rejects a row (a constraint, a value that does not fit),
the transaction is rolled back and re-run *row by row*: each record's
mutations under a savepoint, so good rows still apply and the bad one is
isolated. Bad records go to the dead letter queue (policy ``dead_letter``)
or stop the partition just before them (policy ``fail``: the records ahead
of the bad one are applied and checkpointed, then the worker stops, so a
restart meets the same record again).

Transient database errors (lost connection, deadlock...) are not handled
here: they propagate to the worker, which rolls back, waits and retries the
whole batch.

One concern, the three phases of one batch; it runs past 600 lines because
the per-record loop of prepare and its fast path (records written by cdc
whose position codec reads the sort key from the text) are inlined for speed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from cdc.errors import CdcError, SchemaError, SerializationError, UnreachableError
from cdc.events import Op
from cdc.positions import Position, parse_position, position_codec, text_kind
from cdc.serde import AvroSerde, DecodedChange, SchemaRegistry, Tombstone
from cdc.sink.checkpoint import Checkpoint, CheckpointStore, TopicPartition
from cdc.sink.conflictplan import ConflictLog, ConflictPlanner, Planned
from cdc.sink.deadletter import DeadLetter, DeadLetterQueue
from cdc.sink.partitioning import (
    KeyCodec,
    KeySample,
    Partitioner,
    crc32_partition,
    key_codec,
    learn,
)
from cdc.sink.reduce import (
    DeleteRow,
    Move,
    Mutation,
    Reducer,
    Segment,
    Step,
    Truncate,
    UpdateRow,
)
from cdc.sink.schema import ReplicaSchemas, TablePlan
from cdc.sink.values import DoesNotFit
from cdc.spi import (
    CopiesRuns,
    ErrorKind,
    InsertsNewRows,
    ReplicaTable,
    RunEncoder,
    SinkSession,
    TableName,
)

log = logging.getLogger(__name__)

Policy = Literal["fail", "dead_letter"]


class SinkFailure(CdcError):
    """A record cannot be applied and the policy is ``fail``: the worker stops."""


class _InTable(CdcError):
    """A database's refusal of a row, with the replica table it was refused by."""


@dataclass(slots=True, eq=False)
class Record:
    """A consumed Kafka record, and what decoding it gave (cached across retries)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    decoded: DecodedChange | Tombstone | None = None
    error: CdcError | None = None  # permanent decode failure

    @property
    def boundary(self) -> bool:
        """Whether a batch may end after this record without splitting a source transaction."""
        d = self.decoded
        if type(d) is DecodedChange and d.position is not None:
            return d.position.last_in_tx
        return True


@dataclass(frozen=True, slots=True)
class SinkSettings:
    name: str
    group: str
    policy: Policy = "fail"
    origin: str | None = None
    transactional: bool = False


@dataclass(slots=True)
class ApplyResult:
    checkpoints: dict[TopicPartition, Checkpoint] = field(default_factory=dict)
    consumed: dict[TopicPartition, int] = field(default_factory=dict)  # records done per partition
    applied: int = 0
    skipped: int = 0
    dead_letters: int = 0
    failure: SinkFailure | None = None


@dataclass(slots=True, eq=False)
class _PreparedRecord:
    """A record that passed prepare: its mutations for one replica table.

    A record of the fast path carries ``row`` (key, values: a full-row upsert of
    ``plan.columns``) instead of mutations. ``new``: a source insert or snapshot read
    (above the checkpoint, so its key should not be in the replica yet, unless a
    re-snapshot meets an existing replica table: the session then upserts).
    """

    record: Record
    plan: TablePlan
    mutations: Sequence[Mutation]
    # The partition's checkpoint before it (a position may still be its cdc_position text).
    before: tuple[int, Position | str | None] = (-1, None)
    index: int = 0  # its position in the partition's run of the batch
    row: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
    new: bool = False
    # A run (see Applier._run): (COPY payload, rows, columns, of updates); ``record`` is
    # its first record, ``before`` the checkpoint before it.
    run: tuple[bytes, int, tuple[str, ...], bool] | None = None


_NONE: Final[tuple[Mutation, ...]] = ()
_FAST_OPS: Final = frozenset(("c", "r", "u"))
# The fewest records a run takes (shorter ones are cheaper through the per-record path).
MIN_RUN: Final = 16


def _position(p: Position | str | None) -> Position | None:
    """A position kept as its cdc_position text (fast path) as an object."""
    return parse_position(p) if isinstance(p, str) else p


def _starts_snapshot(prev: Position | None, position: Position) -> bool:
    """Whether a snapshot read at ``position`` is the first of its snapshot in its
    partition: the record before it was no snapshot read of the same snapshot (a
    position's sort key ends with the index within its transaction or snapshot)."""
    if prev is None or prev.kind != position.kind or not getattr(prev, "snapshot", False):
        return True
    return prev.sort_key()[:-1] != position.sort_key()[:-1]


def _frame_id(data: bytes) -> int:
    """The schema id of Confluent-framed bytes, -1 if not framed."""
    if len(data) >= 5 and data[0] == 0:
        return _FROM_BYTES(data[1:5], "big")
    return -1


_FROM_BYTES: Final = int.from_bytes


@dataclass(slots=True)
class _Prepared:
    work: list[_PreparedRecord] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    done: dict[TopicPartition, Checkpoint] = field(default_factory=dict)
    consumed: dict[TopicPartition, int] = field(default_factory=dict)
    skipped: int = 0
    failure: SinkFailure | None = None
    run_rows: int = 0  # records applied in runs (each run is one entry of ``work``)


class Applier:
    """Applies batches for one sink; holds the caches that outlive batches."""

    def __init__(
        self,
        settings: SinkSettings,
        serde: AvroSerde,
        schemas: ReplicaSchemas,
        checkpoints: CheckpointStore,
        *,
        dead_letters: DeadLetterQueue | None = None,
        partitions_of: Callable[[str], int] = lambda topic: 1,
        conflicts: tuple[ConflictPlanner, ConflictLog] | None = None,
    ) -> None:
        if settings.policy == "dead_letter" and dead_letters is None:
            raise ValueError("the dead_letter policy needs a DeadLetterQueue")
        self.settings = settings
        self.serde = serde
        self.registry: SchemaRegistry = serde.registry
        self.schemas = schemas
        self.checkpoints = checkpoints
        self.dead_letters = dead_letters
        self.partitions_of = partitions_of
        self._samples: dict[str, dict[int, KeySample]] = {}
        # The fast path (see _fast); False applies every record through DecodedChange
        # and mutations, the reference path.
        self.fast = True
        # Each position kind's text_sort_key (cdc.spi.PositionCodec), found on first use.
        self._text_keys: dict[str, Callable[[str], tuple[Any, ...] | None]] = {}
        self._last_text_key: tuple[str, Callable[[str], tuple[Any, ...] | None] | None] = ("", None)
        # The serde's fused fast read per value schema id (AvroSerde.fast_reader).
        self._fast_readers: dict[int, Callable[[bytes], Any]] = {}
        # Runs written from the record bytes (sessions that CopiesRuns; see _run): False
        # keeps every record on the per-record paths.
        self.runs = True
        # Per (value schema id, plan, of updates); the kind of the last run is tried first.
        self._run_encoders: dict[tuple[int, TablePlan, bool], RunEncoder | None] = {}
        self._updates_first = False
        # Master-master (cdc.sink.conflictplan): None keeps the one-way path exactly as is.
        self.conflicts = conflicts
        if conflicts is not None:
            self.fast = False  # the planner needs every record's before/after images

    # -- decoding ------------------------------------------------------------------------

    def decode(self, rec: Record) -> None:
        """Decode ``rec`` once; a permanent failure is kept on the record, a
        transient one (registry unreachable) raises."""
        if rec.decoded is not None or rec.error is not None:
            return
        try:
            rec.decoded = self.serde.decode(rec.key, rec.value)
        except UnreachableError:
            raise
        except (SerializationError, SchemaError) as e:
            rec.error = e

    def cut(self, records: Sequence[Record]) -> int:
        """How many of a partition's buffered ``records`` may form a batch
        (all of them, or in transactional mode up to the last transaction end)."""
        if not self.settings.transactional:
            return len(records)
        for i in range(len(records) - 1, -1, -1):
            rec = records[i]
            self.decode(rec)
            if rec.boundary:
                return i + 1
        return 0

    # -- prepare -------------------------------------------------------------------------

    def _bad(self, prep: _Prepared, rec: Record, error: BaseException, kind: str) -> bool:
        """Handle a bad record; False when the partition must stop here (policy fail)."""
        label = (
            "refused by the replica" if isinstance(error, _InTable)
            else "does not fit" if isinstance(error, DoesNotFit)
            else type(error).__name__
        )
        message = f"{label}: {error}"
        if self.settings.policy == "fail":
            prep.failure = SinkFailure(
                f"sink {self.settings.name}: record {rec.topic}[{rec.partition}]@{rec.offset} "
                f"cannot be applied ({kind}): {message}",
                hint="errors.policy is fail, so the sink stops here and nothing after this record "
                "is applied; fix the cause (or set errors.policy: dead_letter) and restart",
            )
            return False
        prep.letters.append(
            DeadLetter(
                rec.topic, rec.partition, rec.offset, rec.key, rec.value, rec.headers, message, kind
            )
        )
        return True

    def _prepare(
        self,
        session: SinkSession,
        batch: Mapping[TopicPartition, Sequence[Record]],
        expected: Mapping[TopicPartition, Checkpoint],
        *,
        runs: bool = True,
    ) -> _Prepared:
        prep = _Prepared()
        origin = self.settings.origin
        work_list = prep.work
        fast = self.fast
        runs = runs and fast and self.runs and isinstance(session, CopiesRuns)
        for tp, records in batch.items():
            # The skip rule of cdc.sink.checkpoint (is_duplicate/advance), inlined: this
            # loop runs once per record.
            cp = expected[tp]
            last_off = cp.offset
            # last_pos's sort key, computed once per position (the same rule as
            # Position.__le__ within one kind).
            last_kind = None if cp.position is None else cp.position.kind
            last_key = None if cp.position is None else cp.position.sort_key()
            last_pos: Position | str | None = cp.position  # (a str: its cdc_position text)
            consumed = 0
            # Runs: records before ``resume`` were taken by one (or a run was tried up
            # to a record that ended it: no new try before that record).
            resume = 0
            retry = 0
            values: list[bytes | None] | None = None
            for index, rec in enumerate(records):
                if index < resume:
                    continue
                off = rec.offset
                if runs and index >= retry and off > last_off and len(records) - index >= MIN_RUN:
                    if values is None:
                        values = [r.value for r in records]
                    got = self._run(session, records, values, index, last_off, last_kind, last_key)
                    if type(got) is int:
                        # the record that ended it, and (none taken: not a run of new
                        # rows here) a few more, go the per-record path before a new try
                        retry = index + (1 if got < 0 else max(got + 1, MIN_RUN))
                    else:
                        assert isinstance(got, tuple)
                        plan, run, n, ptext, pkind, pkey, last_offset = got
                        work_list.append(_PreparedRecord(
                            rec, plan, _NONE, (last_off, last_pos), index, None, not run[3], run
                        ))  # fmt: skip
                        prep.run_rows += n
                        consumed += n
                        resume = index + n
                        last_off = last_offset
                        last_pos = ptext
                        last_kind = pkind
                        last_key = pkey
                        continue
                if rec.decoded is None and rec.error is None:
                    hit = self._fast(rec) if fast else None
                    if hit is not None:
                        plan, row, pkey, ptext, pkind, new = hit
                        if off <= last_off or (last_kind == pkind and pkey <= last_key):  # type: ignore[operator]  # (same kind: set)
                            last_off = max(last_off, off)
                        else:
                            work_list.append(
                                _PreparedRecord(rec, plan, _NONE, (last_off, last_pos), index, row, new)
                            )
                            last_off = off
                            last_pos = ptext
                            last_kind = pkind
                            last_key = pkey
                            consumed += 1
                            continue
                        prep.skipped += 1
                        consumed += 1
                        continue
                    self.decode(rec)
                d = rec.decoded
                position = d.position if type(d) is DecodedChange else None
                duplicate = off <= last_off
                key = None
                if not duplicate and position is not None and position.kind == last_kind:
                    key = position.sort_key()
                    duplicate = key <= last_key  # type: ignore[operator]  # (same kind: set)
                if duplicate:
                    last_off = max(last_off, off)
                    prep.skipped += 1
                    consumed += 1
                    continue
                if rec.error is not None:
                    if not self._bad(prep, rec, rec.error, "decode"):
                        break
                elif type(d) is Tombstone:
                    prep.skipped += 1
                elif type(d) is DecodedChange:
                    if origin is not None and d.origin == origin:
                        prep.skipped += 1
                    else:
                        try:
                            work = self._work(session, rec, d)
                        except SchemaError as e:
                            if not self._bad(prep, rec, e, "schema"):
                                break
                        except DoesNotFit as e:
                            if not self._bad(prep, rec, e, "value"):
                                break
                        else:
                            if (work.plan.keyless and d.op is Op.READ and position is not None
                                    and _starts_snapshot(_position(last_pos), position)):
                                # A (new) snapshot of a keyless table replaces its rows:
                                # read again, they would otherwise be duplicated.
                                work.mutations = [Truncate(rec.topic, None, 1), *work.mutations]
                            work.before = (last_off, last_pos)
                            work.index = index
                            work.new = d.op is Op.CREATE or d.op is Op.READ
                            work_list.append(work)
                last_off = off
                if position is not None:
                    last_pos = position
                    if position.kind != last_kind:
                        last_kind = position.kind
                        key = None
                    last_key = key if key is not None else position.sort_key()
                consumed += 1
            prep.done[tp] = Checkpoint(last_off, _position(last_pos))
            prep.consumed[tp] = consumed
        return prep

    def _work(self, session: SinkSession, rec: Record, d: DecodedChange) -> _PreparedRecord:
        if d.op is Op.TRUNCATE:
            plan = self.schemas.plan(session, rec.topic, d)
            n = self.partitions_of(rec.topic)
            if plan.keyless:
                # Every change of a table without a primary key is in partition 0 (the
                # source runner's rule): its copy of the truncate empties the table,
                # the other partitions' copies have no rows to remove.
                if rec.partition != 0:
                    return _PreparedRecord(rec, plan, _NONE)
                return _PreparedRecord(rec, plan, [Truncate(rec.topic, None, n)])
            t = Truncate(rec.topic, None if n <= 1 else rec.partition, n)
            return _PreparedRecord(rec, plan, [t])
        plan = self.schemas.plan(session, rec.topic, d)
        if rec.key is not None and rec.value is not None:
            self.schemas.remember(rec.topic, _frame_id(rec.value), _frame_id(rec.key), plan)
        if rec.key is not None and d.key is not None:
            samples = self._samples.get(rec.topic)
            if samples is None:
                self._samples[rec.topic] = samples = {}
            if rec.partition not in samples or rec.offset % 64 == 0:  # keep one, refresh rarely
                samples[rec.partition] = KeySample(rec.key, rec.partition, d.key)
        return _PreparedRecord(rec, plan, plan.mutations(d))

    def _run(
        self,
        session: SinkSession,
        records: Sequence[Record],
        values: list[bytes | None],
        index: int,
        last_off: int,
        last_kind: str | None,
        last_key: Any,
    ) -> (
        tuple[TablePlan, tuple[bytes, int, tuple[str, ...], bool], int, str, str, Any, int] | int
    ):
        """The run starting at ``records[index]`` (above the checkpoint
        ``last_off``/``last_kind``/``last_key``): ``(plan, (payload, rows, columns, of
        updates), rows, last position text, its kind, its sort key, last offset)``, or
        the number of records a run could have taken (fewer than :data:`MIN_RUN`: the
        per-record path then takes them and the one that ended the run), -1 when this
        record cannot start one but the next may (no plan or key sample yet, a tombstone).

        A run is records of one value schema of a known plan whose session encoder
        (:class:`~cdc.spi.CopiesRuns`) takes them: inserts and snapshot reads of full
        rows, or (the update encoder, tried first when the last run was of updates)
        updates with a full after image and the same key before and after; each key
        once, not of the sink's origin, every value fitting. Their positions pass the
        checkpoint rule one by one, as in :meth:`_prepare`."""
        copier = cast(CopiesRuns, session)  # (_prepare checked it once: isinstance is slow)
        rec = records[index]
        value, key = rec.value, rec.key
        if value is None or key is None or len(value) < 5 or value[0] != 0:
            return -1
        samples = self._samples.get(rec.topic)
        if samples is None or rec.partition not in samples:
            return -1  # _work keeps a key sample of the partition first
        value_id = _FROM_BYTES(value[1:5], "big")
        plan = self.schemas.known(rec.topic, value_id, _frame_id(key))
        if plan is None or plan.keyless:
            return -1  # (the per-record path plans it: try again from the next record)
        stop = len(records)
        first = self._updates_first
        enc: RunEncoder | None = None
        n, payload = 0, b""
        positions: list[str] = []
        for updates in (first, not first):
            try:
                e = self._run_encoders[(value_id, plan, updates)]
            except KeyError:
                e = None
                shape = self.serde.envelope_schema(value_id)
                if shape is not None:
                    e = copier.run_encoder(
                        shape[0], shape[1], shape[2], plan.columns, plan.key, plan.replica,
                        updates,
                    )
                self._run_encoders[(value_id, plan, updates)] = e
            if e is None:
                continue
            enc = e
            n, payload, positions = e.encode(values, index, stop, self.settings.origin, 5)
            if n:  # (the other kind cannot take this record's op)
                self._updates_first = updates
                break
        if enc is None:
            return 0
        if n < MIN_RUN:
            return n
        # The checkpoint rule per record (sort keys read from the position texts).
        pkind, keyer = self._last_text_key
        text = positions[0]
        if keyer is None or keyer(text) is None:
            found = text_kind(text)
            if found is None:
                return 0
            keyer = self._text_keys.get(found)
            if keyer is None:
                try:
                    keyer = self._text_keys[found] = position_codec(found).text_sort_key
                except CdcError:
                    return 0
            pkind = found
            self._last_text_key = (pkind, keyer)
        assert keyer is not None
        off = last_off
        pkey = last_key
        kind = last_kind
        taken = n
        for j, text in enumerate(positions):
            o = records[index + j].offset
            k = keyer(text)
            if k is None or o <= off or (kind == pkind and k <= pkey):
                taken = j
                break
            off, pkey, kind = o, k, pkind
        if taken < n:
            if taken < MIN_RUN:
                return taken
            n, payload, positions = enc.encode(values, index, index + taken, self.settings.origin, 5)
            assert n == taken
        last = records[index + n - 1]
        if last.offset // 64 > (rec.offset - 1) // 64:  # an offset % 64 == 0 among them
            self._sample(last)
        assert pkind is not None
        return plan, (payload, n, enc.columns, self._updates_first), n, positions[-1], pkind, pkey, last.offset

    def _sample(self, rec: Record) -> None:
        """Refresh the partition's key sample from ``rec`` (decoded for it)."""
        self.decode(rec)
        d = rec.decoded
        if rec.key is not None and type(d) is DecodedChange and d.key is not None:
            self._samples.setdefault(rec.topic, {})[rec.partition] = KeySample(
                rec.key, rec.partition, d.key
            )

    def _fast(
        self, rec: Record
    ) -> (
        tuple[TablePlan, tuple[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...], str, str, bool]
        | None
    ):
        """The common case without DecodedChange or mutation objects: an insert, snapshot
        read or same-key update of a full row, written by cdc with a position whose codec
        reads its sort key from the text (PositionCodec.text_sort_key), of a topic and
        schema pair whose plan is known. Returns ``(plan, (key, values), position sort
        key, position text, position kind, whether it is an insert or snapshot read)``, or None: then the record takes the full
        path, which decides everything else (tombstones, deletes, truncates, key
        changes, unchanged columns, the sink's own origin, bad records, new schemas,
        key samples for truncates). Both give the same mutation (tested)."""
        value = rec.value
        if value is None or len(value) < 5 or value[0] != 0:
            return None
        value_id = _FROM_BYTES(value[1:5], "big")
        read = self._fast_readers.get(value_id)
        if read is None:
            read = self.serde.fast_reader(value_id)
            if read is None:
                return None
            self._fast_readers[value_id] = read
        got = read(value)
        if got is None:
            return None
        op, source, before, after = got
        if op not in _FAST_OPS or after is None:
            return None
        origin = self.settings.origin
        if origin is not None and source.get("cdc_origin") == origin:
            return None
        text = source.get("cdc_position")
        if not text:
            return None
        # The sort key from the text, by the codec that read the last one (a codec only
        # reads texts of its own kind), else by the codec of the text's kind.
        pkind: str | None
        pkind, keyer = self._last_text_key
        pkey = None if keyer is None else keyer(text)
        if pkey is None:
            pkind = text_kind(text)
            if pkind is None:
                return None
            keyer = self._text_keys.get(pkind)
            if keyer is None:
                try:
                    keyer = self._text_keys[pkind] = position_codec(pkind).text_sort_key
                except CdcError:  # no such kind installed: the full path names the problem
                    return None
            pkey = keyer(text)
            if pkey is None:
                return None
            self._last_text_key = (pkind, keyer)
        key = rec.key
        if key is None:
            return None
        samples = self._samples.get(rec.topic)
        if samples is None or rec.partition not in samples or rec.offset % 64 == 0:
            return None  # _work keeps a key sample of the partition
        plan = self.schemas.known(rec.topic, value_id, _frame_id(key))
        if plan is None or plan.keyless:  # (keyless records have no key: never here)
            return None
        row = plan.full_row(after)
        if row is None:
            return None
        if op == "u" and before is not None:
            try:
                if plan.key_of(before) != row[0]:
                    return None
            except (SchemaError, DoesNotFit):
                return None
        return plan, row, pkey, text, pkind, op != "u"

    # -- apply ---------------------------------------------------------------------------

    def apply(
        self,
        session: SinkSession,
        batch: Mapping[TopicPartition, Sequence[Record]],
        expected: Mapping[TopicPartition, Checkpoint],
    ) -> ApplyResult:
        """Apply ``batch`` in one transaction; ``expected`` are the checkpoints the
        worker holds for its partitions (FencedError if the replica's differ)."""
        prep = self._prepare(session, batch, expected)
        try:
            planned = self._transaction(session, expected, prep, bulk=True)
        except Exception as e:
            if session.dialect.classify(e) is not ErrorKind.DATA:
                raise
            log.warning(
                "sink %s: the replica rejected the batch (%s); applying it row by row to "
                "isolate the bad record", self.settings.name, e,
            )
            if prep.run_rows:  # runs go record by record too
                prep = self._prepare(session, batch, expected, runs=False)
            planned = self._transaction(session, expected, prep, bulk=False)
        if planned is not None and self.conflicts is not None:
            self.conflicts[1].after_commit(session, planned.conflicts)
        result = ApplyResult(
            checkpoints=prep.done,
            consumed=prep.consumed,
            applied=len(prep.work) + prep.run_rows - sum(1 for w in prep.work if w.run is not None)
            if prep.run_rows else len(prep.work),
            skipped=prep.skipped,
            dead_letters=len(prep.letters),
            failure=prep.failure,
        )
        return result

    def _transaction(
        self,
        session: SinkSession,
        expected: Mapping[TopicPartition, Checkpoint],
        prep: _Prepared,
        *,
        bulk: bool,
    ) -> Planned | None:
        session.begin()
        try:
            self.checkpoints.verify(session, {tp: expected[tp] for tp in prep.done})
            planned = None
            work = prep.work
            if self.conflicts is not None:
                work, planned = self._resolve(session, work)
            if bulk:
                self._bulk(session, work)
            else:
                self._row_by_row(session, prep, work)
            if planned is not None:
                assert self.conflicts is not None
                self.conflicts[0].save(session, planned)
            if prep.letters:
                assert self.dead_letters is not None
                for letter in prep.letters:
                    self.dead_letters.send(letter)
                self.dead_letters.flush()
            self.checkpoints.save(session, prep.done)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        return planned

    def _resolve(
        self, session: SinkSession, work: list[_PreparedRecord]
    ) -> tuple[list[_PreparedRecord], Planned]:
        """Master-master: the batch's records as conflict resolution leaves them (a record
        that must not apply keeps no mutations), and what to write with them."""
        assert self.conflicts is not None
        decoded = [
            (w.record.topic, w.plan,
             w.record.decoded if type(w.record.decoded) is DecodedChange else None, w.mutations)
            for w in work
        ]
        replaced, planned = self.conflicts[0].plan(session, decoded)
        out = [
            w if m is None else _PreparedRecord(w.record, w.plan, m, w.before, w.index, None)
            for w, m in zip(work, replaced, strict=True)
        ]
        return out, planned

    def _bulk(self, session: SinkSession, work: Iterable[_PreparedRecord]) -> None:
        reducers: dict[TableName, tuple[TablePlan, Reducer]] = {}
        # Tables whose every change in the batch is a source insert or snapshot read: their
        # rows are new (a re-snapshot over existing rows: insert_new upserts instead).
        fresh: dict[TableName, bool] = {}
        for w in work:
            plan = w.plan
            if not w.new:
                fresh[plan.name] = False
            elif plan.name not in fresh:
                fresh[plan.name] = True
            if w.run is not None:
                # Earlier changes of the table first, then the run, then later ones.
                entry = reducers.pop(plan.name, None)
                if entry is not None:
                    self._execute(session, entry[0], entry[1].steps(), fresh=fresh[plan.name])
                payload, rows, columns, updates = w.run
                if updates:
                    cast(CopiesRuns, session).update_run(plan.replica, columns, payload, rows)
                else:
                    cast(CopiesRuns, session).insert_run(plan.replica, columns, payload, rows)
                continue
            entry = reducers.get(plan.name)
            if entry is None:
                reducers[plan.name] = entry = (plan, plan.reducer())
            elif entry[0].keyless != plan.keyless:
                # The table gained or lost its primary key: apply what came before first.
                self._execute(session, entry[0], entry[1].steps())
                entry = reducers[plan.name] = (plan, plan.reducer())
            elif entry[0] is not plan:
                # A newer schema version of the same table: describe-after-DDL wins.
                entry = reducers[plan.name] = (plan, entry[1])
            if w.row is not None:
                entry[1].upsert(w.row[0], plan.columns, w.row[1])
            else:
                entry[1].add_all(w.mutations)
        for plan, reducer in reducers.values():
            self._execute(session, plan, reducer.steps(), fresh=fresh.get(plan.name, False))

    def _row_by_row(
        self, session: SinkSession, prep: _Prepared, work: list[_PreparedRecord] | None = None
    ) -> None:
        """Apply each record under a savepoint, isolating the ones the replica rejects."""
        applied: list[_PreparedRecord] = []
        stopped: set[TopicPartition] = set()
        for w in prep.work if work is None else work:
            rec = w.record
            tp = (rec.topic, rec.partition)
            if tp in stopped:
                continue
            session.savepoint()
            try:
                reducer = w.plan.reducer()
                if w.row is not None:
                    reducer.upsert(w.row[0], w.plan.columns, w.row[1])
                else:
                    reducer.add_all(w.mutations)
                self._execute(session, w.plan, reducer.steps())
            except Exception as e:
                session.rollback_to_savepoint()
                if session.dialect.classify(e) is not ErrorKind.DATA:
                    raise
                failure = prep.failure
                if not self._bad(prep, rec, _InTable(f"replica table {w.plan.name}: {e}"), "apply"):
                    # Policy fail: the partition stops just before the bad record.
                    prep.failure = failure or prep.failure
                    stopped.add(tp)
                    prep.done[tp] = Checkpoint(w.before[0], _position(w.before[1]))
                    prep.consumed[tp] = w.index
                continue
            session.release_savepoint()
            applied.append(w)
        prep.work = applied

    def _execute(
        self, session: SinkSession, plan: TablePlan, steps: Sequence[Step], *, fresh: bool = False
    ) -> None:
        """Run ``steps`` on ``plan``'s table; ``fresh``: every upsert is of a key the
        replica should not have yet (source inserts and snapshot reads above the
        checkpoint), which a
        session that :class:`~cdc.spi.InsertsNewRows` writes without conflict handling."""
        table = plan.replica
        insert_new = session.insert_new if fresh and isinstance(session, InsertsNewRows) else None
        for step in steps:
            if type(step) is DeleteRow:
                if not session.delete_row(table, step.columns, step.values):
                    self._unmatched(plan, "delete")
                continue
            if type(step) is UpdateRow:
                if not session.update_row(
                    table, step.columns, step.values, step.set_columns, step.set_values
                ):
                    self._unmatched(plan, "update")
                continue
            if type(step) is Move:
                if not session.move(table, step.old_key, step.columns, step.values):
                    session.upsert(table, step.columns, [step.values])
                continue
            assert isinstance(step, Segment)
            for t in step.truncates:
                if t.partition is None:
                    session.truncate(table)
                else:
                    self._truncate_partition(session, plan, t)
            if step.deletes:
                session.delete(table, step.deletes)
            for columns, rows in step.upserts.items():
                if insert_new is not None and not step.truncates and not step.deletes:
                    insert_new(table, columns, rows)
                else:
                    session.upsert(table, columns, rows)

    def _unmatched(self, plan: TablePlan, what: str) -> None:
        """A delete or update of a table without a primary key found no row with the
        old image: the replica had diverged. Skipped, as PostgreSQL's own logical
        replication does, and logged."""
        log.warning(
            "sink %s: replica table %s has no row equal to the old image of a %s from %s; "
            "skipped (the replica differs from the source: run cdc verify)",
            self.settings.name, plan.name, what, plan.topic,
        )

    # -- per-partition truncates -------------------------------------------------------------

    def _key_encoding(self, topic: str, partitions: int) -> tuple[KeyCodec, Partitioner]:
        """How the topic's producer encoded and partitioned keys, learnt afresh for each
        truncate (rare) from the latest consumed keys, so a key schema change is seen."""
        samples = list(self._samples.get(topic, {}).values())
        if samples:
            return learn(samples, partitions, self.registry)
        latest = getattr(self.registry, "latest", None)
        registered = latest(f"{topic}-key") if latest is not None else None
        if registered is None:
            raise SchemaError(
                f"cannot tell which replica rows belong to a partition of {topic}: no key "
                "was consumed from it and the registry has no key schema for it"
            )
        log.warning(
            "%s: per-partition truncate before any keyed record was consumed: assuming "
            "key schema id %d and librdkafka's crc32 partitioner", topic, registered.schema_id,
        )
        return key_codec(self.registry, registered.schema_id), crc32_partition

    def _truncate_partition(self, session: SinkSession, plan: TablePlan, t: Truncate) -> None:
        """Delete the replica rows whose key the topic's partitioner maps to ``t.partition``."""
        assert t.partition is not None
        table: ReplicaTable = plan.replica
        key = plan.key
        doomed: list[tuple[Any, ...]] = []
        encoding: tuple[KeyCodec, Partitioner] | None = None
        for row in session.scan(table.name, key):
            if encoding is None:
                encoding = self._key_encoding(t.topic, t.partitions)
            codec, partitioner = encoding
            canon = {
                k: (f(v) if f is not None and v is not None else v)
                for k, f, v in zip(key, plan.key_from_db, row, strict=True)
            }
            if partitioner(codec.encode(canon), t.partitions) == t.partition:
                doomed.append(tuple(row))
        log.info(
            "%s: truncate of partition %d/%d removes %d rows of %s",
            t.topic, t.partition, t.partitions, len(doomed), table.name,
        )
        if doomed:
            session.delete(table, doomed)

