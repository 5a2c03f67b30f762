"""`cdc config check|schema|docs` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cdc.config.cli import config_group

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "local" / "pipeline.example.yaml"


def test_check_valid_file() -> None:
    result = CliRunner().invoke(config_group, ["check", str(EXAMPLE), "--no-env"])
    assert result.exit_code == 0, result.output
    assert f"{EXAMPLE}: valid" in result.output
    assert "pg_main [postgres] -> topics pg_main.*" in result.output
    assert "replica_mysql [mysql] <- mysql_main.cdc_source.*" in result.output


def test_check_invalid_file_lists_every_problem(write: Any, minimal: dict[str, Any]) -> None:
    minimal["kafka"]["producer"] = {"compression": "lz5"}
    minimal["sources"][0]["slot_nme"] = "x"
    result = CliRunner().invoke(config_group, ["check", str(write(minimal)), "--no-env"])
    assert result.exit_code == 2
    assert "2 problems" in result.output
    assert "error: kafka.producer.compression: invalid value" in result.output
    assert (
        "error: sources[0].slot_nme: unknown key — hint: did you mean 'slot_name'?" in result.output
    )


def test_check_applies_environment(write: Any, minimal: dict[str, Any]) -> None:
    env = {"CDC_KAFKA__BOOTSTRAP_SERVERS": "nonsense"}
    result = CliRunner(env=env).invoke(config_group, ["check", str(write(minimal))])
    assert result.exit_code == 2
    assert "(env CDC_KAFKA__BOOTSTRAP_SERVERS)" in result.output


def test_check_prints_warnings(write: Any, minimal: dict[str, Any]) -> None:
    minimal["sinks"][0]["topics"] = ["elsewhere.*"]
    result = CliRunner().invoke(config_group, ["check", str(write(minimal)), "--no-env"])
    assert result.exit_code == 0
    assert "warning: sinks[0].topics[0]: matches no topic" in result.output


def test_check_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(config_group, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "cannot read config file" in result.output


def test_check_yaml_error(write: Any) -> None:
    result = CliRunner().invoke(config_group, ["check", str(write("kafka: [\n")), "--no-env"])
    assert result.exit_code == 2
    assert "YAML syntax error" in result.output


def test_schema_is_json_schema_with_connector_fields() -> None:
    result = CliRunner().invoke(config_group, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    assert "slot_name" in defs["PostgresSourceConfig"]["properties"]
    assert "server_id" in defs["MySqlSourceConfig"]["properties"]
    assert defs["PostgresConnection"]["properties"]["password"]["anyOf"][0]["writeOnly"] is True


def test_docs_command_matches_generator() -> None:
    result = CliRunner().invoke(config_group, ["docs"])
    assert result.exit_code == 0
    assert result.output.startswith("# Configuration reference")
