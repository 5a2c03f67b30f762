"""A secret never shows: not in reprs, error messages, logs or driver arguments' repr."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cdc.config import ConfigValidationError, load_config
from cdc.config.base import RedactedDict
from connectors.mysql.config import MySqlConnection, MySqlSourceConfig
from connectors.postgres.config import PostgresConnection, PostgresSourceConfig

SECRET = "Zq9-very-distinctive-s3cret-Xw7"


def _with_secrets(minimal: dict[str, Any]) -> dict[str, Any]:
    minimal["sources"][0]["connection"]["password"] = SECRET
    minimal["sources"][1]["connection"]["password"] = SECRET
    minimal["schema_registry"].update(username="u", password=SECRET)
    minimal["kafka"]["security"] = {
        "protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "username": "u",
        "password": SECRET,
    }
    minimal["kafka"]["client_secrets"] = {"sasl.oauthbearer.client.secret": SECRET}
    return minimal


def test_repr_and_dump_hide_secrets(write: Any, minimal: dict[str, Any]) -> None:
    config = load_config(write(_with_secrets(minimal)), {})
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert SECRET not in config.model_dump_json(serialize_as_any=True)
    assert SECRET not in str(config.model_dump(serialize_as_any=True))


def test_driver_arguments_hide_secrets_when_printed(write: Any, minimal: dict[str, Any]) -> None:
    config = load_config(write(_with_secrets(minimal)), {})
    pg = config.source("pg_main")
    my = config.source("my_main")
    assert isinstance(pg, PostgresSourceConfig) and isinstance(my, MySqlSourceConfig)
    printable: list[Any] = [
        pg.connection.conninfo(),
        pg.connection.connect_kwargs(),
        my.connection.pymysql_kwargs(),
        config.kafka.producer_config(),
        config.kafka.consumer_config("g"),
        config.schema_registry.client_config(),
    ]
    for obj in printable:
        assert SECRET not in repr(obj), obj
        assert SECRET not in str(obj), obj
        assert SECRET not in f"{obj}"
    # ...yet the drivers get the real values.
    assert f"password='{SECRET}'" in pg.connection.conninfo().get_secret_value()
    assert pg.connection.connect_kwargs()["password"] == SECRET
    assert my.connection.pymysql_kwargs()["password"] == SECRET
    assert config.kafka.producer_config()["sasl.password"] == SECRET
    assert config.kafka.producer_config()["sasl.oauthbearer.client.secret"] == SECRET
    assert config.schema_registry.client_config()["basic.auth.user.info"] == f"u:{SECRET}"


@pytest.mark.parametrize(
    "place",
    [
        ("sources", 0, "connection", "port"),  # wrong type
        ("sources", 0, "connection", "pasword"),  # unknown key
        ("kafka", "security", "protocol"),  # bad enum
        ("sources", 0, "slot_name"),  # custom validator
        ("sources", 0, "kind"),  # unknown kind
        ("schema_registry", "url"),  # URL check
        ("kafka", "bootstrap_servers"),  # host:port check
        ("log", "level"),
    ],
)
def test_errors_never_echo_the_value(
    write: Any, minimal: dict[str, Any], place: tuple[Any, ...], caplog: pytest.LogCaptureFixture
) -> None:
    node: Any = minimal
    for key in place[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[place[-1]] = SECRET
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigValidationError) as info:
        load_config(write(minimal), {})
    err = info.value
    assert SECRET not in str(err)
    assert SECRET not in repr(err)
    assert SECRET not in "".join(traceback.format_exception(err))
    assert err.__cause__ is None and err.__context__ is None
    assert SECRET not in caplog.text


def test_yaml_syntax_error_does_not_quote_the_line(write: Any) -> None:
    path = write(f'kafka:\n  security:\n    password: "{SECRET}\n')
    with pytest.raises(ConfigValidationError) as info:
        load_config(path, {})
    assert SECRET not in str(info.value)
    assert SECRET not in "".join(traceback.format_exception(info.value))


def test_env_secret_not_echoed(write: Any, minimal: dict[str, Any]) -> None:
    env = {
        "CDC_SOURCES__PG_MAIN__CONNECTION__PORT": SECRET,
        "CDC_SOURCES__PG_MAIN__PASSWORD": SECRET,
    }
    with pytest.raises(ConfigValidationError) as info:
        load_config(write(minimal), env)
    assert len(info.value.problems) == 2
    assert SECRET not in str(info.value)


def test_secret_file_content_not_echoed(
    write: Any, minimal: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n")
    minimal["sources"][0]["connection"]["password_file"] = "pw"
    minimal["sources"][0]["connection"]["port"] = "bad"
    with pytest.raises(ConfigValidationError) as info:
        load_config(write(minimal), {})
    assert SECRET not in str(info.value)


def test_warnings_logged_without_secrets(
    write: Any, minimal: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    minimal["sinks"][0]["topics"] = ["elsewhere.*"]  # warning: no source produces it
    with caplog.at_level(logging.WARNING, logger="cdc.config"):
        load_config(write(_with_secrets(minimal)), {})
    assert "matches no topic of the sources" in caplog.text
    assert SECRET not in caplog.text


def test_redacted_dict() -> None:
    d = RedactedDict(
        {"user": "u", "password": SECRET, "ssl.key.password": SECRET, "x.secret": SECRET},
        secret_keys=["token"],
    )
    d["token"] = SECRET
    assert SECRET not in repr(d) and SECRET not in str(d)
    assert "'user': 'u'" in repr(d)
    assert dict(d)["token"] == SECRET


def test_dsn_is_secret_and_merges_password() -> None:
    conn = PostgresConnection.model_validate(
        {"dsn": f"postgresql://cdc:{SECRET}@db/app", "password": "other"}
    )
    assert SECRET not in repr(conn)
    info = conn.conninfo(application_name="cdc x").get_secret_value()
    assert info.startswith(f"postgresql://cdc:{SECRET}@db/app?")
    assert "password=other" in info and "application_name=cdc%20x" in info  # libpq does not read + as space
    kv = PostgresConnection.model_validate({"dsn": "host=db dbname=app", "password": "it's"})
    assert kv.conninfo().get_secret_value() == "host=db dbname=app password='it\\'s'"


def test_mysql_dsn_parsed_without_echo() -> None:
    conn = MySqlConnection.model_validate(
        {"dsn": f"mysql://root:{SECRET}@db:3307/app?charset=latin1"}
    )
    kwargs = conn.pymysql_kwargs()
    assert (kwargs["host"], kwargs["port"], kwargs["database"], kwargs["charset"]) == (
        "db",
        3307,
        "app",
        "latin1",
    )
    assert kwargs["password"] == SECRET
    with pytest.raises(Exception) as info:
        MySqlConnection.model_validate({"dsn": f"http://x:{SECRET}@db/app"})
    assert SECRET not in str(info.value)


def test_env_password_applied_and_hidden(write: Any, minimal: dict[str, Any]) -> None:
    config = load_config(write(minimal), {"CDC_SOURCES__PG_MAIN__CONNECTION__PASSWORD": SECRET})
    password = config.source("pg_main").connection.password
    assert password is not None and password.get_secret_value() == SECRET
    assert SECRET not in repr(config)


def test_direct_model_validation_hides_input() -> None:
    # Code that validates a model itself (not through the loader) gets pydantic's
    # own message: hide_input_in_errors keeps the value out of it.
    with pytest.raises(ValidationError) as info:
        PostgresConnection.model_validate({"host": "h", "database": "d", "port": SECRET})
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
