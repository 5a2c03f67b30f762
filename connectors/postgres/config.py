"""PostgreSQL source and sink configuration, and the libpq connection builder.

These subclass the engine's :class:`SourceConfigBase` / :class:`SinkConfigBase`
with what logical replication (slot, publication, pgoutput protocol) and a
PostgreSQL replica need; the registry hands them to the loader by ``kind``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import ClassVar, Literal, Self
from urllib.parse import quote, urlencode

from pydantic import Field, SecretStr, field_validator, model_validator

from cdc.config.base import RedactedDict, ScalarStr, derived, invalid
from cdc.config.connection import ConnectionConfig
from cdc.config.operations import LogBudget
from cdc.config.sinks import SinkConfigBase
from cdc.config.sources import SourceConfigBase

_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# libpq keywords the modelled fields own; setting them in `options` would bypass
# validation (or, for passwords, redaction).
_OWNED_KEYWORDS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "application_name",
        "connect_timeout",
    }
)


def _identifier(v: str) -> str:
    if not _IDENT_RE.fullmatch(v):
        raise invalid(
            "not a plain PostgreSQL identifier",
            "use up to 63 lower-case letters, digits and underscores, starting with a letter or _",
        )
    return v


def _quote(value: str) -> str:
    """A libpq conninfo value, quoted so spaces and quotes survive."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class PostgresConnection(ConnectionConfig):
    """A PostgreSQL server and database, as libpq parameters."""

    port: int = Field(default=5432, ge=1, le=65535, description="Server TCP port.", examples=[5432])
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = (
        Field(
            default=None,
            description="libpq `sslmode` (libpq's default is `prefer`).",
            examples=["verify-full"],
        )
    )
    sslrootcert: Path | None = Field(
        default=None,
        description="CA certificate to verify the server.",
        examples=["/etc/ssl/certs/pg-ca.pem"],
    )
    sslcert: Path | None = Field(
        default=None, description="Client certificate.", examples=["/etc/cdc/pg.crt"]
    )
    sslkey: Path | None = Field(
        default=None, description="Client private key.", examples=["/etc/cdc/pg.key"]
    )
    application_name: str | None = Field(
        default=None,
        description="Shown in pg_stat_activity; defaults to the connector's choice.",
        examples=["cdc-pg_main"],
    )
    options: dict[str, ScalarStr] = Field(
        default_factory=dict,
        description="More libpq parameters, passed as is.",
        examples=[{"keepalives_idle": "30", "target_session_attrs": "read-write"}],
    )

    @field_validator("options")
    @classmethod
    def _not_owned(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if k in _OWNED_KEYWORDS:
                raise invalid(
                    f"'{k}' cannot be set in options", f"use the connection's own field for {k}"
                )
        return v

    @model_validator(mode="after")
    def _needs_database(self) -> Self:
        if self.dsn is None and self.database is None:
            raise invalid("no database given", "set database (or a dsn naming one)")
        return self

    def _params(self, extra: Mapping[str, str | int | None]) -> dict[str, str]:
        params: dict[str, str | int | None] = {}
        if self.dsn is None:
            params |= {
                "host": self.host,
                "port": self.port,
                "dbname": self.database,
                "user": self.user,
            }
            params["connect_timeout"] = max(2, math.ceil(self.connect_timeout_s))
            params |= {
                "sslmode": self.sslmode,
                "sslrootcert": str(self.sslrootcert) if self.sslrootcert else None,
                "sslcert": str(self.sslcert) if self.sslcert else None,
                "sslkey": str(self.sslkey) if self.sslkey else None,
                "application_name": self.application_name,
            }
            params |= self.options
        if self.password is not None:
            params["password"] = self.password.get_secret_value()
        params |= extra
        return {k: str(v) for k, v in params.items() if v is not None}

    def conninfo(self, **extra: str | int | None) -> SecretStr:
        """A libpq connection string (``extra`` adds keywords such as ``replication``).

        Returned as a SecretStr because it may hold the password: call
        ``get_secret_value()`` only where it is handed to libpq.
        """
        params = self._params(extra)
        if self.dsn is None:
            return SecretStr(" ".join(f"{k}={_quote(v)}" for k, v in params.items()))
        dsn = self.dsn.get_secret_value()
        if not params:
            return SecretStr(dsn)
        if dsn.startswith(("postgresql://", "postgres://")):
            sep = "&" if "?" in dsn else "?"
            return SecretStr(dsn + sep + urlencode(params, quote_via=quote))
        return SecretStr(" ".join([dsn, *(f"{k}={_quote(v)}" for k, v in params.items())]))

    def connect_kwargs(self, **extra: str | int | None) -> RedactedDict:
        """Arguments for ``psycopg.connect(**kwargs)``; printing them hides the password."""
        kwargs = RedactedDict(self._params(extra))
        kwargs["conninfo"] = self.dsn.get_secret_value() if self.dsn is not None else ""
        return kwargs


class PostgresSourceConfig(SourceConfigBase):
    """A PostgreSQL database captured through logical replication (pgoutput).

    Needs ``wal_level=logical`` and a user with the REPLICATION attribute (and
    ownership of the tables, or CREATE on the database, to create the
    publication).
    """

    derived_defaults: ClassVar[Mapping[str, str]] = {
        **SourceConfigBase.derived_defaults,
        "slot_name": "cdc_{name}",
        "publication_name": "cdc_{name}",
    }

    kind: Literal["postgres"] = Field(description="Connector kind.", examples=["postgres"])
    connection: PostgresConnection = Field(description="How to reach the source database.")
    slot_name: str = derived(
        "cdc_<name>",
        "Logical replication slot; holds WAL until cdc has made changes durable in Kafka.",
        examples=["cdc_pg_main"],
    )
    publication_name: str = derived(
        "cdc_<name>", "Publication listing the captured tables.", examples=["cdc_pg_main"]
    )
    create_publication: bool = Field(
        default=True,
        description="Create the publication for the captured tables if it does not exist; "
        "set false when a DBA manages it.",
        examples=[True],
    )
    proto_version: Literal[1, 2] = Field(
        default=1,
        description="pgoutput protocol version; 2 (PostgreSQL 14+) is needed for `streaming`.",
        examples=[2],
    )
    streaming: bool = Field(
        default=False,
        description="Have the server stream large transactions while in progress (less server "
        "memory and disk); events are still emitted only once the transaction commits.",
        examples=[False],
    )
    status_interval_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How often to report the durable position to the server; keep it well under "
        "the server's wal_sender_timeout.",
        examples=[10],
    )
    wal_budget: LogBudget | None = Field(
        default=None,
        description="Retained-WAL guardrail of the slot (unset: none); see connectors/postgres/SOURCE.md.",
        examples=[{"max_bytes": 10_737_418_240, "warn_fraction": 0.8, "action": "stop"}],
    )

    @field_validator("slot_name", "publication_name")
    @classmethod
    def _ident(cls, v: str) -> str:
        return _identifier(v)

    @model_validator(mode="after")
    def _streaming_needs_v2(self) -> Self:
        if self.streaming and self.proto_version < 2:
            raise invalid(
                "streaming needs proto_version 2", "set proto_version: 2 (PostgreSQL 14+)"
            )
        return self

    def unique_keys(self) -> Mapping[str, Hashable]:
        # A slot can be consumed by one reader at a time, per database.
        return {"slot_name": (self.connection.server_identity(), self.slot_name)}


class PostgresSinkConfig(SinkConfigBase):
    """A PostgreSQL replica database."""

    kind: Literal["postgres"] = Field(
        description="Kind of the replica database.", examples=["postgres"]
    )
    target: PostgresConnection = Field(description="The replica database.")
    target_schema: str = Field(
        default="public",
        description="Schema of replica tables whose mapped name has no schema.",
        examples=["public"],
    )
    synchronous_commit: Literal["on", "off", "local", "remote_write", "remote_apply"] | None = Field(
        default=None,
        description=(
            "The replica session's synchronous_commit for the sink's transactions; unset: the "
            "server's setting. 'off' (what PostgreSQL's own subscriptions use by default) lets "
            "a commit return before its WAL is flushed: a replica crash can then lose the last "
            "commits, checkpoint rows included, and the sink re-applies them from Kafka; "
            "readers of the replica may see those rows vanish until then."
        ),
        examples=["off"],
    )

    @field_validator("synchronous_commit", mode="before")
    @classmethod
    def _on_off(cls, v: object) -> object:
        # YAML 1.1 reads a bare on/off as a boolean
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("target_schema")
    @classmethod
    def _schema(cls, v: str) -> str:
        if not v or len(v) > 63:
            raise invalid("not a schema name", "use 1-63 characters, e.g. public")
        return v
