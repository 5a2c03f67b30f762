"""Every fuzz target on its seed corpus and regression inputs, then on mutations of them.

The seeds are real bytes (``capture.py``); ``regress-*`` files are inputs a
fuzz run once failed on. Runs under the normal build in ``make test`` and
under AddressSanitizer + UBSan in ``make sanitize``.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import run, targets

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_c_side_of_every_differential_runs() -> None:
    # a target whose C parser is missing would compare Python with itself
    if targets.native.enabled():
        assert targets.native_expected(), "native modules not built: run `make native`"


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_every_target_has_real_seeds(name: str) -> None:
    assert len(targets.seeds(name)) >= 5


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeds_pass(name: str) -> None:
    fn = targets.TARGETS[name]
    for path in targets.seeds(name):
        fn(path.read_bytes())


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_seeds_pass(name: str, seed: int) -> None:
    seeds = [p.read_bytes() for p in targets.seeds(name)]
    rnd = random.Random(seed)
    targets.TARGETS[name](run._mutate(rnd, seeds))


@SETTINGS
@given(st.sampled_from(sorted(targets.TARGETS)), st.binary(max_size=300))
def test_random_bytes_pass(name: str, data: bytes) -> None:
    targets.TARGETS[name](data)
