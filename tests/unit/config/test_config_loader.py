"""load_config: the example loads; every class of mistake names its key and a fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdc.config import ConfigValidationError, load_config
from cdc.config.loader import inspect_config
from cdc.errors import ConfigError
from connectors.mysql.config import MySqlSinkConfig, MySqlSourceConfig
from connectors.postgres.config import PostgresSinkConfig, PostgresSourceConfig

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "local" / "pipeline.example.yaml"


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigValidationError) as info:
        load_config(path, env or {})
    return [str(p) for p in info.value.problems]


def one_problem(path: Path, env: dict[str, str] | None = None) -> str:
    found = problems(path, env)
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------- valid


def test_example_loads_with_connector_models() -> None:
    config = load_config(EXAMPLE, {})
    kinds = {type(s) for s in config.sources} | {type(s) for s in config.sinks}
    assert kinds == {PostgresSourceConfig, MySqlSourceConfig, PostgresSinkConfig, MySqlSinkConfig}
    pg = config.source("pg_main")
    assert isinstance(pg, PostgresSourceConfig)
    assert pg.connection.port == 15432
    assert pg.connection.database == "cdc_source"
    assert config.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert config.schema_registry.url == "http://127.0.0.1:18081/apis/ccompat/v7"
    mysql = config.source("mysql_main")
    assert isinstance(mysql, MySqlSourceConfig)
    assert mysql.server_id == 5401


def test_example_has_no_warnings() -> None:
    assert inspect_config(EXAMPLE, {}).warnings == ()


def test_defaults_derived_from_name(write: Any, minimal: dict[str, Any]) -> None:
    config = load_config(write(minimal), {})
    pg = config.source("pg_main")
    assert isinstance(pg, PostgresSourceConfig)
    assert (pg.topic_prefix, pg.slot_name, pg.publication_name) == (
        "pg_main",
        "cdc_pg_main",
        "cdc_pg_main",
    )
    sink = config.sink("replica_pg")
    assert sink.consumer_group == "cdc-sink-replica_pg"
    assert sink.errors.dead_letter_topic == "cdc.dlq.replica_pg"
    assert config.kafka.producer.compression == "lz4"


def test_config_is_frozen(write: Any, minimal: dict[str, Any]) -> None:
    config = load_config(write(minimal), {})
    with pytest.raises(ValueError):
        config.kafka.bootstrap_servers = "x:1"


# --------------------------------------------------------------------------- mistakes


def test_missing_key(write: Any, minimal: dict[str, Any]) -> None:
    del minimal["kafka"]["bootstrap_servers"]
    msg = one_problem(write(minimal))
    assert msg.startswith("kafka.bootstrap_servers: missing required key — hint: required; add it")


def test_missing_section(write: Any, minimal: dict[str, Any]) -> None:
    del minimal["schema_registry"]
    assert one_problem(write(minimal)).startswith("schema_registry: missing required key")


def test_wrong_type(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["connection"]["port"] = "fifteen"
    msg = one_problem(write(minimal))
    assert msg.startswith("sources[0].connection.port: expected a whole number — hint: e.g. 5432")


def test_unquoted_number_for_string_hints_quoting(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["connection"]["database"] = 123
    msg = one_problem(write(minimal))
    assert msg.startswith(
        "sources[0].connection.database: expected a string — hint: quote the value"
    )


def test_unknown_key_suggests_the_right_one(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["slot_nmae"] = "x"
    msg = one_problem(write(minimal))
    assert msg.startswith("sources[0].slot_nmae: unknown key — hint: did you mean 'slot_name'?")


def test_unknown_key_without_close_match_lists_keys(write: Any, minimal: dict[str, Any]) -> None:
    minimal["metrics"] = {"zzz": 1}
    msg = one_problem(write(minimal))
    assert "metrics.zzz: unknown key — hint: allowed keys: enabled, host, port" in msg


def test_unknown_top_level_key(write: Any, minimal: dict[str, Any]) -> None:
    minimal["source"] = []
    assert "did you mean 'sources'?" in one_problem(write(minimal))


def test_bad_enum_lists_allowed_values(write: Any, minimal: dict[str, Any]) -> None:
    minimal["kafka"]["producer"] = {"compression": "lz5"}
    msg = one_problem(write(minimal))
    assert msg.startswith("kafka.producer.compression: invalid value — hint: use one of")
    assert "'zstd'" in msg and "'lz4'" in msg


def test_duplicate_names(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sinks"][0]["name"] = "pg_main"
    msg = one_problem(write(minimal))
    assert msg.startswith("sinks[0].name: same name as sources[0] — hint: names must be unique")


def test_unknown_kind_lists_known_kinds(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["kind"] = "postgress"
    msg = one_problem(write(minimal))
    assert msg.startswith("sources[0].kind: unknown kind — hint: did you mean 'postgres'?")
    assert "known kinds: mysql, postgres" in msg


def test_missing_kind(write: Any, minimal: dict[str, Any]) -> None:
    del minimal["sinks"][0]["kind"]
    assert one_problem(write(minimal)).startswith("sinks[0].kind: missing required key")


def test_kind_specific_field_path(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["slot_name"] = "Bad-Slot"
    msg = one_problem(write(minimal))
    assert msg.startswith("sources[0].slot_name: not a plain PostgreSQL identifier — hint:")


def test_mysql_field_on_postgres_source_is_unknown(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["server_id"] = 7
    assert one_problem(write(minimal)).startswith("sources[0].server_id: unknown key")


def test_duplicate_mysql_server_id(write: Any, minimal: dict[str, Any]) -> None:
    other = dict(minimal["sources"][1], name="my_other")
    minimal["sources"].append(other)
    msg = one_problem(write(minimal))
    assert msg.startswith("sources[2].server_id: same server_id as sources[1]")


def test_every_problem_is_reported_at_once(write: Any, minimal: dict[str, Any]) -> None:
    del minimal["kafka"]["bootstrap_servers"]
    minimal["sources"][0]["kind"] = "oracle"
    minimal["sources"][1]["server_id"] = "x"
    minimal["sinks"][0]["batch"] = {"max_rows": 0}
    paths = [p.split(":")[0] for p in problems(write(minimal))]
    assert paths == [
        "kafka.bootstrap_servers",
        "sources[0].kind",
        "sources[1].server_id",
        "sinks[0].batch.max_rows",
    ]


def test_problem_names_the_file_line(write: Any) -> None:
    text = EXAMPLE.read_text().replace("    server_id: 5401", "    server_id: lots")
    path = write(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "server_id: lots" in t)
    assert one_problem(path).endswith(f"({path}:{line})")


def test_yaml_syntax_error_has_line_and_column(write: Any) -> None:
    path = write("kafka:\n  bootstrap_servers: [a\nschema_registry: {}\n")
    msg = one_problem(path)
    assert msg.startswith("YAML syntax error")
    assert f"({path}:3:" in msg


def test_duplicate_yaml_key(write: Any) -> None:
    path = write("log: {level: INFO}\nlog: {level: DEBUG}\n")
    assert one_problem(path) == (
        f"log: duplicate key — hint: remove one: YAML would silently keep the last ({path}:2)"
    )


def test_not_a_mapping(write: Any) -> None:
    assert "must be a mapping" in one_problem(write("- a\n- b\n"))


def test_empty_file_reports_required_sections(write: Any) -> None:
    paths = [p.split(":")[0] for p in problems(write(""))]
    assert paths == ["kafka", "schema_registry"]


def test_nothing_to_run(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sources"] = []
    minimal["sinks"] = []
    assert one_problem(write(minimal)).startswith("nothing to run")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml", {})


def test_sink_needs_topics_or_regex(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sinks"][0]["topic_regex"] = "pg_main\\..*"
    assert one_problem(write(minimal)).startswith(
        "sinks[0]: set exactly one of topics and topic_regex"
    )


def test_yaml_on_for_gtid_mode(write: Any) -> None:
    # YAML 1.1 reads an unquoted `on` as true; that must still mean "on".
    config = load_config(write(EXAMPLE.read_text().replace("gtid_mode: auto", "gtid_mode: on")), {})
    source = config.source("mysql_main")
    assert isinstance(source, MySqlSourceConfig)
    assert source.gtid_mode == "on"


# --------------------------------------------------------------------------- environment


def test_env_override_nested(write: Any, minimal: dict[str, Any]) -> None:
    env = {"CDC_KAFKA__BOOTSTRAP_SERVERS": "b1:9092,b2:9092", "CDC_KAFKA__PRODUCER__LINGER_MS": "5"}
    config = load_config(write(minimal), env)
    assert config.kafka.bootstrap_servers == "b1:9092,b2:9092"
    assert config.kafka.producer.linger_ms == 5


def test_env_override_list_item_by_name(write: Any, minimal: dict[str, Any]) -> None:
    env = {
        "CDC_SOURCES__PG_MAIN__CONNECTION__HOST": "db.internal",
        "CDC_SOURCES__MY_MAIN__SERVER_ID": "9001",
        "CDC_SINKS__0__BATCH__MAX_ROWS": "100",
    }
    config = load_config(write(minimal), env)
    pg = config.source("pg_main")
    assert isinstance(pg, PostgresSourceConfig)
    assert pg.connection.host == "db.internal"
    my = config.source("my_main")
    assert isinstance(my, MySqlSourceConfig)
    assert my.server_id == 9001
    assert config.sinks[0].batch.max_rows == 100


def test_env_override_flow_mapping_merges(write: Any, minimal: dict[str, Any]) -> None:
    minimal["kafka"]["client"] = {"socket.keepalive.enable": "true"}
    env = {
        "CDC_KAFKA__CLIENT": '{"statistics.interval.ms": 1000}',
        "CDC_SINKS__REPLICA_PG__TOPICS": "[a.b.c]",
    }
    config = load_config(write(minimal), env)
    assert config.kafka.client == {
        "socket.keepalive.enable": "true",
        "statistics.interval.ms": "1000",
    }
    assert config.sinks[0].topics == ("a.b.c",)


def test_env_override_errors_name_the_variable(write: Any, minimal: dict[str, Any]) -> None:
    env = {"CDC_KAFKA__PRODUCER__LINGER": "5"}
    msg = one_problem(write(minimal), env)
    assert msg == (
        "kafka.producer.linger: unknown key — hint: did you mean 'linger_ms'? "
        "(env CDC_KAFKA__PRODUCER__LINGER)"
    )


def test_env_override_unknown_entry(write: Any, minimal: dict[str, Any]) -> None:
    msg = one_problem(write(minimal), {"CDC_SOURCES__NOPE__SERVER_ID": "1"})
    assert "no entry named 'nope'" in msg and "entries: pg_main, my_main" in msg


def test_unrelated_cdc_variables_are_ignored(write: Any, minimal: dict[str, Any]) -> None:
    env = {
        "CDC_PG_FLAVOR": "debian",
        "CDC_KAFKA_HEAP": "1g",
        "CDC_LOCAL_DIR": "/x",
        "CDC_TEST__X": "1",
    }
    path = write(minimal)
    report = inspect_config(path, env)
    assert report.config == load_config(path, {})
    assert report.warnings == inspect_config(path, {}).warnings


def test_interpolation(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sources"][0]["connection"]["host"] = "${PG_HOST}"
    minimal["sources"][0]["connection"]["user"] = "${PG_USER:-cdc}"
    minimal["sinks"][0]["target"]["database"] = "$${literal}"
    config = load_config(write(minimal), {"PG_HOST": "pg.example"})
    pg = config.source("pg_main")
    assert isinstance(pg, PostgresSourceConfig)
    assert (pg.connection.host, pg.connection.user) == ("pg.example", "cdc")
    assert config.sinks[0].target.database == "${literal}"


def test_interpolation_of_unset_variable(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sources"][1]["server_id"] = "${SERVER_ID}"
    msg = one_problem(write(minimal))
    assert msg.startswith(
        "sources[1].server_id: environment variable SERVER_ID is not set — hint: export SERVER_ID"
    )


def test_load_from_environment_only() -> None:
    with pytest.raises(ConfigValidationError) as info:
        load_config(None, {"CDC_KAFKA__BOOTSTRAP_SERVERS": "b:9092"})
    assert [p.path for p in info.value.problems] == ["schema_registry"]


# --------------------------------------------------------------------------- secrets from files


def test_password_file(write: Any, minimal: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "pg_pw").write_text("from-a-file\n")
    minimal["sources"][0]["connection"]["password_file"] = "pg_pw"  # relative to the config
    config = load_config(write(minimal), {})
    pg = config.source("pg_main")
    assert pg.connection.password is not None
    assert pg.connection.password.get_secret_value() == "from-a-file"


def test_password_file_missing(write: Any, minimal: dict[str, Any], tmp_path: Path) -> None:
    minimal["schema_registry"].update(username="u", password_file="nope")
    msg = problems(write(minimal))[0]
    assert msg.startswith(
        f"schema_registry.password_file: cannot read secret file '{tmp_path / 'nope'}'"
    )


def test_password_and_password_file_conflict(
    write: Any, minimal: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text("x")
    minimal["sources"][0]["connection"].update(password="y", password_file=str(tmp_path / "pw"))
    msg = one_problem(write(minimal))
    assert msg.startswith("sources[0].connection: both password and password_file are set")
