"""The operations keys: status thresholds, sources[].ha, wal_budget, binlog_guard."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.config import ConfigValidationError, validate_config
from connectors.mysql.config import MySqlSourceConfig
from connectors.postgres.config import PostgresSourceConfig


def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigValidationError) as info:
        validate_config(data)
    return [(p.path, str(p)) for p in info.value.problems]


def test_defaults(minimal: dict[str, Any]) -> None:
    config = validate_config(minimal)
    assert config.status.max_sink_lag_records is None and config.status.timeout_s == 10
    pg, my = config.sources
    assert not pg.ha.enabled and not my.ha.enabled
    assert pg.ha.session_timeout_ms == 10_000
    assert isinstance(pg, PostgresSourceConfig) and isinstance(my, MySqlSourceConfig)
    assert pg.wal_budget is None and my.binlog_guard is None


def test_operations_keys_validate(minimal: dict[str, Any]) -> None:
    minimal["status"] = {"max_sink_lag_records": 100, "max_sink_lag_seconds": 30,
                         "max_checkpoint_age_seconds": 60, "max_dead_letters": 0}
    minimal["sources"][0]["ha"] = {"enabled": True}
    minimal["sources"][0]["wal_budget"] = {"max_bytes": 1 << 30, "action": "stop"}
    minimal["sources"][1]["ha"] = {"enabled": True, "session_timeout_ms": 30_000}
    minimal["sources"][1]["binlog_guard"] = {"warn_files": 3, "warn_bytes": 1 << 20}
    config = validate_config(minimal)
    pg, my = config.sources
    assert pg.ha.enabled and my.ha.session_timeout_ms == 30_000
    assert isinstance(pg, PostgresSourceConfig) and isinstance(my, MySqlSourceConfig)
    budget = pg.wal_budget
    assert budget is not None
    assert (budget.max_bytes, budget.warn_fraction, budget.action) == (1 << 30, 0.8, "stop")
    assert my.binlog_guard is not None and my.binlog_guard.warn_files == 3
    assert config.status.max_dead_letters == 0


def test_bad_operations_keys_name_the_key(minimal: dict[str, Any]) -> None:
    minimal["status"] = {"max_sink_lag_records": -1, "max_lag": 3}
    minimal["sources"][0]["ha"] = {"enabled": True, "renew_interval_ms": 5000}
    minimal["sources"][0]["wal_budget"] = {"max_bytes": 10, "action": "drop", "warn_fraction": 2}
    found = problems(minimal)
    paths = sorted(p for p, _ in found)
    assert paths == sorted([
        "status.max_sink_lag_records", "status.max_lag", "sources[0].ha",
        "sources[0].wal_budget.action", "sources[0].wal_budget.warn_fraction",
    ])
    ha = next(m for p, m in found if p == "sources[0].ha")
    assert "renew_interval_ms" in ha and "session_timeout_ms" in ha
