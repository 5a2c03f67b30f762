"""The applier's fast path (plain full-row upserts without DecodedChange or mutation
objects) against the reference path, on real replicas.

The same randomized batches (inserts, updates, key changes, deletes, re-inserts,
unchanged TOAST columns, events of the sink's own origin, replays at new offsets
at or below the stored position) go to two tables: one applier with the fast
path, one without. Replica rows and checkpoints must be identical, and the fast
path must actually have taken most records.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from cdc.events import ChangeEvent
from cdc.serde import RegistryClient
from cdc.sink.applier import Record
from connectors.postgres.position import Lsn, PgPosition
from tests.integration.sink.helpers import (
    ApplierHarness,
    EventFactory,
    Model,
    drop_tables,
    items_schema,
    read_rows,
)

pytestmark = pytest.mark.integration

ORIGIN = "replica_fast"


def _looped(ev: ChangeEvent) -> ChangeEvent:
    """A change of the sink's own origin, right after ``ev`` (between its position and the
    next event's): applying it would change the row."""
    p = ev.source.position
    assert isinstance(p, PgPosition)
    position = dataclasses.replace(p, lsn=Lsn(p.lsn.value + 5))
    source = dataclasses.replace(ev.source, origin=ORIGIN, position=position)
    after = None if ev.after is None else {**ev.after, "label": "looped"}
    return dataclasses.replace(ev, source=source, after=after)


def _workload(name: str, seed: int) -> list[list[ChangeEvent]]:
    """Batches of one seeded workload for table ``name`` (the same for any name)."""
    rng = random.Random(seed)
    f = EventFactory(items_schema(name))
    model = Model()
    model.random_workload(f, 700, rng, keys=80)
    events: list[ChangeEvent] = []
    for e in model.events:
        events.append(e)
        if e.after is not None and rng.random() < 0.05:
            events.append(_looped(e))
    batches: list[list[ChangeEvent]] = []
    i = 0
    while i < len(events):
        n = rng.choice([1, 5, 40, 200])
        batch = events[i : i + n]
        if i and rng.random() < 0.3:  # a source replay: old events again, at new offsets
            a = rng.randrange(i)
            batch = events[a : min(i, a + rng.randrange(1, 30))] + batch
        batches.append(batch)
        i += n
    return batches


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_and_reference_paths_leave_the_same_replica(
    replica: tuple[str, str], registry: RegistryClient, unique_name: str, seed: int
) -> None:
    kind, dsn = replica
    names = (f"{unique_name}_f"[-40:], f"{unique_name}_r"[-40:])
    harnesses = [ApplierHarness(kind, dsn, registry, n, [f"src.public.{n}"], origin=ORIGIN)
                 for n in names]
    harnesses[1].applier.fast = False
    fast_hits = 0
    real = harnesses[0].applier._fast

    def counting(rec: Record) -> Any:
        nonlocal fast_hits
        hit = real(rec)
        fast_hits += hit is not None
        return hit

    harnesses[0].applier._fast = counting  # type: ignore[method-assign]
    try:
        for h, n in zip(harnesses, names, strict=True):
            drop_tables(h.session, n)
        results = []
        for h, n in zip(harnesses, names, strict=True):
            out = []
            for batch in _workload(n, seed):
                r = h.apply(batch)
                out.append((r.applied, r.skipped, sorted((tp[1], n) for tp, n in r.consumed.items())))
                assert r.failure is None
            results.append(out)
        assert results[0] == results[1]
        assert read_rows(harnesses[0].session, names[0]) == read_rows(harnesses[1].session, names[1])
        cps = [{tp[1]: (cp.offset, cp.position) for tp, cp in h.checkpoints.items()}
               for h in harnesses]
        assert cps[0] == cps[1]
        stored = [{tp[1]: h.store.load(h.session, [tp])[tp] for tp in h.checkpoints}
                  for h in harnesses]
        for h in harnesses:
            h.session.rollback()
        assert [{p: (c.offset, c.position) for p, c in s.items()} for s in stored] == cps
        total = sum(len(b) for b in _workload(names[0], seed))
        assert fast_hits > total // 3, f"fast path took only {fast_hits} of {total} records"
    finally:
        for h, n in zip(harnesses, names, strict=True):
            drop_tables(h.session, n)
            h.close()
