"""The signal table key (incremental snapshots): one captured table, checked without a server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdc.config import ConfigValidationError, load_config


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigValidationError) as e:
        load_config(path, {})
    return [str(p) for p in e.value.problems]


def test_a_captured_signal_table_is_accepted(minimal: dict[str, Any], write: Any) -> None:
    src = minimal["sources"][0]
    src["tables"] = {"include": ["public.orders", "public.cdc_signal"]}
    src["signal"] = {"table": "public.cdc_signal"}
    cfg = load_config(write(minimal), {})
    assert cfg.sources[0].signal is not None
    assert cfg.sources[0].signal.table == "public.cdc_signal"
    assert cfg.sources[0].signal.chunk_size == 1024


def test_an_uncaptured_signal_table_names_the_key_and_the_fix(minimal: dict[str, Any],
                                                               write: Any) -> None:
    src = minimal["sources"][0]
    src["tables"] = {"include": ["public.orders"]}
    src["signal"] = {"table": "public.cdc_signal"}
    problems = _problems(write(minimal))
    assert len(problems) == 1, problems
    assert "signal.table public.cdc_signal is not captured" in problems[0]
    assert "add public.cdc_signal to tables.include" in problems[0]


def test_a_pattern_is_not_a_signal_table(minimal: dict[str, Any], write: Any) -> None:
    minimal["sources"][0]["signal"] = {"table": "public.sig*"}
    problems = _problems(write(minimal))
    assert any("signal.table" in p and "not a pattern" in p for p in problems), problems
