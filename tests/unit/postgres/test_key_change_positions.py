"""A key change with unchanged TOAST values: replays keep positions, replicas end exact.

Without a server: a model of one transaction that moves a row to a new key
(its TOASTed value not sent) and then changes another row, and of later
transactions on the new key. The source re-reads the moved row when it
decodes the transaction, so a first decode and a replay after a restart
may see different table states. The property: both decodes give the same
number of events, and a replica that applied the first decode up to any
event k, then the replay after k, then the later transactions, ends equal
to the source. ``_new_key_event`` is the source's own rule for the event
in the new key's slot; the integration test
(tests/integration/postgres/test_pg_stream.py) checks it on a real server.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cdc.events import Op
from connectors.postgres.source.changes import _new_key_event

Row = dict[str, Any]
Event = tuple[Op, Row, Row | None]  # op, key, after (partial when a column is left out)

# Later transactions on the new key 2: ("update", n) leaves the TOASTed value
# unchanged (not sent), ("delete",) removes the row, ("insert", big) re-creates it.
later_op = st.one_of(
    st.tuples(st.just("update"), st.integers(0, 9)),
    st.tuples(st.just("delete")),
    st.tuples(st.just("insert"), st.sampled_from(["b1", "b2"])),
)


def _state_after(ops: list[tuple[Any, ...]], upto: int) -> dict[int, Row]:
    """The source table after the key change and ``upto`` later transactions."""
    table: dict[int, Row] = {2: {"id": 2, "big": "big0", "n": 1}, 5: {"id": 5, "n": 50}}
    for op in ops[:upto]:
        if op[0] == "update" and 2 in table:
            table[2] = {**table[2], "n": op[1]}
        elif op[0] == "delete":
            table.pop(2, None)
        elif op[0] == "insert" and 2 not in table:
            table[2] = {"id": 2, "big": op[1], "n": 0}
    return table


def _legal(ops: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Drop ops the database would refuse or that change nothing (update/delete of no row)."""
    out: list[tuple[Any, ...]] = []
    present = True
    for op in ops:
        if op[0] in ("update", "delete") and not present:
            continue
        if op[0] == "insert" and present:
            continue
        present = op[0] != "delete"
        out.append(op)
    return out


def _decode_tx(table_now: dict[int, Row]) -> list[Event]:
    """The key-change transaction's events when the re-read sees ``table_now``."""
    row = table_now.get(2)
    op, _shape, key, _before, after, _unchanged, _rid = _new_key_event(
        None, {"id": 2}, None if row is None else dict(row), 1)  # type: ignore[arg-type]
    return [(Op.DELETE, {"id": 1}, None), (op, key, after), (Op.UPDATE, {"id": 5}, {"id": 5, "n": 50})]


def _later_events(ops: list[tuple[Any, ...]]) -> list[Event]:
    events: list[Event] = []
    for op in ops:
        if op[0] == "update":
            events.append((Op.UPDATE, {"id": 2}, {"id": 2, "n": op[1]}))  # big left out
        elif op[0] == "delete":
            events.append((Op.DELETE, {"id": 2}, None))
        else:
            events.append((Op.CREATE, {"id": 2}, {"id": 2, "big": op[1], "n": 0}))
    return events


def _apply(replica: dict[int, Row], events: list[Event]) -> None:
    """The sinks' rules: an upsert sets the columns it carries, a delete removes the key."""
    for op, key, after in events:
        if op is Op.DELETE:
            replica.pop(key["id"], None)
        else:
            assert after is not None
            replica[key["id"]] = {**replica.get(key["id"], {}), **after}


@given(ops=st.lists(later_op, max_size=5), first=st.integers(0, 5), again=st.integers(0, 5),
       k=st.integers(-1, 2))
def test_replay_keeps_positions_and_the_replica_ends_exact(
    ops: list[tuple[Any, ...]], first: int, again: int, k: int,
) -> None:
    ops = _legal(ops)
    first, again = min(first, len(ops)), max(min(again, len(ops)), min(first, len(ops)))
    one = _decode_tx(_state_after(ops, first))
    two = _decode_tx(_state_after(ops, again))  # a restart: decoded again, later
    assert len(one) == len(two), "a replay gives every event the index it had"
    assert [e[1] for e in one] == [e[1] for e in two], "same key in every slot"
    replica: dict[int, Row] = {1: {"id": 1, "big": "big0", "n": 1}, 5: {"id": 5, "n": 5}}
    _apply(replica, one[: k + 1])  # applied before the crash, through event k
    _apply(replica, two[k + 1:])  # the replay, resumed after event k
    _apply(replica, _later_events(ops))
    assert replica == _state_after(ops, len(ops))


def test_new_key_event_invents_no_values() -> None:
    gone = _new_key_event(None, {"id": 2}, None, 7)  # type: ignore[arg-type]
    assert gone == (Op.DELETE, None, {"id": 2}, {"id": 2}, None, frozenset(), 7)
    row = {"id": 2, "big": "x", "n": 1}
    found = _new_key_event(None, {"id": 2}, row, 7)  # type: ignore[arg-type]
    assert found == (Op.CREATE, None, {"id": 2}, None, row, frozenset(), 7)
