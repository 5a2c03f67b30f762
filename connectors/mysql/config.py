"""MySQL/MariaDB source and sink configuration, and the PyMySQL argument builder.

These subclass the engine's :class:`SourceConfigBase` / :class:`SinkConfigBase`
with what binlog replication (server id, GTID use, zero dates) and a MySQL
replica need; the registry hands them to the loader by ``kind``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from cdc.config.base import Name, RedactedDict, SecretFile, TopicName, derived, invalid
from cdc.config.connection import ConnectionConfig
from cdc.config.sinks import SinkConfigBase
from cdc.config.sources import SourceConfigBase
from connectors.mysql.guardrail import BinlogGuard

_DSN_SCHEMES = ("mysql", "mariadb", "mysql+pymysql")
_DSN_PARAMS = frozenset({"charset", "ssl_ca", "ssl_cert", "ssl_key"})


def _parse_dsn(dsn: str) -> dict[str, Any]:
    """PyMySQL keyword arguments from ``mysql://user:pass@host:port/db?charset=...``.

    Raises ValueError with a message that never includes the DSN itself.
    """
    parts = urlsplit(dsn)
    if parts.scheme not in _DSN_SCHEMES or not parts.hostname:
        raise ValueError("dsn is not a mysql://user:password@host:port/database URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("dsn has an invalid port") from None
    kwargs: dict[str, Any] = {"host": parts.hostname, "port": port or 3306}
    if parts.username:
        kwargs["user"] = unquote(parts.username)
    if parts.password:
        kwargs["password"] = unquote(parts.password)
    if parts.path.strip("/"):
        kwargs["database"] = unquote(parts.path.strip("/"))
    ssl: dict[str, str] = {}
    for key, value in parse_qsl(parts.query):
        if key not in _DSN_PARAMS:
            raise ValueError(
                f"dsn parameter '{key}' is not supported (use: {', '.join(sorted(_DSN_PARAMS))})"
            )
        if key == "charset":
            kwargs["charset"] = value
        else:
            ssl[key.removeprefix("ssl_")] = value
    if ssl:
        kwargs["ssl"] = ssl
    return kwargs


class MySqlConnection(ConnectionConfig):
    """A MySQL or MariaDB server, as PyMySQL arguments."""

    port: int = Field(default=3306, ge=1, le=65535, description="Server TCP port.", examples=[3306])
    # The generic fields again, with MySQL examples (docs/CONFIG.md shows them per kind).
    password: SecretStr | None = Field(
        default=None,
        description="Password. Prefer `password_file` or `${ENV_VAR}` interpolation over a literal.",
        examples=["${MYSQL_PASSWORD}"],
    )
    password_file: SecretFile | None = Field(
        default=None,
        description="File holding the password (relative to the config file; trailing newline stripped).",
        examples=["/run/secrets/mysql_password"],
    )
    dsn: SecretStr | None = Field(
        default=None,
        description="Whole connection URL (`mysql://user:password@host:port/database`, "
        "optional `?charset=&ssl_ca=&ssl_cert=&ssl_key=`) instead of host/port/database/user; "
        "treated as a secret.",
        examples=["mysql://cdc@db.example.com:3306/app"],
    )
    dsn_file: SecretFile | None = Field(
        default=None,
        description="File holding the DSN.",
        examples=["/run/secrets/mysql_dsn"],
    )
    charset: str = Field(
        default="utf8mb4",
        description="Connection character set; utf8mb4 carries every character.",
        examples=["utf8mb4"],
    )
    ssl_ca: Path | None = Field(
        default=None,
        description="CA certificate to verify the server (enables TLS).",
        examples=["/etc/ssl/certs/mysql-ca.pem"],
    )
    ssl_cert: Path | None = Field(
        default=None, description="Client certificate.", examples=["/etc/cdc/mysql.crt"]
    )
    ssl_key: Path | None = Field(
        default=None, description="Client private key.", examples=["/etc/cdc/mysql.key"]
    )
    ssl_verify_identity: bool = Field(
        default=False,
        description="Check the server certificate's host name (with ssl_ca).",
        examples=[True],
    )

    @model_validator(mode="after")
    def _dsn_parses(self) -> Self:
        if self.dsn is not None:
            try:
                _parse_dsn(self.dsn.get_secret_value())
            except ValueError as e:
                raise invalid(
                    str(e), "e.g. mysql://cdc@db.example.com:3306/app?charset=utf8mb4"
                ) from None
        return self

    def database_name(self) -> str | None:
        """The default database, whether given as a field or in the DSN."""
        if self.dsn is not None:
            db = _parse_dsn(self.dsn.get_secret_value()).get("database")
            return db if isinstance(db, str) else None
        return self.database

    def pymysql_kwargs(self, **extra: Any) -> RedactedDict:
        """Arguments for ``pymysql.connect(**kwargs)`` (and mysql-replication's
        ``connection_settings``); printing them hides the password."""
        kwargs: dict[str, Any]
        if self.dsn is not None:
            kwargs = {"charset": self.charset, **_parse_dsn(self.dsn.get_secret_value())}
        else:
            kwargs = {
                "host": self.host,
                "port": self.port,
                "user": self.user,
                "database": self.database,
                "charset": self.charset,
            }
            ssl = {
                k: str(v)
                for k, v in (("ca", self.ssl_ca), ("cert", self.ssl_cert), ("key", self.ssl_key))
                if v is not None
            }
            if ssl and self.ssl_verify_identity:
                # PyMySQL builds its TLS context from the ssl_* arguments when
                # ssl_verify_identity is set, ignoring an ``ssl`` dict: pass them so.
                kwargs.update({f"ssl_{k}": v for k, v in ssl.items()})
                kwargs["ssl_verify_identity"] = True
            elif ssl:
                kwargs["ssl"] = ssl
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        kwargs["connect_timeout"] = max(1, math.ceil(self.connect_timeout_s))
        kwargs.update(extra)
        return RedactedDict({k: v for k, v in kwargs.items() if v is not None})


class MySqlSourceConfig(SourceConfigBase):
    """A MySQL or MariaDB server captured from its row-based binlog.

    Needs ``binlog_format=ROW``, ``binlog_row_image=FULL`` (and, for column
    names, ``binlog_row_metadata=FULL``) and a user with SELECT, REPLICATION
    SLAVE and REPLICATION CLIENT (MariaDB: also BINLOG MONITOR). Table
    patterns are ``database.table``.
    """

    name: Name = Field(
        description="Unique name of the source (lower-case letters, digits, `_`).",
        examples=["mysql_main"],
    )
    kind: Literal["mysql"] = Field(description="Connector kind.", examples=["mysql"])
    topic_prefix: TopicName = derived(
        "<name>",
        "Prefix of this source's topics: `<prefix>.<database>.<table>`.",
        examples=["mysql_main"],
    )
    connection: MySqlConnection = Field(description="How to reach the source server.")
    server_id: int = Field(
        ge=1,
        le=4_294_967_295,
        description="Replica server id cdc presents to the server; must differ from the server's "
        "own and from every other replica's, and be unique among sources.",
        examples=[5401],
    )
    gtid_mode: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Resume by GTID: `auto` when the server has GTIDs, `on` always (fail if the "
        "server has none), `off` never (binlog file and position).",
        examples=["auto"],
    )
    zero_date: Literal["null", "min", "error", "sentinel"] = Field(
        default="null",
        description="Zero or partly-zero dates (`0000-00-00`, `2024-00-10`) have no calendar value. "
        "`null` (Debezium's rule): null, or 1970-01-01 (00:00:00) for a NOT NULL column; "
        "`min`: 0001-01-01 (00:00:00); `error`: stop, naming table and column; "
        "`sentinel`: cdc's ZERO marker, so a MySQL/MariaDB replica gets the zero date back "
        "exactly. YAML `null` unquoted means `null` too.",
        examples=["null"],
    )
    snapshot_lock: Literal["auto", "none", "global"] = Field(
        default="auto",
        description="How the snapshot gets a read view consistent with a binlog position: "
        "`auto`: MariaDB's lock-free binlog_snapshot position, else a brief "
        "FLUSH TABLES WITH READ LOCK; `none`: never lock (MariaDB only); `global`: always "
        "take the brief global read lock.",
        examples=["auto"],
    )
    binlog_guard: BinlogGuard | None = Field(
        default=None,
        description="Warn when the durable position nears the server's oldest binlog, and "
        "say what to do when it was purged (unset: no check); see connectors/mysql/SOURCE.md.",
        examples=[{"warn_files": 2, "check_interval_s": 30}],
    )

    @field_validator("gtid_mode", mode="before")
    @classmethod
    def _yaml_bool(cls, v: Any) -> Any:
        # YAML 1.1 reads an unquoted on/off as a boolean.
        if isinstance(v, bool):
            return "on" if v else "off"
        return v

    @field_validator("zero_date", mode="before")
    @classmethod
    def _yaml_null(cls, v: Any) -> Any:
        # `zero_date: null` in YAML is None, which surely means "null".
        return "null" if v is None else v

    def unique_keys(self) -> Mapping[str, Hashable]:
        # Two readers with one server id kick each other off the server.
        return {"server_id": self.server_id}


class MySqlSinkConfig(SinkConfigBase):
    """A MySQL or MariaDB replica database."""

    kind: Literal["mysql"] = Field(description="Kind of the replica database.", examples=["mysql"])
    target: MySqlConnection = Field(
        description="The replica database (its `database` is required)."
    )

    @model_validator(mode="after")
    def _target_database(self) -> Self:
        if self.target.database_name() is None:
            raise invalid("target names no database", "set target.database (or put it in the dsn)")
        return self
