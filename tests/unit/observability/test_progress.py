"""The snapshot progress reporter: rate, ETA, the bar and log lines, and its metrics."""

from __future__ import annotations

import io
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cdc.observability.progress import ProgressCollector, SnapshotProgress, progress_of


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rate_eta_and_line() -> None:
    clock = Clock()
    p = SnapshotProgress("initial", "t-rate", 1000, stream=io.StringIO(), clock=clock)
    for _ in range(10):
        clock.now += 1.0
        p.advance(40, table="public.a")
    v = p.view()
    assert v.rows == 400 and v.chunks == 10 and v.table == "public.a"
    assert v.rows_per_second == pytest.approx(40.0)
    assert v.eta_seconds == pytest.approx(600 / 40)
    assert "40%" in v.line() and "400 of ~1,000 rows" in v.line() and "ETA 15s" in v.line()
    p.table_done("public.a")
    assert p.view().tables_done == 1 and p.view().table is None
    p.close()
    v = p.view()
    assert v.done and v.eta_seconds == 0.0 and "done in 10s" in v.line()


def test_estimate_exceeded_and_unknown() -> None:
    clock = Clock()
    p = SnapshotProgress("incremental", "t-est", 10, stream=io.StringIO(), clock=clock)
    clock.now += 1
    p.advance(25)
    v = p.view()
    assert v.fraction == 1.0 and v.eta_seconds == 0.0 and "25 of ~25 rows" in v.line()
    q = SnapshotProgress("replication", "t-unknown", None, stream=io.StringIO(), clock=clock)
    clock.now += 1
    q.advance(5)
    assert q.view().eta_seconds is None and q.view().fraction is None
    assert "5 rows," in q.view().line()


def test_resumed_rows_count_but_not_in_rate() -> None:
    clock = Clock()
    p = SnapshotProgress("initial", "t-resume", 1000, rows_done=600, stream=io.StringIO(),
                         clock=clock)
    clock.now += 2
    p.advance(100)
    p.close()
    v = p.view()
    assert v.rows == 700 and v.rows_per_second == pytest.approx(50.0)


def test_log_lines_when_not_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    p = SnapshotProgress("initial", "t-log", 100, stream=io.StringIO(), clock=clock,
                         interval_s=5.0)
    with caplog.at_level(logging.INFO, logger="cdc.observability.progress"):
        for _ in range(10):
            clock.now += 1
            p.advance(1)
        p.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # at 5 s, at 10 s, and the final one
    assert lines[-1].startswith("initial snapshot of t-log:") and "done in" in lines[-1]


def test_bar_on_a_terminal() -> None:
    clock = Clock()
    out = Tty()
    p = SnapshotProgress("initial", "t-tty", 100, stream=out, clock=clock)
    clock.now += 1
    p.advance(50, table="s.t")
    p.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "[############------------]  50%" in text


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="initial, incremental, replication"):
        SnapshotProgress("full", "x")


def test_metrics() -> None:
    clock = Clock()
    p = SnapshotProgress("initial", "t-metrics", 1000, stream=io.StringIO(), clock=clock)
    clock.now += 2
    p.advance(200, table="public.a")
    assert progress_of("t-metrics", "initial") is p
    registry = CollectorRegistry()
    registry.register(ProgressCollector())
    text = generate_latest(registry).decode()
    samples = {
        (s.name, s.labels.get("source")): s.value
        for fam in text_string_to_metric_families(text) for s in fam.samples
    }
    assert samples[("cdc_snapshot_rows", "t-metrics")] == 200
    assert samples[("cdc_snapshot_rows_estimated", "t-metrics")] == 1000
    assert samples[("cdc_snapshot_rows_per_second", "t-metrics")] == pytest.approx(100)
    assert samples[("cdc_snapshot_eta_seconds", "t-metrics")] == pytest.approx(8)
    assert samples[("cdc_snapshot_chunks_total", "t-metrics")] == 1
    assert samples[("cdc_snapshot_running", "t-metrics")] == 1
    p.close()
    text = generate_latest(registry).decode()
    samples = {
        (s.name, s.labels.get("source")): s.value
        for fam in text_string_to_metric_families(text) for s in fam.samples
    }
    assert samples[("cdc_snapshot_running", "t-metrics")] == 0
    assert samples[("cdc_snapshot_rows_per_second", "t-metrics")] == 0


@given(st.lists(st.tuples(st.floats(0.0, 30.0), st.integers(0, 10_000)), max_size=50),
       st.one_of(st.none(), st.integers(0, 200_000)))
def test_view_is_always_sane(steps: list[tuple[float, int]], estimate: int | None) -> None:
    clock = Clock()
    p = SnapshotProgress("initial", "t-prop", estimate, stream=io.StringIO(), clock=clock)
    total = 0
    for dt, n in steps:
        clock.now += dt
        p.advance(n)
        total += n
        v = p.view()
        assert v.rows == total
        assert v.rows_per_second >= 0
        assert v.eta_seconds is None or v.eta_seconds >= 0
        assert v.fraction is None or 0.0 <= v.fraction <= 1.0
        v.line()
