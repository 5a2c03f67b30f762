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


def test_flat_lag_rule_and_ladder() -> None:
    """One rule for every pipeline: the least-squares growth of the lag over the samples."""
    compare = _compare()
    # 1,000 rows/s written, 1,000 applied with a constant lag of 200: flat.
    flat = [(t / 4, 1000 * t // 4, 1000 * t // 4 - 200) for t in range(20, 40)]
    growth, applied = compare.lag_slope(flat)
    assert abs(growth) < 1 and abs(applied - 1000) < 1
    # Applied at 900 of 1,000: the lag grows by 100/s, 10% of the offered rate: not flat.
    rising = [(t / 4, 1000 * t // 4, 900 * t // 4) for t in range(20, 40)]
    assert compare.lag_slope(rising)[0] > compare.FLAT_LAG_GROWTH * 1000
    assert compare.geometric_ladder(250, 2.0, 4000) == [250, 500, 1000, 2000, 4000]


def test_targets_say_met_missed_or_why_not_decided() -> None:
    compare = _compare()

    def pipe(rate: int, lower: bool, cpu: float, rss: float, p99: float) -> dict[str, Any]:
        procs = {"cdc source" if rss < 500 else "connect worker (source + sink)":
                 {"cpu_s": cpu, "peak_rss_mb": rss, "role": "program"},
                 "kafka": {"cpu_s": 1.0, "peak_rss_mb": 400.0, "role": "shared"}}
        return {"catch_up": {"changes": 1000, "processes": procs},
                "rates": {"max_sustained_rows_per_s": rate, "lower_bound": lower,
                          "lowest_step": 250},
                "latency": {"rate": 5000, "offered": 5000, "rows": 100, "p50_ms": p99 / 2,
                            "p99_ms": p99, "rows_not_seen_in_time": 0}}

    results = {"args": {"connect_heap": "shipped"}, "unavailable": {}, "pipelines": {
        "debezium": pipe(1000, False, 100.0, 1000.0, 5000.0),
        "cdc": pipe(4000, False, 10.0, 80.0, 50.0)}}
    got = {t["target"].split()[0] + t["target"].split()[-1]: t["met"]
           for t in compare.targets(results)}
    assert list(got.values()) == [True, True, True, True, None]
    # cdc's rate only a writer-limited lower bound under 3x: not decided, and why.
    results["pipelines"]["cdc"]["rates"].update(max_sustained_rows_per_s=2000, lower_bound=True)
    first = compare.targets(results)[0]
    assert first["met"] is None and "writer" in first["why"]
    # Debezium sustained no step: decided against the lowest step.
    results["pipelines"]["debezium"]["rates"]["max_sustained_rows_per_s"] = 0
    assert compare.targets(results)[0]["met"] is True
    table = compare.targets_table(compare.targets(results))
    assert "**met**" in table and "not decided" in table


def test_a_writer_limited_rate_bounds_its_ratio() -> None:
    compare = _compare()
    native = _pipeline(1000, 10.0, 4.0)
    native["rates"]["lower_bound"] = True  # the writer's limit, not native's
    results = {"pipelines": {"native": native, "cdc": _pipeline(500, 40.0, 8.0)}}
    line = next(x for x in compare.ratio_table(results).splitlines()
                if x.startswith("| max sustained"))
    assert line == "| max sustained rows/s | >= 1,000 (writer) | 500 | <= 0.50 | - |"
