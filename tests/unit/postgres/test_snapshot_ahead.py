"""The snapshot's read-ahead (connectors.postgres.source.snapshot._ahead): order, errors, early stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from connectors.postgres.source.snapshot import _ahead


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


@pytest.mark.parametrize("depth", [1, 3])
def test_chunks_come_in_order_and_the_thread_ends(depth: int) -> None:
    assert list(_ahead(iter(range(100)), depth, "t-order")) == list(range(100))
    assert "t-order" not in _threads()


def test_a_read_failure_is_raised_in_the_caller_after_the_chunks_before_it() -> None:
    def chunks() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("server went away")

    got: list[int] = []
    with pytest.raises(ValueError, match="server went away"):
        for c in _ahead(chunks(), 1, "t-fail"):
            got.append(c)
    assert got == [1, 2]
    assert "t-fail" not in _threads()


def test_closing_early_stops_the_reader_and_closes_its_chunks() -> None:
    read: list[int] = []
    closed = threading.Event()

    def chunks() -> Iterator[int]:
        try:
            for i in range(1_000_000):
                read.append(i)
                yield i
        finally:
            closed.set()

    it = _ahead(chunks(), 1, "t-close")
    assert next(it) == 0
    it.close()  # type: ignore[attr-defined]
    assert closed.is_set(), "the reader closed its generator before close() returned"
    assert "t-close" not in _threads()
    assert len(read) <= 3, "at most the depth (plus the chunk in hand) was read ahead"
