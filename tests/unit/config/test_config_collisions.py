"""Replica-table collisions and removed keys, found by `cdc config check` (no server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdc.config import ConfigValidationError, load_config
from cdc.config.loader import inspect_config
from cdc.errors import ConfigError
from cdc.events import TableId
from cdc.sink.naming import collisions, replica_table
from cdc.sink.schema import ReplicaSchemas, TableSettings
from cdc.spi import TableName


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigValidationError) as e:
        load_config(path, {})
    return [str(p) for p in e.value.problems]


def test_two_literal_topics_of_one_table_name_in_one_sink(minimal: dict[str, Any],
                                                          write: Any) -> None:
    minimal["sinks"][0]["topics"] = ["pg_main.public.orders", "my_main.shop.orders"]
    problems = _problems(write(minimal))
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        "sinks[0].topics[1]: topic my_main.shop.orders writes replica table public.orders, "
        "as does pg_main.public.orders (sinks[0].topics[0])")
    assert "tables.name_map" in problems[0]


def test_two_sinks_on_one_replica_database_collide_too(minimal: dict[str, Any],
                                                       write: Any) -> None:
    other = dict(minimal["sinks"][0], name="replica_pg2", topics=["my_main.shop.orders"])
    minimal["sinks"][0]["topics"] = ["pg_main.public.orders"]
    minimal["sinks"].append(other)
    problems = _problems(write(minimal))
    assert len(problems) == 1, problems
    assert problems[0].startswith("sinks[1].topics[0]: topic my_main.shop.orders writes "
                                  "replica table public.orders, as does pg_main.public.orders")


def test_a_name_map_entry_or_another_database_resolves_it(minimal: dict[str, Any],
                                                           write: Any) -> None:
    minimal["sinks"][0]["topics"] = ["pg_main.public.orders", "my_main.shop.orders"]
    minimal["sinks"][0]["tables"] = {"name_map": {"my_main.shop.orders": "shop_orders"}}
    assert load_config(write(minimal), {}).sinks[0].tables.name_map
    other = dict(minimal["sinks"][0], name="replica_pg2", topics=["my_main.shop.orders"],
                 target=dict(minimal["sinks"][0]["target"], database="other_replica"), tables={})
    minimal["sinks"][0]["topics"] = ["pg_main.public.orders"]
    minimal["sinks"].append(other)
    assert len(load_config(write(minimal), {}).sinks) == 2


def test_a_name_map_target_colliding_with_a_topic(minimal: dict[str, Any], write: Any) -> None:
    minimal["sinks"][0]["topics"] = ["pg_main.public.*", "pg_main.public.orders"]
    minimal["sinks"][0]["tables"] = {"name_map": {"pg_main.public.items": "public.orders"}}
    problems = _problems(write(minimal))
    assert len(problems) == 1, problems
    assert problems[0].startswith('sinks[0].tables.name_map["pg_main.public.items"]: topic '
                                  "pg_main.public.items writes replica table public.orders")


def test_the_removed_schema_history_topic_gets_a_clear_error(minimal: dict[str, Any],
                                                             write: Any) -> None:
    minimal["kafka"]["schema_history_topic"] = "cdc.schema_history"
    problems = _problems(write(minimal))
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        "kafka.schema_history_topic: no longer a configuration key — hint: cdc never wrote")
    assert "delete this key" in problems[0]


def test_the_example_config_has_no_collision() -> None:
    root = Path(__file__).resolve().parents[3]
    report = inspect_config(root / "deploy" / "local" / "pipeline.example.yaml", {})
    assert report.config.sinks


def test_naming_drops_the_source_schema() -> None:
    assert replica_table(None, "public", "a.s.t", "t") == TableName("public", "t")
    assert replica_table({"a.s.t": "x.u"}, "public", "a.s.t", "t") == TableName("x", "u")
    assert replica_table({"a.s.t": "u"}, None, "a.s.t", "t") == TableName(None, "u")
    pairs = [("a.s.t", TableName(None, "t")), ("b.q.t", TableName(None, "t")),
             ("a.s.t", TableName(None, "t"))]
    assert collisions(pairs) == [("a.s.t", "b.q.t", TableName(None, "t"))]


def test_the_sink_refuses_a_second_topic_for_one_table() -> None:
    """At run time (wildcards): a fatal ConfigError naming both topics, not a bad record."""
    schemas = ReplicaSchemas(TableSettings(default_schema="public"))
    first = schemas.target("pg_main.public.orders", TableId("db", "public", "orders"))
    schemas.claim("pg_main.public.orders", first)
    schemas.claim("pg_main.public.orders", first)  # the same topic again is fine
    second = schemas.target("my_main.shop.orders", TableId("shop", None, "orders"))
    with pytest.raises(ConfigError) as e:
        schemas.claim("my_main.shop.orders", second)
    assert "pg_main.public.orders and my_main.shop.orders both map to replica table " \
        "public.orders" in str(e.value)
