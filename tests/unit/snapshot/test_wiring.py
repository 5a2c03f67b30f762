"""Which sinks are snapshot replicas, and the config block's checks (no servers)."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.config import validate_config
from cdc.config.problems import ConfigValidationError
from cdc.errors import ConfigError
from cdc.snapshot.wiring import find_snapshot_source, replicas_of, snapshot_sources_of


def _config(snapshot: dict[str, Any] | None, sink_topics: list[str]) -> Any:
    source: dict[str, Any] = {"name": "pg_snap", "kind": "postgres",
                              "connection": {"host": "h", "database": "d", "user": "u"},
                              "tables": {"include": ["snap.*"]}}
    if snapshot is not None:
        source["snapshot_replication"] = snapshot
    return validate_config({
        "kafka": {"bootstrap_servers": "k:9092"},
        "schema_registry": {"url": "http://r"},
        "sources": [source,
                    {"name": "pg_live", "kind": "postgres",
                     "connection": {"host": "h", "database": "d", "user": "u"}}],
        "sinks": [{"name": "to_pg", "kind": "postgres", "topics": sink_topics,
                   "target": {"host": "h", "database": "d", "user": "u"}}],
    })


def test_a_sink_of_a_snapshot_source_is_its_replica() -> None:
    config = _config({"interval_s": 60}, ["pg_snap.snap.*"])
    assert [s.name for s in snapshot_sources_of(config, config.sinks[0])] == ["pg_snap"]
    assert [k.name for k in replicas_of(config, config.sources[0])] == ["to_pg"]
    assert find_snapshot_source(config, None).name == "pg_snap"


def test_a_streaming_sink_is_not() -> None:
    config = _config({"interval_s": 60}, ["pg_live.public.*"])
    assert snapshot_sources_of(config, config.sinks[0]) == []


def test_a_sink_mixing_both_kinds_is_refused_at_run_time_too() -> None:
    config = _config({"cron": "0 2 * * *"}, ["pg_snap.snap.*"])
    sink = config.sinks[0].model_copy(update={"topics": ("pg_snap.snap.*", "pg_live.public.*")})
    with pytest.raises(ConfigError, match="one sink entry per kind"):
        snapshot_sources_of(config, sink)


def test_no_snapshot_source_is_a_clear_error() -> None:
    config = _config(None, ["pg_snap.snap.*"])
    with pytest.raises(ConfigError, match="0 snapshot-replication sources"):
        find_snapshot_source(config, None)


@pytest.mark.parametrize(("block", "message"), [
    ({"interval_s": 60, "cron": "0 2 * * *"}, "at most one of interval_s and cron"),
    ({"cron": "0 2 * *"}, "not a valid cron expression"),
    ({"interval_s": 0}, "greater than 0"),
])
def test_invalid_blocks_name_the_key(block: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigValidationError, match=message):
        _config(block, ["pg_snap.snap.*"])


def test_config_check_refuses_a_mixed_sink() -> None:
    with pytest.raises(ConfigValidationError, match="snapshot-replication source"):
        _config({"interval_s": 60}, ["pg_snap.snap.*", "pg_live.*"])


def test_the_runs_topic_is_not_a_data_topic() -> None:
    with pytest.raises(ConfigValidationError, match="cdc's own topic"):
        _config({"interval_s": 60}, ["cdc.*"])
