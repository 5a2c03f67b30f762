"""Progress of a snapshot that a person can follow: a bar on a terminal, else log lines, and metrics.

Every snapshot kind (``initial`` of a streaming source, ``incremental`` while
streaming, ``replication`` runs) reports through one :class:`SnapshotProgress`:
``advance(rows, table=...)`` after each chunk, ``table_done(table)``, ``close()``.
It renders rows done of the estimate, the rate and an ETA: a one-line bar on
stderr when that is a terminal, else a log line every few seconds. The same
numbers are kept in a process-wide table read by :class:`ProgressCollector`
when metrics are scraped (``cdc_snapshot_rows{source,kind}`` and friends), so
nothing is computed on the hot path beyond a few additions and a clock read.

Estimates come from the database's statistics (they may be off either way):
the bar never shows more than 100 % and the ETA is 0 once rows pass it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

KINDS = ("initial", "incremental", "replication")
RENDER_INTERVAL_S = 5.0  # between log lines when stderr is not a terminal
TTY_INTERVAL_S = 0.2  # between redraws of the bar
RATE_WINDOW_S = 10.0  # the rate is measured over about this many seconds
_BAR_WIDTH = 24


@dataclass(frozen=True, slots=True)
class ProgressView:
    """One reading of a snapshot's progress (what the bar, the log and the metrics show)."""

    source: str
    kind: str
    rows: int  # rows done, including those of an interrupted run this one resumed
    estimated: int | None  # None: unknown
    rows_per_second: float
    eta_seconds: float | None  # None: unknown (no estimate, or no rate yet)
    chunks: int
    tables_done: int
    table: str | None  # the table being read now
    elapsed_s: float
    done: bool

    @property
    def fraction(self) -> float | None:
        if not self.estimated:
            return None
        return min(1.0, self.rows / self.estimated)

    def line(self) -> str:
        """``initial snapshot of pg1: [#####-----] 41% 410,000 of ~1,000,000 rows, ...``."""
        parts = [f"{self.kind} snapshot of {self.source}:"]
        frac = self.fraction
        if frac is not None:
            filled = round(frac * _BAR_WIDTH)
            parts.append(f"[{'#' * filled}{'-' * (_BAR_WIDTH - filled)}] {frac * 100:3.0f}%")
            parts.append(f"{self.rows:,} of ~{max(self.estimated or 0, self.rows):,} rows,")
        else:
            parts.append(f"{self.rows:,} rows,")
        parts.append(f"{self.rows_per_second:,.0f} rows/s")
        if self.done:
            parts.append(f"done in {_duration(self.elapsed_s)}")
        elif self.eta_seconds is not None:
            parts.append(f"ETA {_duration(self.eta_seconds)}")
        if self.table and not self.done:
            parts.append(f"({self.table})")
        return " ".join(parts)


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# (source, kind) -> the latest progress of that snapshot in this process; read by the collector.
_LIVE: dict[tuple[str, str], SnapshotProgress] = {}
_LIVE_LOCK = threading.Lock()


class SnapshotProgress:
    """Counts a snapshot's rows and chunks; renders and exports them.

    ``estimated_rows`` may be None (unknown) and set later with :meth:`set_estimate`.
    ``rows_done``: rows a previous, interrupted run already produced (a resumed
    snapshot starts there; the rate counts only this run's rows). ``stream``:
    where the bar goes (stderr); ``tty`` overrides the terminal test; ``clock`` is
    for tests. Not thread-safe for writers: one reader thread advances it; the
    metrics thread only reads.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        estimated_rows: int | None = None,
        *,
        rows_done: int = 0,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval_s: float = RENDER_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"snapshot kind {kind!r} is not one of {', '.join(KINDS)}")
        self.kind = kind
        self.name = name
        self._estimated = estimated_rows if estimated_rows is None else max(0, estimated_rows)
        self._stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self._stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self._tty = tty
        self._interval = TTY_INTERVAL_S if tty else interval_s
        self._clock = clock
        self._log = logger or log
        self._start = clock()
        self._resumed = max(0, rows_done)
        self._rows = self._resumed
        self._chunks = 0
        self._tables_done = 0
        self._table: str | None = None
        self._closed_at: float | None = None
        self._last_render = self._start
        # (time, rows) samples for the windowed rate: at most a few per window.
        self._samples: list[tuple[float, int]] = [(self._start, self._rows)]
        with _LIVE_LOCK:
            _LIVE[(name, kind)] = self

    # -- writers (the reading thread) --------------------------------------------------------

    def set_estimate(self, rows: int | None) -> None:
        self._estimated = rows if rows is None else max(0, rows)

    def advance(self, rows: int, table: str | None = None, *, chunk: bool = True) -> None:
        """``rows`` more rows done (one chunk of ``table`` unless ``chunk`` is False)."""
        self._rows += rows
        if chunk:
            self._chunks += 1
        if table is not None:
            self._table = table
        now = self._clock()
        if now - self._samples[-1][0] >= RATE_WINDOW_S / 4:
            self._samples.append((now, self._rows))
            cutoff = now - RATE_WINDOW_S
            while len(self._samples) > 2 and self._samples[1][0] <= cutoff:
                del self._samples[0]
        if now - self._last_render >= self._interval:
            self._render(now)

    def table_done(self, table: str) -> None:
        self._tables_done += 1
        if self._table == table:
            self._table = None

    def close(self) -> None:
        """The snapshot is over: a final line; the metrics keep its totals with rate 0."""
        if self._closed_at is not None:
            return
        self._closed_at = self._clock()
        self._render(self._closed_at, final=True)

    def __enter__(self) -> SnapshotProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- readers -------------------------------------------------------------------------------

    @property
    def rows(self) -> int:
        return self._rows

    def view(self, now: float | None = None) -> ProgressView:
        done = self._closed_at is not None
        t = self._closed_at if done else (self._clock() if now is None else now)
        assert t is not None
        elapsed = max(0.0, t - self._start)
        if done:
            this_run = self._rows - self._resumed
            rate = this_run / elapsed if elapsed > 0 else 0.0
        else:
            t0, r0 = self._samples[0]
            rate = (self._rows - r0) / (t - t0) if t - t0 > 0 else 0.0
        eta: float | None = None
        if done:
            eta = 0.0
        elif self._estimated is not None:
            left = max(0, self._estimated - self._rows)
            if left == 0:
                eta = 0.0
            elif rate > 0:
                eta = left / rate
        return ProgressView(self.name, self.kind, self._rows, self._estimated, rate, eta,
                            self._chunks, self._tables_done, self._table, elapsed, done)

    # -- rendering ------------------------------------------------------------------------------

    def _render(self, now: float, final: bool = False) -> None:
        self._last_render = now
        line = self.view(now).line()
        if self._tty:
            try:
                self._stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
                self._stream.flush()
            except (OSError, ValueError):  # a closed terminal must not stop the snapshot
                self._tty = False
        else:
            self._log.info("%s", line)


def progress_of(name: str, kind: str) -> SnapshotProgress | None:
    """The latest progress of ``name``'s ``kind`` snapshot in this process, if any."""
    with _LIVE_LOCK:
        return _LIVE.get((name, kind))


def _all() -> list[SnapshotProgress]:
    with _LIVE_LOCK:
        return list(_LIVE.values())


class ProgressCollector:
    """Exports every snapshot progress of this process (registered by the metrics server)."""

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        progresses = _all()
        if not progresses:
            return
        labels = ["source", "kind"]
        rows = GaugeMetricFamily("cdc_snapshot_rows", "Snapshot rows done (this snapshot).",
                                 labels=labels)
        estimated = GaugeMetricFamily(
            "cdc_snapshot_rows_estimated",
            "Rows the snapshot is expected to read (database statistics; -1: unknown).",
            labels=labels)
        rate = GaugeMetricFamily("cdc_snapshot_rows_per_second",
                                 "Snapshot rows per second over the last seconds (0 when done).",
                                 labels=labels)
        eta = GaugeMetricFamily("cdc_snapshot_eta_seconds",
                                "Seconds the snapshot is expected to take still (-1: unknown).",
                                labels=labels)
        chunks = CounterMetricFamily("cdc_snapshot_chunks", "Snapshot chunks read.",
                                     labels=labels)
        running = GaugeMetricFamily("cdc_snapshot_running", "1 while the snapshot runs.",
                                    labels=labels)
        for p in progresses:
            v = p.view()
            key = [v.source, v.kind]
            rows.add_metric(key, v.rows)
            estimated.add_metric(key, -1 if v.estimated is None else v.estimated)
            rate.add_metric(key, 0.0 if v.done else v.rows_per_second)
            eta.add_metric(key, -1 if v.eta_seconds is None else v.eta_seconds)
            chunks.add_metric(key, v.chunks)
            running.add_metric(key, 0 if v.done else 1)
        yield from (rows, estimated, rate, eta, chunks, running)
