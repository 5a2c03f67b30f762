"""The reduced batch has the same outcome as applying every change in order.

The sequential model applies events one by one to a dict of rows; the
"database" model executes the reducer's steps with the replica's statement
semantics (a segment's truncates, then deletes, then upserts; moves as an
UPDATE of the key, falling back to an upsert). Hypothesis drives workloads
with key changes, deletes and re-inserts, per-partition truncates and
unchanged-TOAST (partial) updates.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.sink.reduce import (
    Delete,
    Move,
    Mutation,
    Segment,
    Truncate,
    Upsert,
    reduce_mutations,
)

COLUMNS = ("id", "a", "b", "c")
PARTITIONS = 3
State = dict[tuple[Any, ...], dict[str, Any]]


def part(key: tuple[Any, ...]) -> int:
    return int(key[0]) % PARTITIONS


def apply_sequential(events: list[tuple[Any, ...]]) -> State:
    """The meaning of the change stream, one event at a time."""
    state: State = {}
    for ev in events:
        kind = ev[0]
        if kind == "upsert":
            _, key, row = ev
            state[key] = {**state.get(key, {}), **row}
        elif kind == "delete":
            state.pop(ev[1], None)
        elif kind == "move":
            _, old, key, row, kept = ev
            old_row = state.pop(old, {})
            state[key] = {**{c: old_row[c] for c in kept if c in old_row}, **row}
        elif kind == "truncate":
            p = ev[1]
            for k in [k for k in state if p is None or part(k) == p]:
                del state[k]
    return state


def to_mutations(events: list[tuple[Any, ...]]) -> list[Mutation]:
    out: list[Mutation] = []
    for ev in events:
        kind = ev[0]
        if kind == "upsert":
            _, key, row = ev
            cols = COLUMNS if set(row) == set(COLUMNS) else tuple(c for c in COLUMNS if c in row)
            out.append(Upsert(key, cols, tuple(row[c] for c in cols)))
        elif kind == "delete":
            out.append(Delete(ev[1]))
        elif kind == "move":
            _, old, key, row, kept = ev
            cols = tuple(c for c in COLUMNS if c in row)
            if kept:
                out.append(Move(old, key, cols, tuple(row[c] for c in cols)))
            else:  # what the applier does for a key change with a full row
                out.append(Delete(old))
                out.append(Upsert(key, COLUMNS, tuple(row[c] for c in COLUMNS)))
        elif kind == "truncate":
            out.append(Truncate("t", ev[1], PARTITIONS if ev[1] is not None else 1))
    return out


def execute(steps: list[Segment | Move], state: State) -> State:
    """The replica's semantics of the reducer's statements."""
    state = {k: dict(v) for k, v in state.items()}
    for step in steps:
        if isinstance(step, Move):
            row = dict(zip(step.columns, step.values, strict=True))
            if step.old_key in state:
                old = state.pop(step.old_key)
                state[step.key] = {**old, **row}
            else:
                state[step.key] = {**state.get(step.key, {}), **row}
            continue
        for t in step.truncates:
            for k in [k for k in state if t.partition is None or part(k) == t.partition]:
                del state[k]
        for k in step.deletes:
            state.pop(k, None)
        for cols, rows in step.upserts.items():
            for values in rows:
                row = dict(zip(cols, values, strict=True))
                key = (row["id"],)
                state[key] = {**state.get(key, {}), **row}
    return state


@st.composite
def workloads(draw: st.DrawFn) -> tuple[State, list[tuple[Any, ...]]]:
    """A starting replica state and a stream of realistic events against it."""
    keys = st.integers(0, 7)
    vals = st.integers(0, 3)
    initial: State = {}
    for k in draw(st.lists(keys, max_size=5, unique=True)):
        initial[(k,)] = {"id": k, "a": draw(vals), "b": draw(vals), "c": draw(vals)}
    state = {k: dict(v) for k, v in initial.items()}
    events: list[tuple[Any, ...]] = []
    single_partition = draw(st.booleans())
    for _ in range(draw(st.integers(0, 40))):
        action = draw(st.sampled_from(
            ["insert", "insert", "update", "update", "partial", "delete", "move", "truncate"]))
        existing = sorted(state)
        if action == "insert":
            k = draw(keys)
            row = {"id": k, "a": draw(vals), "b": draw(vals), "c": draw(vals)}
            ev: tuple[Any, ...] = ("upsert", (k,), row)
        elif action in ("update", "partial") and existing:
            key = draw(st.sampled_from(existing))
            row = {"id": key[0], "a": draw(vals), "b": draw(vals), "c": draw(vals)}
            if action == "partial":  # unchanged TOAST columns are absent
                for c in draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3)):
                    row.pop(c)
            ev = ("upsert", key, row)
        elif action == "delete" and existing:
            ev = ("delete", draw(st.sampled_from(existing)))
        elif action == "move" and existing:
            old = draw(st.sampled_from(existing))
            free = [k for k in range(8) if (k,) not in state]
            if not free:
                continue
            new = draw(st.sampled_from(free))
            kept = draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3))
            row = {c: draw(vals) for c in ("a", "b", "c") if c not in kept}
            row["id"] = new
            ev = ("move", old, (new,), row, tuple(kept))
        elif action == "truncate":
            ev = ("truncate", None if single_partition else draw(st.integers(0, PARTITIONS - 1)))
        else:
            continue
        events.append(ev)
        state = apply_sequential_from(state, ev)
    return initial, events


def apply_sequential_from(state: State, ev: tuple[Any, ...]) -> State:
    out = apply_sequential([("upsert", k, v) for k, v in state.items()] + [ev])
    return out


@settings(max_examples=400, deadline=None)
@given(workloads())
def test_reduced_batch_equals_sequential_application(w: tuple[State, list[tuple[Any, ...]]]) -> None:
    initial, events = w
    expected = apply_sequential([("upsert", k, v) for k, v in initial.items()] + events)
    steps = reduce_mutations(COLUMNS, to_mutations(events))
    assert execute(steps, initial) == expected


@settings(max_examples=200, deadline=None)
@given(workloads(), st.integers(1, 10))
def test_any_batch_split_gives_the_same_outcome(
    w: tuple[State, list[tuple[Any, ...]]], size: int
) -> None:
    """Batches cut anywhere (smaller max_rows) reach the same state."""
    initial, events = w
    expected = apply_sequential([("upsert", k, v) for k, v in initial.items()] + events)
    state = initial
    for i in range(0, len(events), size):
        state = execute(reduce_mutations(COLUMNS, to_mutations(events[i:i + size])), state)
    assert state == expected


def test_repeated_changes_collapse_to_one_statement_per_kind() -> None:
    muts: list[Mutation] = []
    for v in range(100):
        muts.append(Upsert((1,), COLUMNS, (1, v, v, v)))
    muts.append(Delete((2,)))
    muts.append(Upsert((2,), COLUMNS, (2, 0, 0, 0)))
    steps = reduce_mutations(COLUMNS, muts)
    assert len(steps) == 1
    seg = steps[0]
    assert isinstance(seg, Segment)
    assert seg.deletes == [(2,)]
    assert seg.upserts == {COLUMNS: [(1, 99, 99, 99), (2, 0, 0, 0)]}


def test_partial_update_merges_into_an_earlier_full_row() -> None:
    steps = reduce_mutations(COLUMNS, [
        Upsert((1,), COLUMNS, (1, "a", "big-toast", "c")),
        Upsert((1,), ("id", "a", "c"), (1, "a2", "c2")),
    ])
    assert steps == [Segment(upserts={COLUMNS: [(1, "a2", "big-toast", "c2")]})]


def test_partial_update_alone_stays_partial() -> None:
    steps = reduce_mutations(COLUMNS, [Upsert((1,), ("id", "a"), (1, "x"))])
    assert steps == [Segment(upserts={("id", "a"): [(1, "x")]})]


def test_truncate_is_a_barrier_and_consecutive_truncates_merge() -> None:
    steps = reduce_mutations(COLUMNS, [
        Upsert((1,), COLUMNS, (1, 1, 1, 1)),
        Truncate("t", 0, 2),
        Truncate("t", 1, 2),
        Upsert((2,), COLUMNS, (2, 2, 2, 2)),
    ])
    assert len(steps) == 2
    first, second = steps
    assert isinstance(first, Segment) and first.upserts == {COLUMNS: [(1, 1, 1, 1)]}
    assert isinstance(second, Segment)
    assert second.truncates == [Truncate("t", 0, 2), Truncate("t", 1, 2)]
    assert second.upserts == {COLUMNS: [(2, 2, 2, 2)]}


def test_key_change_with_unknown_kept_columns_is_a_move_barrier() -> None:
    move = Move((1,), (5,), ("id", "a"), (5, "x"))
    steps = reduce_mutations(COLUMNS, [Upsert((3,), COLUMNS, (3, 0, 0, 0)), move])
    assert steps[1] == move
    assert isinstance(steps[0], Segment)
