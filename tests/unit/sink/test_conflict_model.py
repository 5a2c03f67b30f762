"""A model of master-master replication checking the resolution rule of cdc.sink.conflicts.

N nodes, each a database (key -> row image), a sink with its version entries, and
a source whose writes travel over one FIFO channel per (origin -> node), the
node's own channel included (its own topic). An app on each node inserts,
updates and deletes hot keys (its before-image is what its database holds);
sinks apply what :func:`decide` says (an own write only over the row the sink
last let stand, as cdc.sink.conflictplan re-applies it). Hypothesis draws the writes and the
delivery interleavings; with synchronised clocks every node must end with the
same rows (under last_writer_wins and priority, also with skewed clocks), and
every key that had two concurrent writes (vector clocks tell) must be in some
node's conflict log.

Nodes may have **whole-second clocks** (MariaDB's binlog) and then stamp their
writes with the **version clock** their source keeps (connectors/mysql/source/
binlog.py, "Version clock"): a local write's version time is
``max(commit time, floor)``, where the floor moves past the version time of
every other node's write the node's sink recorded (the sink's row-version rows,
read back from the node's binlog) and to each local write's own time. With
synchronised clocks a causal successor then always sorts after what it was
made on, on every node: no write is ever undone as ``clock_skew``, and under
last_writer_wins no causal write is undone at all (checked below, for 2 and 3
nodes, with any mix of whole-second and millisecond nodes).

``skew_experiment`` measures what clock skew does to last_writer_wins (used in
docs/MASTER-MASTER.md): the share of causally later writes that lose.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.sink.conflicts import Outcome, Rules, Write, decide
from cdc.sink.versions import Entry, Version, canonical_image, image_hash

KEYS = (1, 2)


@dataclass
class Msg:
    key: int
    write: Write
    vc: dict[str, int]


@dataclass
class Node:
    name: str
    rules: Rules
    db: dict[int, str] = field(default_factory=dict)
    entries: dict[int, Entry] = field(default_factory=dict)
    vc: dict[int, dict[str, int]] = field(default_factory=dict)  # per key: writes known
    seq: int = 0
    coarse: bool = False  # whole-second commit times (MariaDB's binlog)
    clocked: bool = False  # stamps versions with the version clock (see the docstring)
    floor: int = 0  # the version clock: least version time of the next local write
    dbver: dict[int, Version] = field(default_factory=dict)  # per key: version the db holds
    logged: set[int] = field(default_factory=set)
    outcomes: list[Outcome] = field(default_factory=list)


@dataclass
class World:
    nodes: list[Node]
    channels: dict[tuple[str, str], deque[Msg]]
    writes: list[tuple[int, dict[str, int], str]] = field(default_factory=list)
    now: int = 1_000_000
    skew: dict[str, int] = field(default_factory=dict)
    causal_later_lost: int = 0
    causal_later: int = 0
    # local writes whose version did not sort after the version of the row they were made on
    unordered: int = 0
    # per (key, write version): the versions of the writes it was made on, transitively
    bases: dict[tuple[int, Version], set[Version]] = field(default_factory=dict)


def make(n: int, resolution: str = "last_writer_wins", skew: dict[str, int] | None = None,
         coarse: tuple[bool, ...] = (), clock: bool = True) -> World:
    """``coarse[i]``: node i has a whole-second clock (and, with ``clock``, the version
    clock, as a MariaDB source in master-master has)."""
    names = [f"n{i}" for i in range(n)]
    nodes = [Node(x, Rules(x, resolution, tuple(names), 10**12)) for x in names]  # type: ignore[arg-type]
    for node, c in zip(nodes, coarse, strict=False):
        node.coarse = c
        node.clocked = c and clock
    chans = {(a, b): deque[Msg]() for a in names for b in names}
    return World(nodes, chans, skew=skew or {})


def local_write(w: World, node: Node, key: int, value: int) -> None:
    """The app on ``node`` writes ``key``: insert if absent, else update or delete."""
    w.now += 1
    before = node.db.get(key)
    if before is None:
        kind, after = "insert", canonical_image({"k": key, "v": value, "by": node.name})
    elif value % 3 == 0:
        kind, after = "delete", None
    else:
        kind, after = "update", canonical_image({"k": key, "v": value, "by": node.name})
    node.seq += 1
    ts = w.now + w.skew.get(node.name, 0)
    if node.coarse:
        ts -= ts % 1000
    if node.clocked:
        ts = node.floor = max(ts, node.floor)
    version = Version(ts, node.name, (node.seq,), str(node.seq))
    base = node.dbver.get(key)
    if base is not None and version.order <= base.order:
        w.unordered += 1
    w.bases[(key, version)] = (
        set() if base is None else {base, *w.bases.get((key, base), ())})
    node.dbver[key] = version
    vc = dict(node.vc.get(key, {}))
    # A causally later write whose dependency came from another node: does it sort later?
    dep = node.entries.get(key)
    if dep is not None and dep.version.node != node.name and before is not None:
        w.causal_later += 1
        if version.order < dep.version.order:
            w.causal_later_lost += 1
    vc[node.name] = vc.get(node.name, 0) + 1
    node.vc[key] = vc
    if after is None:
        node.db.pop(key, None)
    else:
        node.db[key] = after
    wr = Write(kind, version, image_hash(before), after, image_hash(after))  # type: ignore[arg-type]
    w.writes.append((key, vc, node.name))
    for other in w.nodes:
        w.channels[(node.name, other.name)].append(Msg(key, wr, vc))


def deliver(w: World, origin: str, target: Node) -> None:
    msg = w.channels[(origin, target.name)].popleft()
    w.now += 1
    wr = msg.write
    own = origin == target.name
    if own:
        wr = Write(wr.kind, wr.version, wr.before_hash, wr.image, wr.hash, own=True)
    entry = target.entries.get(msg.key)
    out = decide(entry, wr, target.rules, w.now)
    target.outcomes.append(out)
    if out.conflicts:
        target.logged.add(msg.key)
    held = None if entry is None or entry.deleted else entry.image
    if out.apply and own and (entry is None or target.db.get(msg.key) != held):
        pass  # the row moved on locally since the sink's last write: not re-applied
    elif out.apply:
        if wr.image is None:
            target.db.pop(msg.key, None)
        else:
            target.db[msg.key] = wr.image
        target.dbver[msg.key] = wr.version
    if out.restore:
        e = target.entries[msg.key]
        if e.image is None:
            target.db.pop(msg.key, None)
        else:
            target.db[msg.key] = e.image
        target.dbver[msg.key] = e.version
    if out.entry is not None:
        target.entries[msg.key] = out.entry
        # the sink's version row, in the node's binlog: the source's clock moves past it
        if target.clocked and out.entry.version.node != target.name:
            target.floor = max(target.floor, out.entry.version.ts_ms + 1)
    if not own:  # the node now knows the write (applied or not)
        vc = target.vc.setdefault(msg.key, {})
        for k, v in msg.vc.items():
            vc[k] = max(vc.get(k, 0), v)


def drain(w: World, rnd: random.Random) -> None:
    while True:
        busy = [k for k, q in w.channels.items() if q]
        if not busy:
            return
        origin, target = rnd.choice(busy)
        deliver(w, origin, next(n for n in w.nodes if n.name == target))


def run(world: World, steps: list[tuple[int, int, int, int]], seed: int) -> None:
    """``steps``: (action, node index, key index, value); action 0 writes, else delivers."""
    n = len(world.nodes)
    for action, ni, ki, value in steps:
        node = world.nodes[ni % n]
        if action == 0:
            local_write(world, node, KEYS[ki % len(KEYS)], value)
        else:
            origins = [o for (o, t), q in world.channels.items() if t == node.name and q]
            if origins:
                deliver(world, origins[value % len(origins)], node)
    drain(world, random.Random(seed))


def concurrent_keys(world: World) -> set[int]:
    def le(a: dict[str, int], b: dict[str, int]) -> bool:
        return all(v <= b.get(k, 0) for k, v in a.items())

    out = set()
    ws = world.writes
    for i, (k1, vc1, n1) in enumerate(ws):
        for k2, vc2, n2 in ws[i + 1 :]:
            if k1 == k2 and n1 != n2 and not le(vc1, vc2) and not le(vc2, vc1):
                out.add(k1)
    return out


STEPS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 1), st.integers(0, 50)),
    max_size=40,
)
COARSE = st.lists(st.booleans(), min_size=3, max_size=3).map(tuple)


@settings(max_examples=300, deadline=None)
@given(STEPS, st.integers(0, 2**16), st.sampled_from([2, 3]), COARSE)
def test_last_writer_wins_converges_and_logs_every_conflict(
    steps: list[tuple[int, int, int, int]], seed: int, n: int, coarse: tuple[bool, ...]
) -> None:
    world = make(n, coarse=coarse)
    run(world, steps, seed)
    first = world.nodes[0]
    for node in world.nodes[1:]:
        assert node.db == first.db, f"{node.name} differs from {first.name}"
    # Every node holds, per key, the write with the highest version.
    for node in world.nodes:
        assert {k: e.image for k, e in node.entries.items() if not e.deleted} == node.db
    logged = set().union(*(x.logged for x in world.nodes))
    assert concurrent_keys(world) <= logged


@settings(max_examples=300, deadline=None)
@given(STEPS, st.integers(0, 2**16), st.sampled_from([2, 3]), COARSE)
def test_priority_converges(steps: list[tuple[int, int, int, int]], seed: int, n: int,
                            coarse: tuple[bool, ...]) -> None:
    world = make(n, "priority", coarse=coarse)
    run(world, steps, seed)
    for node in world.nodes[1:]:
        assert node.db == world.nodes[0].db


@settings(max_examples=300, deadline=None)
@given(STEPS, st.integers(0, 2**16), st.sampled_from([2, 3]), COARSE,
       st.sampled_from(["last_writer_wins", "priority"]))
def test_a_causal_successor_is_never_undone(
    steps: list[tuple[int, int, int, int]], seed: int, n: int, coarse: tuple[bool, ...],
    resolution: str,
) -> None:
    """Synchronised clocks, whole-second ones on any nodes: every local write sorts after
    the write it was made on (on its node, whatever that node had), so under
    last_writer_wins no row ends as a write that a later write was made on top of
    (under priority the window may place a causal write before a higher-ranked base:
    ``superseded``, by design)."""
    world = make(n, resolution, coarse=coarse)
    run(world, steps, seed)
    assert world.unordered == 0
    if resolution == "last_writer_wins":
        for key in KEYS:
            end = world.nodes[0].entries.get(key)
            if end is None:
                continue
            undone = [v for (k, v), bases in world.bases.items() if k == key and end.version in bases]
            assert not undone, f"key {key} ends as {end.version}, a base of {undone}"


def test_whole_second_clocks_without_the_version_clock_undo_a_causal_successor() -> None:
    """The defect the version clock fixes (PostgreSQL n0 <-> MariaDB n1): n1 updates a
    row 0.3 s after n0's insert of it, in the same second; its whole-second time sorts
    before the insert, so the update is undone on both nodes. With the clock it wins."""
    for clock, lost in ((False, True), (True, False)):
        world = make(2, coarse=(False, True), clock=clock)
        pg, maria = world.nodes
        world.now = 5_000_321
        local_write(world, pg, 1, 1)  # insert at ...321 ms
        drain(world, random.Random(1))
        world.now += 300
        local_write(world, maria, 1, 2)  # update at ...621 ms, stamped ...000 without the clock
        drain(world, random.Random(1))
        assert pg.db == maria.db
        assert ('"by":"n1"' not in pg.db[1]) is lost
        assert (world.unordered > 0) is lost


@settings(max_examples=300, deadline=None)
@given(STEPS, st.integers(0, 2**16), st.sampled_from([2, 3]),
       st.lists(st.integers(-50, 50), min_size=3, max_size=3),
       st.sampled_from(["last_writer_wins", "priority"]), COARSE)
def test_skewed_clocks_still_converge(steps: list[tuple[int, int, int, int]], seed: int, n: int,
                                      skews: list[int], resolution: str,
                                      coarse: tuple[bool, ...]) -> None:
    """Skew costs causally later writes (see skew_experiment), never convergence."""
    world = make(n, resolution, skew={f"n{i}": s for i, s in enumerate(skews)}, coarse=coarse)
    run(world, steps, seed)
    for node in world.nodes[1:]:
        assert node.db == world.nodes[0].db


def test_insert_and_delete_on_two_nodes_at_once_is_logged() -> None:
    world = make(2)
    for node in world.nodes:  # each inserts and deletes key 1 before hearing of the other
        local_write(world, node, 1, 1)
        local_write(world, node, 1, 3)
    drain(world, random.Random(1))
    assert all(not n.db for n in world.nodes)
    assert all(1 in n.logged for n in world.nodes)


def test_a_lone_writer_never_conflicts() -> None:
    world = make(3)
    rnd = random.Random(7)
    for i in range(200):
        local_write(world, world.nodes[0], KEYS[i % 2], rnd.randrange(1, 100))
        if i % 5 == 0:
            drain(world, rnd)
    drain(world, rnd)
    assert not any(n.logged for n in world.nodes)
    assert all(n.db == world.nodes[0].db for n in world.nodes)


def skew_experiment(skew_ms: int, *, gap_ms: int = 100, delay_ms: int = 20, writes: int = 4000,
                    seed: int = 1) -> float:
    """Two nodes, node n1's clock ``skew_ms`` behind; writes on one hot key alternate between
    nodes every ``gap_ms`` on average, replication takes ``delay_ms``. Returns the share of
    causally later writes (made on top of the other node's write) that lose under LWW."""
    rnd = random.Random(seed)
    world = make(2, skew={"n1": -skew_ms})
    a, b = world.nodes
    pending: list[tuple[int, str, str]] = []  # (due time, origin, target)
    t = world.now
    for _ in range(writes):
        t += max(1, int(rnd.expovariate(1 / gap_ms)))
        while pending and pending[0][0] <= t:
            due, o, tgt = pending.pop(0)
            world.now = max(world.now, due - 1)
            deliver(world, o, a if tgt == "n0" else b)
        world.now = max(world.now, t - 1)
        node = rnd.choice((a, b))
        local_write(world, node, 1, rnd.randrange(1, 1000) * 3 + 1)  # updates, no deletes
        for tgt in ("n0", "n1"):
            pending.append((world.now + delay_ms, node.name, tgt))
        pending.sort()
    return world.causal_later_lost / max(1, world.causal_later)


def test_skew_makes_causally_later_writes_lose() -> None:
    assert skew_experiment(0) == 0.0
    assert 0.0 < skew_experiment(50) < skew_experiment(500)


def divergence(resolution: str, n: int, runs: int = 2000, seed: int = 5) -> float:
    """Share of random runs (as the property tests draw them) ending with nodes that differ."""
    rnd = random.Random(seed)
    bad = 0
    for _ in range(runs):
        steps = [(rnd.randint(0, 2), rnd.randint(0, 2), rnd.randint(0, 1), rnd.randint(0, 50))
                 for _ in range(rnd.randint(0, 40))]
        world = make(n, resolution)
        run(world, steps, rnd.randrange(1 << 16))
        bad += any(x.db != world.nodes[0].db for x in world.nodes[1:])
    return bad / runs


if __name__ == "__main__":  # the numbers in docs/MASTER-MASTER.md
    for s in (0, 1, 10, 50, 100, 500, 1000, 5000):
        print(f"skew {s:>5} ms: {100 * skew_experiment(s):5.1f}% of causally later writes lose")
    for res in ("last_writer_wins", "priority", "keep_local"):
        for n in (2, 3):
            print(f"{res}, {n} nodes: {100 * divergence(res, n):.1f}% of random runs diverge")
