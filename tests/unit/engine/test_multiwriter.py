"""Whether two nodes' key generators can produce one value (cdc check, master-master)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cdc.multiwriter import may_collide
from cdc.spi import KeyGenerator


def gen(increment: int, residue: int, low: int, high: int) -> KeyGenerator:
    return KeyGenerator("mm.t", "id", increment, residue % increment, low, high, "test")


def test_interleaved_steps_and_disjoint_ranges_never_collide() -> None:
    assert not may_collide(gen(2, 1, 1, 10**9), gen(2, 0, 2, 10**9))  # odd / even
    assert not may_collide(gen(3, 1, 1, 10**9), gen(3, 2, 1, 10**9))
    assert not may_collide(gen(1, 0, 1, 1000), gen(1, 0, 1001, 2000))  # key ranges


def test_same_sequence_on_two_nodes_collides() -> None:
    assert may_collide(gen(1, 0, 1, 2**63 - 1), gen(1, 0, 1, 2**63 - 1))
    assert may_collide(gen(2, 1, 1, 100), gen(3, 1, 1, 100))  # 1, 7, 13 ...
    assert may_collide(gen(10, 1, 51, 10**6), gen(1, 0, 1, 60))  # 51 itself


@given(st.integers(1, 12), st.integers(0, 11), st.integers(-30, 60), st.integers(0, 60),
       st.integers(1, 12), st.integers(0, 11), st.integers(-30, 60), st.integers(0, 60))
def test_matches_brute_force(ia: int, ra: int, la: int, wa: int,
                             ib: int, rb: int, lb: int, wb: int) -> None:
    a, b = gen(ia, ra, la, la + wa), gen(ib, rb, lb, lb + wb)
    values_a = {v for v in range(a.low, a.high + 1) if v % a.increment == a.residue}
    values_b = {v for v in range(b.low, b.high + 1) if v % b.increment == b.residue}
    assert may_collide(a, b) == bool(values_a & values_b)
