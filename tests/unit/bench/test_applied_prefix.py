"""bench/compare's lag count (``AppliedPrefix``): exact, and it stops rescanning applied rows.

The rates phase samples the replica's row count four times a second; a count that
scans every row of the step loads the replica more the faster a pipeline is. These
runs apply ids in the order the benchmark's writers commit them (two sessions taking
interleaved blocks, ten-row transactions) and check each count against the true one.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.bench.test_compare_report import _compare


def _commit_order(lo: int, blocks: list[int], rng: random.Random) -> list[int]:
    """Ids in the order two writer sessions commit them: each takes the next block of
    ids and commits it ten rows at a time; the sessions' commits interleave."""
    sessions: list[list[int]] = [[], []]
    n = lo
    for i, size in enumerate(blocks):
        sessions[i % 2].extend(range(n, n + size))
        n += size
    order: list[int] = []
    while sessions[0] or sessions[1]:
        live = [s for s in sessions if s]
        s = rng.choice(live)
        order.extend(s[:10])
        del s[:10]
    return order


class _Replica:
    """The replica's table as a set of ids, answering AppliedPrefix.QUERY."""

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.scanned = 0

    def fetch(self, query: str, params: list[int]) -> tuple[int, int]:
        assert "{t}" in query and query.count("%s") == 2
        candidate, base = params
        beyond = [i for i in self.ids if i >= base]
        self.scanned += len(beyond)
        return len(beyond), sum(1 for i in beyond if i < candidate)


@settings(max_examples=200, deadline=None)
@given(
    lo=st.integers(0, 10**9),
    blocks=st.lists(st.integers(1, 60).map(lambda b: b * 10), min_size=1, max_size=40),
    seed=st.integers(0, 2**32),
    every=st.integers(1, 400),
)
def test_counts_are_exact_in_any_commit_order(lo: int, blocks: list[int], seed: int,
                                             every: int) -> None:
    prefix = _compare().AppliedPrefix(lo)
    rng = random.Random(seed)
    replica = _Replica()
    replica.ids.update(range(lo - 50, lo))  # an earlier step's rows: not counted
    for k, i in enumerate(_commit_order(lo, blocks, rng), 1):
        replica.ids.add(i)
        if k % every == 0:
            assert prefix.count(replica.fetch) == k
    assert prefix.count(replica.fetch) == sum(blocks)
    assert prefix.count(replica.fetch) == sum(blocks)


def test_scans_stay_near_the_recent_rows() -> None:
    """A long steady step: what each count scans stays bounded, where a full count
    would scan every row applied so far."""
    prefix = _compare().AppliedPrefix(0)
    replica = _Replica()
    order = _commit_order(0, [500] * 400, random.Random(7))  # 200,000 rows
    per_sample = 1000
    full = 0
    worst = 0
    for k in range(per_sample, len(order) + 1, per_sample):
        replica.ids.update(order[k - per_sample:k])
        before = replica.scanned
        assert prefix.count(replica.fetch) == k
        worst = max(worst, replica.scanned - before)
        full += k
    assert worst <= 4 * per_sample
    assert replica.scanned * 20 < full


def test_a_missing_table_reads_zero_rows() -> None:
    bench: Any = _compare()
    assert bench.AppliedPrefix(5).count(lambda q, p: None) == 0
