"""Garbage-collector settings of a long-running worker (``cdc source``, a ``cdc sink`` worker).

A worker's hot path allocates a few container objects per change (row dicts,
events, ack tokens, consumed records) and frees them by reference counting in
waves: a batch, the events in flight until Kafka acknowledges them. Almost none
is part of a cycle. CPython still collects whenever 700 more containers exist
than at its last collection (the count does not go below zero as a wave is
freed, so every wave of a few thousand counts again), and every hundredth
collection walks every object of the process: the modules, the config, the
schemas, none of them garbage. In a catch-up of 1M PostgreSQL changes the
collector took 0.61 of the source's 16 CPU-seconds and 0.68 of the sink's 4.1
(docs/BENCHMARKS.md).

:func:`settle_heap` is called once the worker is built, before its loop: what
exists then lives as long as the process, so it is moved out of the collector's
sight (``gc.freeze``), and a collection waits for 10,000 more containers, more
than a wave holds. Cyclic garbage (an exception's traceback, say) is still
found: a collection still runs once that many pile up.
"""

from __future__ import annotations

import gc
from typing import Final

# (young, middle, old) thresholds; CPython's defaults are (700, 10, 10).
THRESHOLDS: Final = (10_000, 10, 10)


def settle_heap() -> None:
    """Collect once, freeze what survives (the worker's lasting state), raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
