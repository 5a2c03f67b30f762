"""The sink worker's batching decision (cdc.sink.worker.batch_due / gather_timeout).

Adaptive batching (issue #15): a batch is applied as soon as the consumer has
nothing more fetched, a full batch or ``max_wait`` still bound it, and
``min_wait`` restores fixed-time gathering. The worker loop around these two
functions runs against real Kafka in tests/integration/sink/test_worker.py.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cdc.config.sinks import SinkBatch
from cdc.sink.worker import WorkerOptions, batch_due, gather_timeout

ADAPTIVE = WorkerOptions(max_rows=100, max_wait_s=0.2, min_wait_s=0.0)
FIXED = WorkerOptions(max_rows=100, max_wait_s=0.2, min_wait_s=0.2)


def test_nothing_buffered_is_never_due() -> None:
    assert not batch_due(ADAPTIVE, 0, 10.0, drained=True, stalled=False)


def test_drained_consumer_applies_at_once() -> None:
    assert batch_due(ADAPTIVE, 1, 0.0, drained=True, stalled=False)
    assert not batch_due(ADAPTIVE, 1, 0.0, drained=False, stalled=False)


def test_full_batch_and_max_wait_bound_a_batch_still_filling() -> None:
    assert batch_due(ADAPTIVE, 100, 0.0, drained=False, stalled=False)
    assert batch_due(ADAPTIVE, 250, 0.0, drained=False, stalled=False)
    assert not batch_due(ADAPTIVE, 99, 0.199, drained=False, stalled=False)
    assert batch_due(ADAPTIVE, 99, 0.2, drained=False, stalled=False)


def test_stalled_on_an_open_transaction_is_never_due() -> None:
    for drained in (True, False):
        assert not batch_due(ADAPTIVE, 10_000, 60.0, drained=drained, stalled=True)


def test_min_wait_gathers_even_when_drained() -> None:
    assert not batch_due(FIXED, 5, 0.1, drained=True, stalled=False)
    assert batch_due(FIXED, 5, 0.2, drained=True, stalled=False)
    assert batch_due(FIXED, 100, 0.0, drained=False, stalled=False)  # full: no wait


@pytest.mark.parametrize(("age", "expected"), [(0.0, 0.2), (0.15, 0.05), (0.2, 0.0), (5.0, 0.0)])
def test_gather_timeout_blocks_only_until_min_wait(age: float, expected: float) -> None:
    assert gather_timeout(FIXED, age) == pytest.approx(expected)
    assert gather_timeout(ADAPTIVE, age) == 0.0


def test_gather_timeout_never_passes_max_wait() -> None:
    odd = WorkerOptions(max_rows=10, max_wait_s=0.1, min_wait_s=0.5)
    assert gather_timeout(odd, 0.0) == pytest.approx(0.1)


def test_config_defaults_are_adaptive_and_waits_ordered() -> None:
    b = SinkBatch()
    assert (b.min_wait_ms, b.max_wait_ms) == (20, 200)
    SinkBatch(min_wait_ms=200, max_wait_ms=200)
    with pytest.raises(ValidationError, match="min_wait_ms"):
        SinkBatch(min_wait_ms=300, max_wait_ms=200)


def test_default_min_wait_follows_a_lower_max_wait() -> None:
    """A config that only lowers ``max_wait_ms`` (below the 20 ms default) stays valid."""
    assert (SinkBatch(max_wait_ms=20).min_wait_ms, SinkBatch(max_wait_ms=0).min_wait_ms) == (20, 0)
    assert SinkBatch.model_validate({"max_wait_ms": "10"}).min_wait_ms == 10
    assert SinkBatch(max_wait_ms=100).min_wait_ms == 20
    assert SinkBatch(max_wait_ms=10).min_wait_ms == 10
