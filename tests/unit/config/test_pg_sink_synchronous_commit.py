"""The PostgreSQL sink's ``synchronous_commit`` key: unset by default, and YAML's bare on/off."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from connectors.postgres.config import PostgresSinkConfig


def _sink(**extra: object) -> PostgresSinkConfig:
    return PostgresSinkConfig(name="s", kind="postgres", topics=("t",),
                              target={"dsn": "postgresql://h/db"}, **extra)  # type: ignore[arg-type]


def test_unset_leaves_the_servers_setting() -> None:
    assert _sink().synchronous_commit is None


@pytest.mark.parametrize(("text", "value"), [("off", "off"), ("on", "on"), ("'off'", "off"),
                                             ("remote_apply", "remote_apply")])
def test_yaml_values(text: str, value: str) -> None:
    # a bare off/on is a YAML 1.1 boolean: it means the setting of that name
    assert _sink(synchronous_commit=yaml.safe_load(text)).synchronous_commit == value


def test_other_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        _sink(synchronous_commit="maybe")
