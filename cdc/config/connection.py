"""What every database endpoint has: :class:`ConnectionConfig`.

Sources (``connection``) and sinks (``target``) both hold one; each connector
subclasses it in ``connectors/<db>/config.py`` with its driver's options and a
builder for the driver's arguments. This module knows no driver and opens no
connection.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator

from cdc.config.base import ConfigModel, SecretFile, invalid


class ConnectionConfig(ConfigModel):
    """How to reach a database: separate fields, or one ``dsn``.

    A password may accompany a ``dsn`` (so the DSN itself can stay in plain
    config while the password comes from a secret file). Connectors subclass
    this with their driver's options and a builder for the driver's
    arguments that never shows the password.
    """

    secret_files: ClassVar[Mapping[str, str]] = {"password_file": "password", "dsn_file": "dsn"}

    host: str | None = Field(
        default=None, description="Server host name or IP address.", examples=["127.0.0.1"]
    )
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Server TCP port.", examples=[5432]
    )
    database: str | None = Field(
        default=None, description="Database to connect to.", examples=["cdc_source"]
    )
    user: str | None = Field(default=None, description="User name.", examples=["cdc"])
    password: SecretStr | None = Field(
        default=None,
        description="Password. Prefer `password_file` or `${ENV_VAR}` interpolation over a literal.",
        examples=["${PG_PASSWORD}"],
    )
    password_file: SecretFile | None = Field(
        default=None,
        description="File holding the password (relative to the config file; trailing newline stripped).",
        examples=["/run/secrets/pg_password"],
    )
    dsn: SecretStr | None = Field(
        default=None,
        description="Whole connection string instead of host/port/database/user; treated as a secret.",
        examples=["postgresql://cdc@db.example.com:5432/app"],
    )
    dsn_file: SecretFile | None = Field(
        default=None,
        description="File holding the DSN.",
        examples=["/run/secrets/source_dsn"],
    )
    connect_timeout_s: float = Field(
        default=10.0, gt=0, le=3600, description="Seconds to wait for a connection.", examples=[10]
    )

    @model_validator(mode="after")
    def _dsn_or_fields(self) -> Self:
        if self.dsn is not None:
            clash = [k for k in ("host", "port", "database", "user") if k in self.model_fields_set]
            if clash:
                raise invalid(
                    f"dsn and {', '.join(clash)} are both set",
                    "use dsn alone (a password may accompany it), or the separate fields",
                )
        elif self.host is None:
            raise invalid(
                "neither host nor dsn is set", "set host (with port, database, user) or dsn"
            )
        return self

    def server_identity(self) -> Hashable:
        """What identifies the server and database, for uniqueness checks only."""
        if self.dsn is not None:
            return ("dsn", self.dsn.get_secret_value())
        return (self.host, self.port, self.database)
