"""The configuration model tree: one YAML file, validated once, at start.

The engine's own settings (Kafka, schema registry, metrics, logging) live
here, with the parts every source and sink has (:class:`SourceConfigBase`,
:class:`SinkConfigBase`). Connectors subclass those two with their
kind-specific fields; :func:`cdc.config.loader.config_model` assembles the
final tree from whatever connectors are registered, so this module never names
a database.

Descriptions and examples on every field are the documentation:
``docs/CONFIG.md`` and ``cdc config schema`` are generated from them.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from cdc.config.base import (
    DERIVED,
    NAME_RE,
    ConfigModel,
    Name,
    RedactedDict,
    ScalarStr,
    SecretFile,
    TopicName,
    TopicPattern,
    invalid,
)
from cdc.config.operations import SourceHa, StatusThresholds
from cdc.events import TableId


class DerivedDefault:
    """JSON-schema hook for a default built from the entry's name.

    The schema then shows the rule (``x-default``, and in the description)
    instead of the placeholder ``null`` the model uses until validation.
    """

    def __init__(self, template: str) -> None:
        self.template = template

    def __call__(self, schema: dict[str, Any]) -> None:
        schema.pop("default", None)
        schema["x-default"] = self.template
        schema["description"] = (
            f"{schema.get('description', '')} Default: `{self.template}`.".strip()
        )


def derived(template: str, description: str, **kwargs: Any) -> Any:
    """A field whose default is built from the owner's name (see ``derived_defaults``)."""
    return Field(
        default=DERIVED,
        description=description,
        json_schema_extra=DerivedDefault(template),
        **kwargs,
    )


# --------------------------------------------------------------------------- connections


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


# --------------------------------------------------------------------------- kafka

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
CleanupPolicy = Literal["delete", "compact", "compact,delete"]


class KafkaSecurity(ConfigModel):
    """How clients authenticate to and encrypt traffic with the brokers."""

    secret_files: ClassVar[Mapping[str, str]] = {
        "password_file": "password",
        "ssl_key_password_file": "ssl_key_password",
    }

    protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="librdkafka `security.protocol`.", examples=["SASL_SSL"]
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None,
        description="SASL mechanism; required with SASL_* protocols.",
        examples=["SCRAM-SHA-512"],
    )
    username: str | None = Field(default=None, description="SASL user name.", examples=["cdc"])
    password: SecretStr | None = Field(
        default=None, description="SASL password.", examples=["${KAFKA_PASSWORD}"]
    )
    password_file: SecretFile | None = Field(
        default=None,
        description="File holding the SASL password.",
        examples=["/run/secrets/kafka_password"],
    )
    ssl_ca_location: Path | None = Field(
        default=None,
        description="CA bundle used to verify the brokers.",
        examples=["/etc/ssl/certs/ca.pem"],
    )
    ssl_certificate_location: Path | None = Field(
        default=None,
        description="Client certificate (mutual TLS).",
        examples=["/etc/cdc/client.pem"],
    )
    ssl_key_location: Path | None = Field(
        default=None,
        description="Client private key (mutual TLS).",
        examples=["/etc/cdc/client.key"],
    )
    ssl_key_password: SecretStr | None = Field(
        default=None,
        description="Password of the client private key.",
        examples=["${KAFKA_KEY_PASSWORD}"],
    )
    ssl_key_password_file: SecretFile | None = Field(
        default=None,
        description="File holding the client key password.",
        examples=["/run/secrets/key_pw"],
    )
    ssl_endpoint_identification: bool = Field(
        default=True,
        description="Check the broker certificate's host name; turn off only for test clusters.",
        examples=[True],
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.protocol.startswith("SASL_"):
            missing = [
                k for k in ("sasl_mechanism", "username", "password") if getattr(self, k) is None
            ]
            if missing:
                raise invalid(
                    f"protocol {self.protocol} needs {', '.join(missing)}",
                    "set sasl_mechanism, username and password (or password_file)",
                )
        elif self.sasl_mechanism or self.username or self.password:
            raise invalid(
                f"SASL settings are given but protocol is {self.protocol}",
                "use protocol SASL_SSL (or SASL_PLAINTEXT), or remove the SASL settings",
            )
        return self

    def client_config(self) -> RedactedDict:
        conf = RedactedDict({"security.protocol": self.protocol})
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.username
            conf["sasl.password"] = self.password.get_secret_value() if self.password else None
        if self.protocol in ("SSL", "SASL_SSL"):
            if self.ssl_ca_location:
                conf["ssl.ca.location"] = str(self.ssl_ca_location)
            if self.ssl_certificate_location:
                conf["ssl.certificate.location"] = str(self.ssl_certificate_location)
            if self.ssl_key_location:
                conf["ssl.key.location"] = str(self.ssl_key_location)
            if self.ssl_key_password:
                conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            conf["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_endpoint_identification else "none"
            )
        return conf


class KafkaProducerConfig(ConfigModel):
    """Producer tuning. Idempotence and ``acks=all`` are always on: without them
    a retried send can duplicate or lose events, so they are not settings."""

    linger_ms: int = Field(
        default=20,
        ge=0,
        le=900_000,
        description="How long to wait to fill a batch (latency vs throughput).",
        examples=[20],
    )
    batch_size: int = Field(
        default=1_048_576,
        ge=1,
        le=2_147_483_647,
        description="Maximum batch size in bytes per partition.",
        examples=[1_048_576],
    )
    compression: Compression = Field(
        default="lz4", description="Batch compression codec.", examples=["zstd"]
    )
    max_in_flight_events: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Events produced but not yet acknowledged by Kafka before the source "
        "pauses (backpressure); bounds memory and replay after a crash.",
        examples=[100_000],
    )


class KafkaConsumerConfig(ConfigModel):
    """Consumer tuning for sinks. Offsets are never auto-committed: a sink
    commits only after the replica's transaction, so that is not a setting."""

    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest",
        description="Where a new consumer group starts; `earliest` replays the topic so the "
        "replica gets every row.",
        examples=["earliest"],
    )
    isolation_level: Literal["read_committed", "read_uncommitted"] = Field(
        default="read_committed",
        description="Whether to see records of aborted transactions.",
        examples=["read_committed"],
    )
    session_timeout_ms: int = Field(
        default=45_000,
        ge=1_000,
        le=3_600_000,
        description="Group session timeout.",
        examples=[45_000],
    )
    max_poll_interval_ms: int = Field(
        default=300_000,
        ge=1_000,
        le=86_400_000,
        description="Longest time between polls before the consumer is considered stuck; "
        "must exceed the slowest batch apply.",
        examples=[300_000],
    )
    fetch_max_bytes: int = Field(
        default=52_428_800,
        ge=1_024,
        le=2_147_483_135,
        description="Maximum bytes per fetch.",
        examples=[52_428_800],
    )


class KafkaTopicsConfig(ConfigModel):
    """Settings for topics cdc creates (data, transaction, dead-letter topics)."""

    partitions: int = Field(
        default=3, ge=1, le=100_000, description="Partitions per data topic.", examples=[3]
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        le=32_767,
        description="Replicas per partition; use 3 in production.",
        examples=[3],
    )
    cleanup_policy: CleanupPolicy = Field(
        default="delete",
        description="`cleanup.policy` of data topics; `compact` keeps the last change per key "
        "(tombstones then remove deleted rows).",
        examples=["compact"],
    )
    extra: dict[str, ScalarStr] = Field(
        default_factory=dict,
        description="More topic configs, passed as is.",
        examples=[{"retention.ms": "604800000"}],
    )

    @field_validator("extra")
    @classmethod
    def _no_cleanup_in_extra(cls, v: dict[str, str]) -> dict[str, str]:
        if "cleanup.policy" in v:
            raise invalid("cleanup.policy is set in extra", "use kafka.topics.cleanup_policy")
        return v

    def topic_config(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, **self.extra}


# librdkafka settings cdc owns: overriding them would break a guarantee or
# bypass a validated setting (and a secret in `client` would not be redacted).
_RESERVED_CLIENT_KEYS = {
    "enable.idempotence": "idempotence is always on (no duplicates on retry)",
    "acks": "acks=all is always on (no loss on broker failover)",
    "request.required.acks": "acks=all is always on (no loss on broker failover)",
    "enable.auto.commit": "sinks commit offsets only after the replica's transaction",
    "enable.auto.offset.store": "sinks store offsets only after the replica's transaction",
    "group.id": "set the sink's consumer_group",
    "bootstrap.servers": "use kafka.bootstrap_servers",
    "metadata.broker.list": "use kafka.bootstrap_servers",
    "security.protocol": "use kafka.security.protocol",
    "sasl.mechanism": "use kafka.security.sasl_mechanism",
    "sasl.mechanisms": "use kafka.security.sasl_mechanism",
    "sasl.username": "use kafka.security.username",
    "linger.ms": "use kafka.producer.linger_ms",
    "batch.size": "use kafka.producer.batch_size",
    "compression.type": "use kafka.producer.compression",
    "compression.codec": "use kafka.producer.compression",
}


def _check_client_keys(v: Mapping[str, Any], *, secrets_allowed: bool) -> None:
    for key in v:
        k = key.lower()
        if k in _RESERVED_CLIENT_KEYS:
            raise invalid(f"'{key}' cannot be overridden", _RESERVED_CLIENT_KEYS[k])
        if not secrets_allowed and ("password" in k or "secret" in k):
            raise invalid(
                f"'{key}' looks like a secret",
                "put it in kafka.client_secrets (redacted) or the kafka.security block",
            )


class KafkaConfig(ConfigModel):
    """The Kafka cluster every source produces to and every sink consumes from."""

    removed_keys: ClassVar[Mapping[str, str]] = {
        "schema_history_topic": "cdc never wrote a schema history topic (table schemas "
        "travel in the schema registry and in each binlog's metadata): delete this key",
    }

    bootstrap_servers: str = Field(
        description="Comma-separated `host:port` list of brokers (a YAML list works too).",
        examples=["127.0.0.1:19092"],
    )
    security: KafkaSecurity = Field(
        default_factory=KafkaSecurity, description="Authentication and encryption."
    )
    producer: KafkaProducerConfig = Field(
        default_factory=KafkaProducerConfig, description="Producer tuning (sources)."
    )
    consumer: KafkaConsumerConfig = Field(
        default_factory=KafkaConsumerConfig, description="Consumer tuning (sinks)."
    )
    topics: KafkaTopicsConfig = Field(
        default_factory=KafkaTopicsConfig, description="Settings of topics cdc creates."
    )
    offsets_topic: TopicName = Field(
        default="cdc.offsets",
        description="Compacted topic storing each source's last durable position.",
        examples=["cdc.offsets"],
    )
    client: dict[str, ScalarStr] = Field(
        default_factory=dict,
        description="Raw librdkafka settings for every client, for what cdc does not model. "
        "Settings cdc owns (acks, idempotence, offsets commit, security...) are refused.",
        examples=[{"socket.keepalive.enable": "true", "statistics.interval.ms": "0"}],
    )
    client_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Raw librdkafka settings that are secrets (redacted everywhere).",
        examples=[{"sasl.oauthbearer.client.secret": "${OAUTH_SECRET}"}],
    )

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _join_list(cls, v: Any) -> Any:
        if isinstance(v, list | tuple) and all(isinstance(x, str) for x in v):
            return ",".join(v)
        return v

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, v: str) -> str:
        servers = [s.strip() for s in v.split(",") if s.strip()]
        if not servers:
            raise invalid("no broker given", "list at least one host:port, e.g. 127.0.0.1:9092")
        for i, s in enumerate(servers, 1):
            host, sep, port = s.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise invalid(
                    f"broker {i} of {len(servers)} is not host:port",
                    "write each broker as host:port, e.g. kafka1:9092",
                )
        return ",".join(servers)

    @field_validator("client")
    @classmethod
    def _client_keys(cls, v: dict[str, str]) -> dict[str, str]:
        _check_client_keys(v, secrets_allowed=False)
        return v

    @field_validator("client_secrets")
    @classmethod
    def _client_secret_keys(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        _check_client_keys(v, secrets_allowed=True)
        return v

    def common_client_config(self) -> RedactedDict:
        """librdkafka settings shared by producers, consumers and admin clients."""
        conf = RedactedDict({"bootstrap.servers": self.bootstrap_servers})
        conf.update(self.security.client_config())
        conf.update(self.client)
        conf.update({k: v.get_secret_value() for k, v in self.client_secrets.items()})
        return conf

    def producer_config(self) -> RedactedDict:
        """librdkafka producer settings, with the guarantees cdc relies on forced on."""
        conf = self.common_client_config()
        conf.update(
            {
                "linger.ms": self.producer.linger_ms,
                "batch.size": self.producer.batch_size,
                "compression.type": self.producer.compression,
                "enable.idempotence": True,
                "acks": "all",
            }
        )
        return conf

    def consumer_config(self, group_id: str) -> RedactedDict:
        """librdkafka consumer settings; offsets are committed by the sink, never automatically."""
        conf = self.common_client_config()
        conf.update(
            {
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": self.consumer.auto_offset_reset,
                "isolation.level": self.consumer.isolation_level,
                "session.timeout.ms": self.consumer.session_timeout_ms,
                "max.poll.interval.ms": self.consumer.max_poll_interval_ms,
                "fetch.max.bytes": self.consumer.fetch_max_bytes,
                # Pattern subscriptions see topics created later (a new table) this soon.
                "topic.metadata.refresh.interval.ms": 5000,
            }
        )
        return conf


# --------------------------------------------------------------------------- schema registry


class SchemaRegistryConfig(ConfigModel):
    """The Confluent-compatible schema registry holding the Avro schemas."""

    secret_files: ClassVar[Mapping[str, str]] = {"password_file": "password"}

    url: str = Field(
        description="Base URL of the Confluent-compatible API (Apicurio: `.../apis/ccompat/v7`).",
        examples=["http://127.0.0.1:18081/apis/ccompat/v7"],
    )
    username: str | None = Field(default=None, description="Basic-auth user.", examples=["cdc"])
    password: SecretStr | None = Field(
        default=None, description="Basic-auth password.", examples=["${REGISTRY_PASSWORD}"]
    )
    password_file: SecretFile | None = Field(
        default=None,
        description="File holding the basic-auth password.",
        examples=["/run/secrets/registry_pw"],
    )
    ssl_ca_location: Path | None = Field(
        default=None,
        description="CA bundle used to verify an https registry.",
        examples=["/etc/ssl/certs/ca.pem"],
    )
    timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="Request timeout in seconds.", examples=[10]
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid("not an http(s) URL", "e.g. http://127.0.0.1:18081/apis/ccompat/v7")
        if parts.username or parts.password:
            raise invalid(
                "the URL contains credentials",
                "move them to username and password (or password_file)",
            )
        return v.rstrip("/")

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise invalid("username and password go together", "set both, or neither")
        return self

    def client_config(self) -> RedactedDict:
        """Settings for ``confluent_kafka.schema_registry.SchemaRegistryClient``."""
        conf = RedactedDict({"url": self.url, "timeout": self.timeout_s})
        if self.username is not None and self.password is not None:
            conf["basic.auth.user.info"] = f"{self.username}:{self.password.get_secret_value()}"
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = str(self.ssl_ca_location)
        return conf


# --------------------------------------------------------------------------- sources


def _check_table_pattern(v: str) -> str:
    left, dot, right = v.partition(".")
    if not dot or not left or not right:
        raise invalid(
            "not a schema.table pattern",
            "write schema.table (PostgreSQL) or database.table (MySQL), with * wildcards, e.g. public.*",
        )
    return v


TablePattern = Annotated[str, AfterValidator(_check_table_pattern)]


class TableFilter(ConfigModel):
    """Which tables a source captures: ``include`` minus ``exclude``.

    Patterns are ``schema.table`` (PostgreSQL) or ``database.table`` (MySQL)
    with shell wildcards (``*``, ``?``, ``[abc]``), matched case-sensitively.
    """

    include: tuple[TablePattern, ...] = Field(
        default=("*.*",),
        min_length=1,
        description="Tables to capture.",
        examples=[["public.*", "inventory.orders"]],
    )
    exclude: tuple[TablePattern, ...] = Field(
        default=(),
        description="Tables to leave out even if included.",
        examples=[["public.audit_*"]],
    )

    def matches(self, qualified: str) -> bool:
        """Whether ``schema.table`` (or ``database.table``) is captured."""
        return any(fnmatchcase(qualified, p) for p in self.include) and not any(
            fnmatchcase(qualified, p) for p in self.exclude
        )


class SnapshotConfig(ConfigModel):
    """The initial copy of existing rows, before streaming changes."""

    mode: Literal["initial", "never", "initial_only", "always"] = Field(
        default="initial",
        description="`initial`: snapshot when there is no stored position, then stream; "
        "`never`: stream only, from the current position; `initial_only`: snapshot, then stop; "
        "`always`: snapshot at every start, then stream.",
        examples=["initial"],
    )
    chunk_size: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Rows read per query while snapshotting.",
        examples=[10_000],
    )


class SourceConfigBase(ConfigModel):
    """What every source has. Each connector subclasses it with its own fields.

    ``kind`` selects the subclass; ``derived_defaults`` fills name-based
    defaults so two sources never share a slot, topic prefix or group by
    accident.
    """

    derived_defaults: ClassVar[Mapping[str, str]] = {"topic_prefix": "{name}"}

    name: Name = Field(
        description="Unique name of the source (lower-case letters, digits, `_`).",
        examples=["pg_main"],
    )
    kind: str = Field(description="Connector kind.", examples=["postgres", "mysql"])
    topic_prefix: TopicName = derived(
        "<name>",
        "Prefix of this source's topics: `<prefix>.<schema>.<table>`.",
        examples=["pg_main"],
    )
    connection: ConnectionConfig = Field(description="How to reach the source database.")
    tables: TableFilter = Field(default_factory=TableFilter, description="Which tables to capture.")
    snapshot: SnapshotConfig = Field(
        default_factory=SnapshotConfig, description="Initial copy of existing rows."
    )
    heartbeat_interval_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How often an idle source confirms its position, so the database can "
        "discard log even when captured tables do not change.",
        examples=[10],
    )
    tombstones_on_delete: bool = Field(
        default=True,
        description="Follow each delete with a tombstone (null value) so compaction can drop the key "
        "(not for tables without a primary key: they have no key).",
        examples=[True],
    )
    transaction_topic: bool = Field(
        default=False,
        description="Also write transaction BEGIN/END markers to `<prefix>.transaction`.",
        examples=[False],
    )
    ha: SourceHa = Field(default_factory=SourceHa, description="Active/standby processes.")

    @model_validator(mode="before")
    @classmethod
    def _fill_derived(cls, data: Any) -> Any:
        return _fill_derived(cls.derived_defaults, data)

    def topic_for(self, table: TableId) -> str:
        """The data topic of a table: ``<prefix>.<schema or database>.<table>``."""
        return f"{self.topic_prefix}.{table.qualified}"

    @property
    def transaction_topic_name(self) -> str:
        return f"{self.topic_prefix}.transaction"

    def unique_keys(self) -> Mapping[str, Hashable]:
        """Fields that must not repeat among sources of this kind, with the comparison key.

        The engine reports duplicates without knowing what the fields mean
        (a replication slot per database, a MySQL server id...).
        """
        return {}


# --------------------------------------------------------------------------- sinks


class SinkBatch(ConfigModel):
    """How much a sink gathers before applying one replica transaction."""

    max_rows: int = Field(
        default=5_000, ge=1, le=1_000_000, description="Rows per transaction.", examples=[5000]
    )
    max_wait_ms: int = Field(
        default=200,
        ge=0,
        le=600_000,
        description="Longest wait to fill a batch (latency bound).",
        examples=[200],
    )


class ColumnFilter(ConfigModel):
    """Which columns of one table a sink writes: ``include`` or ``exclude``."""

    include: tuple[str, ...] | None = Field(
        default=None,
        description="Only these columns (key columns are always written).",
        examples=[["id", "status"]],
    )
    exclude: tuple[str, ...] = Field(
        default=(), description="All columns but these.", examples=[["internal_notes"]]
    )

    @model_validator(mode="after")
    def _one(self) -> Self:
        if self.include is not None and self.exclude:
            raise invalid("both include and exclude are set", "use one of them")
        return self


class SinkTables(ConfigModel):
    """How topics map to replica tables and how tables follow the source."""

    auto_create: bool = Field(
        default=True,
        description="Create missing replica tables from the event schema.",
        examples=[True],
    )
    auto_evolve: bool = Field(
        default=True,
        description="Add columns that appear in the source (never drops any).",
        examples=[True],
    )
    name_map: dict[str, str] = Field(
        default_factory=dict,
        description="Replica table per topic; unmapped topics use the source table name.",
        examples=[{"pg_main.public.orders": "orders_copy"}],
    )
    columns: dict[str, ColumnFilter] = Field(
        default_factory=dict,
        description="Column filter per topic.",
        examples=[{"pg_main.public.users": {"exclude": ["password_hash"]}}],
    )

    @field_validator("name_map")
    @classmethod
    def _non_empty(cls, v: dict[str, str]) -> dict[str, str]:
        for topic, table in v.items():
            if not table.strip():
                raise invalid(
                    f"empty table name for '{topic}'", "give a table name, e.g. orders_copy"
                )
        return v


class RetryPolicy(ConfigModel):
    """Retries of retriable failures (lost connection, deadlock), with exponential backoff."""

    max_attempts: int = Field(
        default=10, ge=1, le=1_000, description="Attempts before giving up.", examples=[10]
    )
    initial_backoff_s: float = Field(
        default=0.5,
        gt=0,
        le=3600,
        description="Wait after the first failure; doubles each time.",
        examples=[0.5],
    )
    max_backoff_s: float = Field(
        default=30.0, gt=0, le=3600, description="Longest wait.", examples=[30]
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.initial_backoff_s > self.max_backoff_s:
            raise invalid(
                "initial_backoff_s is larger than max_backoff_s",
                "make max_backoff_s >= initial_backoff_s",
            )
        return self


class SinkErrors(ConfigModel):
    """What a sink does with a record it cannot apply."""

    policy: Literal["fail", "dead_letter"] = Field(
        default="fail",
        description="`fail`: stop the sink (nothing is skipped); `dead_letter`: send the record "
        "to `dead_letter_topic` with the error in its headers, and continue.",
        examples=["dead_letter"],
    )
    dead_letter_topic: TopicName = derived(
        "cdc.dlq.<name>",
        "Topic for records that could not be applied.",
        examples=["cdc.dlq.replica_pg"],
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy, description="Retries before a failure counts."
    )


class SinkDecoding(ConfigModel):
    """Bounds on what one consumed record may decode into (topics hold bytes anyone with
    produce rights wrote); a record over them is a bad record, handled as
    ``errors.policy`` says."""

    max_items: int = Field(
        default=1_000_000,
        ge=1,
        le=1_000_000_000,
        description="Array items plus map entries in one record, over all its arrays and maps.",
        examples=[1_000_000],
    )
    max_record_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        le=2**31 - 1,
        description="Longest Avro body (after the 5-byte framing) a record may have.",
        examples=[67_108_864],
    )


def _pattern_regex(pattern: str) -> str:
    """A wildcard topic pattern as an anchored regex that librdkafka understands."""
    out = []
    for c in pattern:
        out.append({"*": ".*", "?": ".", ".": "\\."}.get(c, c))
    return "^" + "".join(out) + "$"


class SinkConfigBase(ConfigModel):
    """What every sink has. Each connector subclasses it with its own fields."""

    derived_defaults: ClassVar[Mapping[str, str]] = {
        "consumer_group": "cdc-sink-{name}",
        "errors.dead_letter_topic": "cdc.dlq.{name}",
    }

    name: Name = Field(description="Unique name of the sink.", examples=["replica_pg"])
    kind: str = Field(description="Kind of the replica database.", examples=["postgres", "mysql"])
    topics: tuple[TopicPattern, ...] = Field(
        default=(),
        description="Topics to apply: names or `*`/`?` patterns. Set this or topic_regex.",
        examples=[["pg_main.public.*"]],
    )
    topic_regex: str | None = Field(
        default=None,
        description="Regular expression selecting topics, instead of topics.",
        examples=[r"pg_main\.public\.(orders|customers)"],
    )
    consumer_group: str = derived(
        "cdc-sink-<name>", "Kafka consumer group.", examples=["cdc-sink-replica_pg"]
    )
    target: ConnectionConfig = Field(description="The replica database.")
    batch: SinkBatch = Field(
        default_factory=SinkBatch, description="Batching of replica transactions."
    )
    tables: SinkTables = Field(default_factory=SinkTables, description="Topic to table mapping.")
    errors: SinkErrors = Field(default_factory=SinkErrors, description="Failure handling.")
    decoding: SinkDecoding = Field(
        default_factory=SinkDecoding, description="Bounds on decoding one record."
    )
    transactional: bool = Field(
        default=False,
        description="End batches only at source transaction ends, so a source transaction's "
        "rows that share a partition apply in one replica transaction (a batch may then "
        "exceed batch.max_rows).",
        examples=[False],
    )
    origin: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Tag written with each change the sink applies, so a source reading the "
        "replica can skip them (master-master loop prevention).",
        examples=["replica_pg"],
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_derived(cls, data: Any) -> Any:
        return _fill_derived(cls.derived_defaults, data)

    @field_validator("topic_regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise invalid(
                    f"not a valid regular expression: {e}", "check escaping; e.g. pg_main\\..*"
                ) from None
        return v

    @model_validator(mode="after")
    def _one_selection(self) -> Self:
        if bool(self.topics) == (self.topic_regex is not None):
            raise invalid(
                "set exactly one of topics and topic_regex",
                'e.g. topics: ["pg_main.public.*"]',
            )
        return self

    def subscribes(self, topic: str) -> bool:
        """Whether this sink consumes ``topic``."""
        if self.topic_regex is not None:
            return re.fullmatch(self.topic_regex, topic) is not None
        return any(fnmatchcase(topic, p) for p in self.topics)

    def subscription(self) -> list[str]:
        """Topics for ``Consumer.subscribe``: names, and ``^``-anchored regexes for patterns."""
        if self.topic_regex is not None:
            rx = self.topic_regex
            return [rx if rx.startswith("^") else "^" + rx]
        return [_pattern_regex(p) if any(c in p for c in "*?") else p for p in self.topics]


def _fill_derived(defaults: Mapping[str, str], data: Any) -> Any:
    if not isinstance(data, Mapping):
        return data
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return data  # the name's own error is enough; don't derive from a bad one
    out = dict(data)
    for path, template in defaults.items():
        *parents, leaf = path.split(".")
        node: dict[str, Any] = out
        for p in parents:
            child = node.get(p)
            if child is None:
                child = {}
            elif not isinstance(child, Mapping):
                break  # its own validation reports it
            child = dict(child)
            node[p] = child
            node = child
        else:
            if node.get(leaf) is None:
                node[leaf] = template.format(name=name)
    return out


# --------------------------------------------------------------------------- observability


class MetricsConfig(ConfigModel):
    """The Prometheus endpoint."""

    enabled: bool = Field(default=True, description="Serve metrics.", examples=[True])
    host: str = Field(
        default="127.0.0.1", description="Address to listen on.", examples=["0.0.0.0"]
    )
    port: int = Field(
        default=9400, ge=1, le=65535, description="Port to listen on.", examples=[9400]
    )


class LogConfig(ConfigModel):
    """Logging. Secrets are never logged, whatever the level."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Lowest level written (case-insensitive).", examples=["INFO"]
    )
    format: Literal["text", "json"] = Field(
        default="text",
        description="`text` for people, `json` (one object per line) for log shippers.",
        examples=["json"],
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


# --------------------------------------------------------------------------- root


class CdcConfig(ConfigModel):
    """A whole deployment: Kafka, the schema registry, sources and sinks.

    Each entry of ``sources`` and ``sinks`` has the keys of its ``kind``.
    Names must be unique across both lists.
    """

    # Validate through cdc.config.load_config / validate_config: they pick each
    # entry's model by kind and run the checks spanning several entries.

    kafka: KafkaConfig = Field(description="The Kafka cluster.")
    schema_registry: SchemaRegistryConfig = Field(description="The Avro schema registry.")
    sources: tuple[SourceConfigBase, ...] = Field(
        default=(),
        description="Databases to capture changes from; each entry's `kind` selects its fields.",
    )
    sinks: tuple[SinkConfigBase, ...] = Field(
        default=(),
        description="Replica databases to apply changes to; each entry's `kind` selects its fields.",
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus metrics.")
    log: LogConfig = Field(default_factory=LogConfig, description="Logging.")
    status: StatusThresholds = Field(default_factory=StatusThresholds, description="`cdc status`.")

    def source(self, name: str) -> SourceConfigBase:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(f"no source named {name!r}; sources: {[s.name for s in self.sources]}")

    def sink(self, name: str) -> SinkConfigBase:
        for s in self.sinks:
            if s.name == name:
                return s
        raise KeyError(f"no sink named {name!r}; sinks: {[s.name for s in self.sinks]}")
