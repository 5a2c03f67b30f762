"""bench/compare's report (ratio table, JSON-shaped results) on made-up results, without services.

The benchmark itself needs the whole stack and minutes (``make bench-compare``);
this keeps its reporting code importable and its ratios right in CI.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def _compare() -> Any:
    sys.path.insert(0, str(ROOT / "bench" / "compare"))
    spec = importlib.util.spec_from_file_location("bench_compare", ROOT / "bench/compare/compare.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _pipeline(rate: int, p99: float, cpu: float) -> dict[str, Any]:
    return {
        "catch_up": {"changes_per_s": rate, "steady_changes_per_s": rate * 2,
                     "cpu_s_per_1m_changes": cpu,
                     "processes": {"a": {"cpu_s": 1.0, "peak_rss_mb": 10.0},
                                   "b": {"cpu_s": 1.0, "peak_rss_mb": 5.5}}},
        "rates": {"max_sustained_rows_per_s": rate, "steps": []},
        "latency": {"p50_ms": p99 / 2, "p99_ms": p99},
    }


def test_ratio_table_divides_cdc_by_each_other_pipeline() -> None:
    compare = _compare()
    results = {"pipelines": {"native": _pipeline(100, 10.0, 4.0), "cdc": _pipeline(50, 40.0, 8.0)}}
    lines = compare.ratio_table(results).splitlines()
    assert lines[0] == "| measure | native | cdc | cdc/native | cdc/debezium |"
    rate = next(line for line in lines if line.startswith("| catch-up, changes/s"))
    assert rate == "| catch-up, changes/s | 100 | 50 | 0.50 | - |"
    p99 = next(line for line in lines if line.startswith("| latency p99 ms"))
    assert p99 == "| latency p99 ms | 10.0 | 40.0 | 4.00 | - |"
    rss = next(line for line in lines if line.startswith("| peak RSS MB"))
    assert rss == "| peak RSS MB, all processes | 16 | 16 | 1.00 | - |"
    # A measure a pipeline lacks (no pgbench phase here) is a dash, not an error.
    assert next(line for line in lines if line.startswith("| pgbench")).endswith("| - | - | - | - |")
