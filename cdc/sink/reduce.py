"""Reduce a batch of row changes for one replica table to few bulk statements.

The applier turns each consumed change into mutations (:class:`Upsert`,
:class:`Delete`, :class:`Move`, :class:`Truncate`) and feeds them, in
consumption order, to a :class:`TableReducer`. The reducer keeps only the
final state per primary key, so a batch that inserts, updates and deletes
the same row costs one statement per *kind* of work, not one per change.
The result is a list of steps: :class:`Segment` (truncates, then deletes,
then upserts grouped by column set) and :class:`Move` barriers.

Why the outcome does not change (the unit tests check it against a plain
model with hypothesis):

* Rows with different keys are independent (the replica's only unique
  constraint the sink relies on is the primary key), so within a segment
  the order between keys is free; per key only the final state matters.
* An upsert only sets the columns it carries (unchanged TOAST columns are
  absent), so two upserts of one key merge into one with the union of
  columns, later values winning; a full row simply replaces.
* A delete followed by an upsert of the same key is kept as both (delete,
  then insert): the insert must not inherit columns of the deleted row.
* Truncates and primary-key changes whose kept columns are not known in the
  batch are barriers: everything before them is applied first.

Tables without a primary key are not reduced: :class:`KeylessReducer` keeps
their inserts, :class:`DeleteRow` and :class:`UpdateRow` (full-row matches of
one row each) in source order, grouping only consecutive inserts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Key = tuple[Any, ...]
Columns = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Upsert:
    """Set ``columns`` of the row at ``key`` (inserting it if absent).

    ``columns`` includes the key columns; columns not listed keep the
    replica's value (or their default when the row is inserted).
    """

    key: Key
    columns: Columns
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    key: Key


@dataclass(frozen=True, slots=True)
class Move:
    """A primary-key change that must keep columns the source did not send.

    Applied as ``UPDATE .. SET columns WHERE key = old_key``; when no row has
    ``old_key`` it becomes an upsert of ``columns``.
    """

    old_key: Key
    key: Key
    columns: Columns
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Truncate:
    """Remove every row (``partition`` None) or the rows whose key the topic's
    partitioner maps to ``partition`` of ``partitions``."""

    topic: str
    partition: int | None
    partitions: int


@dataclass(frozen=True, slots=True)
class DeleteRow:
    """Delete ONE row of a table without a primary key whose ``columns`` hold
    ``values`` (NULL-safe full-row match); nothing when no row matches."""

    columns: Columns
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class UpdateRow:
    """Set ``set_columns`` to ``set_values`` in ONE row of a table without a primary
    key whose ``columns`` hold ``values``; nothing when no row matches."""

    columns: Columns
    values: tuple[Any, ...]
    set_columns: Columns
    set_values: tuple[Any, ...]


Mutation = Upsert | Delete | Move | Truncate | DeleteRow | UpdateRow


@dataclass(slots=True)
class Segment:
    """Bulk work, applied in this order: truncates, deletes, upserts."""

    truncates: list[Truncate] = field(default_factory=list)
    deletes: list[Key] = field(default_factory=list)
    upserts: dict[Columns, list[tuple[Any, ...]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.truncates or self.deletes or self.upserts)

    @property
    def rows(self) -> int:
        return len(self.deletes) + sum(len(v) for v in self.upserts.values())


Step = Segment | Move | DeleteRow | UpdateRow

# Entry states: the final effect of the batch on one key.
_UPSERT = 0  # merge the carried columns into whatever row exists
_DELETE = 1  # the row is gone
_RESET = 2  # delete, then insert the carried columns


class TableReducer:
    """Collapses one replica table's mutations; ``steps()`` gives the work to do.

    ``columns`` is the full column list the sink writes for the table (key
    first is not required); an upsert carrying exactly these is a full row.
    """

    __slots__ = ("_columns", "_full", "_pending", "_steps", "_truncates", "changes")

    def __init__(self, columns: Sequence[str]) -> None:
        self._columns: Columns = tuple(columns)
        self._full = frozenset(self._columns)
        self._pending: dict[Key, list[Any]] = {}
        self._truncates: list[Truncate] = []
        self._steps: list[Step] = []
        self.changes = 0

    def add(self, m: Mutation) -> None:
        self.changes += 1
        if type(m) is Upsert:
            self._upsert(m.key, m.columns, m.values)
        elif type(m) is Delete:
            self._pending[m.key] = [_DELETE, (), ()]
        elif type(m) is Move:
            self._move(m)
        elif type(m) is Truncate:
            if self._pending:
                self._barrier()
            if m not in self._truncates:
                self._truncates.append(m)
        else:
            raise TypeError(f"not a mutation: {m!r}")

    def upsert(self, key: Key, columns: Columns, values: tuple[Any, ...]) -> None:
        """``add(Upsert(key, columns, values))`` without building the Upsert."""
        self.changes += 1
        self._upsert(key, columns, values)

    def add_all(self, mutations: Iterable[Mutation]) -> None:
        for m in mutations:
            self.add(m)

    def _is_full(self, columns: Columns) -> bool:
        return columns is self._columns or columns == self._columns or self._full.issubset(columns)

    def _merge(self, old: list[Any], columns: Columns, values: tuple[Any, ...]) -> tuple[Columns, tuple[Any, ...]]:
        if self._is_full(columns):
            return columns, values
        row = dict(zip(old[1], old[2], strict=True))
        row.update(zip(columns, values, strict=True))
        order = [c for c in self._columns if c in row] + [c for c in row if c not in self._full]
        return tuple(order), tuple(row[c] for c in order)

    def _upsert(self, key: Key, columns: Columns, values: tuple[Any, ...]) -> None:
        prev = self._pending.get(key)
        if prev is None:
            self._pending[key] = [_UPSERT, columns, values]
        elif prev[0] == _DELETE:
            self._pending[key] = [_RESET, columns, values]
        else:
            cols, vals = self._merge(prev, columns, values)
            prev[1] = cols
            prev[2] = vals

    def _move(self, m: Move) -> None:
        prev = self._pending.get(m.old_key)
        if prev is not None and prev[0] == _DELETE:
            # No row at the old key: the UPDATE would match nothing and fall back
            # to an upsert of what the change carries.
            self._upsert(m.key, m.columns, m.values)
            return
        if prev is not None and self._is_full(prev[1]):
            # The old row is fully known in this batch: fill the kept columns from it.
            cols, vals = self._merge(prev, m.columns, m.values)
            self._pending[m.old_key] = [_DELETE, (), ()]
            self._upsert(m.key, cols, vals)
            return
        self._barrier()
        self._steps.append(m)

    def _barrier(self) -> None:
        seg = self._segment()
        if seg:
            self._steps.append(seg)
        self._pending = {}
        self._truncates = []

    def _segment(self) -> Segment:
        seg = Segment(truncates=self._truncates)
        deletes = seg.deletes
        upserts = seg.upserts
        for key, (state, columns, values) in self._pending.items():
            if state != _UPSERT:
                deletes.append(key)
            if state != _DELETE:
                rows = upserts.get(columns)
                if rows is None:
                    upserts[columns] = rows = []
                rows.append(values)
        return seg

    def steps(self) -> list[Step]:
        """The reduced work, in order (the reducer can be used once)."""
        seg = self._segment()
        steps = [*self._steps, seg] if seg else list(self._steps)
        self._steps = []
        self._pending = {}
        self._truncates = []
        return steps


class KeylessReducer:
    """The mutations of a table without a primary key, in source order, unreduced.

    Its rows can only be told apart by their whole image and may be duplicates:
    every change counts, and a delete or update must see exactly the rows the
    source had before it. Consecutive inserts (:class:`Upsert` with an empty key,
    an insert) are grouped into one bulk step; each :class:`DeleteRow` and
    :class:`UpdateRow` is its own step; a truncate starts a new segment.
    """

    __slots__ = ("_segment", "_steps", "changes")

    def __init__(self, columns: Sequence[str] = ()) -> None:
        self._segment = Segment()
        self._steps: list[Step] = []
        self.changes = 0

    def _flush(self) -> None:
        if self._segment:
            self._steps.append(self._segment)
            self._segment = Segment()

    def add(self, m: Mutation) -> None:
        self.changes += 1
        if type(m) is Upsert:
            if m.key:
                raise TypeError(f"a keyed upsert for a table without a primary key: {m!r}")
            rows = self._segment.upserts.get(m.columns)
            if rows is None:
                self._segment.upserts[m.columns] = rows = []
            rows.append(m.values)
        elif type(m) is DeleteRow or type(m) is UpdateRow:
            self._flush()
            self._steps.append(m)
        elif type(m) is Truncate:
            self._flush()
            self._segment.truncates.append(m)
        else:
            raise TypeError(f"not a mutation of a table without a primary key: {m!r}")

    def upsert(self, key: Key, columns: Columns, values: tuple[Any, ...]) -> None:
        self.add(Upsert(key, columns, values))

    def add_all(self, mutations: Iterable[Mutation]) -> None:
        for m in mutations:
            self.add(m)

    def steps(self) -> list[Step]:
        """The work, in source order (the reducer can be used once)."""
        self._flush()
        steps, self._steps = self._steps, []
        return steps


Reducer = TableReducer | KeylessReducer


def reduce_mutations(columns: Sequence[str], mutations: Iterable[Mutation]) -> list[Step]:
    """Convenience: the steps for ``mutations`` of a table writing ``columns``."""
    r = TableReducer(columns)
    r.add_all(mutations)
    return r.steps()
