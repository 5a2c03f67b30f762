"""Model helpers and whole-file checks: what runtime code relies on."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cdc.config import ConfigValidationError, validate_config
from cdc.config.kafka import KafkaConfig
from cdc.config.loader import inspect_config
from cdc.config.sources import SnapshotConfig, TableFilter
from cdc.events import TableId
from connectors.mysql.config import MySqlSourceConfig
from connectors.postgres.config import PostgresConnection, PostgresSourceConfig


def paths(minimal: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigValidationError) as info:
        validate_config(minimal)
    return [p.path for p in info.value.problems]


def test_table_filter() -> None:
    f = TableFilter(include=("public.*", "inventory.orders"), exclude=("public.audit_*",))
    assert f.matches("public.users")
    assert f.matches("inventory.orders")
    assert not f.matches("public.audit_log")
    assert not f.matches("inventory.items")
    assert not f.matches("Public.users")  # case-sensitive, like quoted identifiers
    assert TableFilter().matches("any.thing")


def test_table_pattern_needs_a_dot(minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["tables"] = {"include": ["public.*", "orders"]}
    assert paths(minimal) == ["sources[0].tables.include[1]"]


def test_topic_for_and_transaction_topic(minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["topic_prefix"] = "prod.pg"
    source = validate_config(minimal).source("pg_main")
    assert source.topic_for(TableId("cdc_source", "public", "orders")) == "prod.pg.public.orders"
    assert source.transaction_topic_name == "prod.pg.transaction"
    mysql = validate_config(minimal).source("my_main")
    assert mysql.topic_for(TableId("shop", None, "orders")) == "my_main.shop.orders"


def test_sink_subscription(minimal: dict[str, Any]) -> None:
    minimal["sinks"][0]["topics"] = ["pg_main.public.*", "pg_main.inventory.orders", "pg_main.s?.t"]
    sink = validate_config(minimal).sinks[0]
    assert sink.subscription() == [
        "^pg_main\\.public\\..*$",
        "pg_main.inventory.orders",
        "^pg_main\\.s.\\.t$",
    ]
    assert sink.subscribes("pg_main.public.users")
    assert not sink.subscribes("pg_main.other.users")
    minimal["sinks"][0].pop("topics")
    minimal["sinks"][0]["topic_regex"] = r"pg_main\.public\.(a|b)"
    sink = validate_config(minimal).sinks[0]
    assert sink.subscription() == [r"^pg_main\.public\.(a|b)"]
    assert sink.subscribes("pg_main.public.a") and not sink.subscribes("pg_main.public.c")


def test_bad_topic_regex(minimal: dict[str, Any]) -> None:
    minimal["sinks"][0].pop("topics")
    minimal["sinks"][0]["topic_regex"] = "(unclosed"
    assert paths(minimal) == ["sinks[0].topic_regex"]


def test_producer_config_forces_guarantees() -> None:
    kafka = KafkaConfig.model_validate(
        {
            "bootstrap_servers": ["a:1", "b:2"],
            "producer": {"linger_ms": 5, "compression": "zstd"},
            "client": {"socket.keepalive.enable": True, "statistics.interval.ms": 0},
        }
    )
    conf = kafka.producer_config()
    assert conf["bootstrap.servers"] == "a:1,b:2"
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
    assert (conf["linger.ms"], conf["compression.type"]) == (5, "zstd")
    assert conf["socket.keepalive.enable"] == "true" and conf["statistics.interval.ms"] == "0"
    consumer = kafka.consumer_config("g1")
    assert consumer["enable.auto.commit"] is False and consumer["group.id"] == "g1"


def test_client_buffers_are_bounded_and_settable() -> None:
    """A producer holds at most 64 MB unacknowledged and a consumer prefetches at most 64 MB
    by default (memory on a backlog); both are settings, and the producer's bound cannot go
    below the largest record (16 MB)."""
    kafka = KafkaConfig.model_validate({"bootstrap_servers": "a:1"})
    assert kafka.producer_config()["queue.buffering.max.kbytes"] == 65_536
    assert kafka.consumer_config("g")["queued.max.messages.kbytes"] == 65_536
    # a fetch takes at most 256 kB per partition (librdkafka's 1 MB overshot the prefetch)
    assert kafka.consumer_config("g")["max.partition.fetch.bytes"] == 262_144
    tuned = KafkaConfig.model_validate({
        "bootstrap_servers": "a:1", "producer": {"buffer_max_kbytes": 32_768},
        "consumer": {"queued_max_kbytes": 16_384, "max_partition_fetch_bytes": 1_048_576}})
    assert tuned.producer_config()["queue.buffering.max.kbytes"] == 32_768
    assert tuned.consumer_config("g")["queued.max.messages.kbytes"] == 16_384
    assert tuned.consumer_config("g")["max.partition.fetch.bytes"] == 1_048_576
    with pytest.raises(ValidationError):
        KafkaConfig.model_validate({"bootstrap_servers": "a:1",
                                    "producer": {"buffer_max_kbytes": 8_192}})


@pytest.mark.parametrize(
    "key", ["enable.idempotence", "acks", "enable.auto.commit", "sasl.password",
            "queue.buffering.max.kbytes", "queued.max.messages.kbytes",
            "max.partition.fetch.bytes", "fetch.message.max.bytes"]
)
def test_reserved_client_settings_are_refused(key: str) -> None:
    with pytest.raises(ValidationError):
        KafkaConfig.model_validate({"bootstrap_servers": "a:1", "client": {key: "x"}})


def test_sasl_needs_credentials(minimal: dict[str, Any]) -> None:
    minimal["kafka"]["security"] = {"protocol": "SASL_SSL"}
    assert paths(minimal) == ["kafka.security"]


def test_streaming_needs_proto_v2(minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["streaming"] = True
    assert paths(minimal) == ["sources[0]"]
    minimal["sources"][0]["proto_version"] = 2
    validate_config(minimal)


def test_snapshot_modes() -> None:
    assert SnapshotConfig().mode == "initial"
    with pytest.raises(ValidationError):
        SnapshotConfig.model_validate({"mode": "sometimes"})


def test_postgres_conninfo_quotes_values() -> None:
    conn = PostgresConnection.model_validate(
        {"host": "db", "database": "my db", "user": "o'brien", "options": {"keepalives_idle": 30}}
    )
    info = conn.conninfo(replication="database").get_secret_value()
    assert info == (
        "host='db' port='5432' dbname='my db' user='o\\'brien' connect_timeout='10' "
        "keepalives_idle='30' replication='database'"
    )


def test_connection_needs_host_or_dsn(minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["connection"] = {"database": "x"}
    assert paths(minimal) == ["sources[0].connection"]
    minimal["sources"][0]["connection"] = {"dsn": "postgresql://db/x", "host": "db"}
    assert paths(minimal) == ["sources[0].connection"]


def test_mysql_zero_date_yaml_null(minimal: dict[str, Any]) -> None:
    minimal["sources"][1]["zero_date"] = None
    source = validate_config(minimal).source("my_main")
    assert isinstance(source, MySqlSourceConfig) and source.zero_date == "null"


def test_mysql_sink_needs_database(minimal: dict[str, Any]) -> None:
    minimal["sinks"].append(
        {"name": "replica_my", "kind": "mysql", "topics": ["my_main.*"], "target": {"host": "h"}}
    )
    assert paths(minimal) == ["sinks[1]"]


def test_same_slot_on_same_database_is_refused(minimal: dict[str, Any]) -> None:
    second = dict(
        minimal["sources"][0], name="pg_two", topic_prefix="pg_two", slot_name="cdc_pg_main"
    )
    minimal["sources"].append(second)
    assert paths(minimal) == ["sources[2].slot_name"]
    second["connection"] = dict(second["connection"], database="other_db")
    validate_config(minimal)  # another database: its own slot namespace


def test_duplicate_topic_prefix_and_group(minimal: dict[str, Any]) -> None:
    minimal["sources"][1]["topic_prefix"] = "pg_main"
    minimal["sinks"].append(
        dict(minimal["sinks"][0], name="replica_two", consumer_group="cdc-sink-replica_pg")
    )
    assert paths(minimal) == ["sources[1].topic_prefix", "sinks[1].consumer_group"]


def test_sink_selecting_internal_topics(minimal: dict[str, Any]) -> None:
    minimal["sinks"][0]["topics"] = ["*"]
    assert paths(minimal) == ["sinks[0].topics"]


def test_warnings(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sinks"][0]["topics"] = ["pg_main.public.*", "other.public.*"]
    minimal["sinks"][0]["tables"] = {"name_map": {"pg_main.public.orders": "o", "pg_main.x.y": "z"}}
    report = inspect_config(write(minimal), {})
    assert [(w.path, w.warning) for w in report.warnings] == [
        ("sinks[0].topics[1]", True),
        ('sinks[0].tables.name_map["pg_main.x.y"]', True),
    ]


def test_derived_defaults_are_not_overridden(minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["slot_name"] = "my_slot"
    minimal["sinks"][0]["errors"] = {"dead_letter_topic": "dlq", "policy": "dead_letter"}
    config = validate_config(minimal)
    pg = config.source("pg_main")
    assert isinstance(pg, PostgresSourceConfig) and pg.slot_name == "my_slot"
    assert config.sinks[0].errors.dead_letter_topic == "dlq"


def test_sink_decoding_limits_have_defaults_and_bounds(minimal: dict[str, Any]) -> None:
    config = validate_config(minimal)
    assert config.sinks[0].decoding.max_items == 1_000_000
    assert config.sinks[0].decoding.max_record_bytes == 64 * 1024 * 1024
    minimal["sinks"][0]["decoding"] = {"max_items": 5_000_000, "max_record_bytes": 1 << 27}
    assert validate_config(minimal).sinks[0].decoding.max_items == 5_000_000
    minimal["sinks"][0]["decoding"] = {"max_items": 0}
    with pytest.raises(ConfigValidationError, match=r"decoding\.max_items"):
        validate_config(minimal)
