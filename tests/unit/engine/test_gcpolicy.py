"""cdc.runtime.gcpolicy: a worker's heap after settle_heap, in a fresh interpreter each
(freezing is process-wide and cannot be undone for the test process's own objects)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    return run.stdout.strip()


def test_startup_objects_are_frozen_and_thresholds_raised() -> None:
    out = _run(
        "import gc\n"
        "from cdc.runtime.gcpolicy import THRESHOLDS, settle_heap\n"
        "lasting = {'config': [1, 2, 3]}\n"
        "settle_heap()\n"
        "tracked = {id(o) for o in gc.get_objects()}\n"
        "print(gc.isenabled(), gc.get_threshold() == THRESHOLDS, gc.get_freeze_count() > 1000,\n"
        "      id(lasting) in tracked)\n"
    )
    # Still enabled; startup's objects (the modules and ours) are out of the collector's sight.
    assert out == "True True True False"


def test_waves_of_live_events_cause_no_collection() -> None:
    # Like a worker's batches and in-flight events: a few thousand containers alive at
    # once, all freed together, again and again. The young count grows with each wave
    # and does not fall below zero after a collection, so CPython's default threshold
    # (700) collects several times per wave; the worker's does not collect at all.
    code = (
        "import gc\n"
        "from cdc.runtime.gcpolicy import settle_heap\n"
        "SETTLE\n"
        "before = sum(s['collections'] for s in gc.get_stats())\n"
        "for wave in range(200):\n"
        "    batch = [{'after': {'id': i, 'v': [i]}} for i in range(1_000)]\n"
        "    del batch\n"
        "print(sum(s['collections'] for s in gc.get_stats()) - before)\n"
    )
    assert _run(code.replace("SETTLE", "settle_heap()")) == "0"
    assert int(_run(code.replace("SETTLE", "pass"))) > 200  # the defaults, for contrast


def test_cyclic_garbage_is_still_collected_without_an_explicit_collect() -> None:
    out = _run(
        "import gc, weakref\n"
        "from cdc.runtime.gcpolicy import THRESHOLDS, settle_heap\n"
        "settle_heap()\n"
        "class Node:\n"
        "    pass\n"
        "a, b = Node(), Node()\n"
        "a.other, b.other = b, a\n"
        "dead = weakref.ref(a)\n"
        "del a, b\n"
        "alive_before = dead() is not None\n"
        "kept = [[i] for i in range(THRESHOLDS[0] * 2)]  # net new containers: a young collection\n"
        "print(alive_before, dead() is None)\n"
    )
    assert out == "True True"
