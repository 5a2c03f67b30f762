"""The Kafka side of a deployment: the cluster and the schema registry.

:class:`KafkaConfig` (brokers, security, producer and consumer tuning, the
topics cdc creates, raw librdkafka settings) builds the librdkafka settings
every source, sink and admin client uses, with the guarantees cdc relies on
(idempotence, ``acks=all``, no automatic offset commits) forced on;
:class:`SchemaRegistryConfig` holds where the Avro schemas live. Both are
children of :class:`cdc.config.pipeline.CdcConfig`; this module opens no
connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from cdc.config.base import (
    ConfigModel,
    RedactedDict,
    ScalarStr,
    SecretFile,
    TopicName,
    invalid,
)

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
        description="How long to wait to fill a batch (latency vs throughput). Every change "
        "waits up to this long before it is sent. 20 ms (was 5): each linger costs a produce "
        "request, so 5 ms cost the source and the broker about a quarter of the pipeline's "
        "CPU per change, while p99 commit-to-apply at 5,000 rows/s stayed about 60 ms with "
        "20 (docs/BENCHMARKS.md). Lower it for latency, raise it for CPU.",
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
    buffer_max_kbytes: int = Field(
        default=65_536,
        ge=16_384,
        le=2_097_151,
        description="librdkafka `queue.buffering.max.kbytes`: the most a producer holds of "
        "records not yet acknowledged by Kafka. When it is full the source waits for "
        "acknowledgements (as for `max_in_flight_events`). 64 MB (was 1 GB) bounds a source's "
        "memory on a backlog of large rows; at least 16 MB, so that the largest record "
        "(16 MB, the producer's `message.max.bytes`) fits.",
        examples=[65_536],
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
        description="Maximum bytes per fetch (librdkafka caps it at `queued_max_kbytes`).",
        examples=[52_428_800],
    )
    max_partition_fetch_bytes: int = Field(
        default=262_144,
        ge=1_024,
        le=1_000_000_000,
        description="librdkafka `max.partition.fetch.bytes`: the most (compressed) record "
        "bytes one fetch takes from each partition; a larger first record batch still comes "
        "whole. 256 kB (librdkafka's default is 1 MB): the prefetch bound "
        "(`queued.min.messages`) is only checked between fetches, so a sink that is behind "
        "held up to a whole fetch of every partition beyond it, decompressed; 256 kB took "
        "about 24 MB off the peak RSS of a sink that was behind in a 1M-change catch-up, "
        "at the same speed (docs/BENCHMARKS.md).",
        examples=[262_144],
    )
    queued_max_kbytes: int = Field(
        default=65_536,
        ge=1_024,
        le=2_097_151,
        description="librdkafka `queued.max.messages.kbytes`: the most bytes a sink's "
        "consumer fetches ahead of what the sink has taken (all partitions together). 64 MB, "
        "librdkafka's default. For ordinary rows the record count binds first: the sink "
        "sets librdkafka's `queued.min.messages` to two batches (2 x `batch.max_rows`; "
        "`kafka.client` overrides it), and a fetch can bring up to `max_partition_fetch_bytes` "
        "per partition beyond it, see docs/BENCHMARKS.md. Lower this to bound a sink "
        "that is far behind on large rows.",
        examples=[16_384],
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
    "queue.buffering.max.kbytes": "use kafka.producer.buffer_max_kbytes",
    "queued.max.messages.kbytes": "use kafka.consumer.queued_max_kbytes",
    "max.partition.fetch.bytes": "use kafka.consumer.max_partition_fetch_bytes",
    "fetch.message.max.bytes": "use kafka.consumer.max_partition_fetch_bytes",
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
                "queue.buffering.max.kbytes": self.producer.buffer_max_kbytes,
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
                "max.partition.fetch.bytes": self.consumer.max_partition_fetch_bytes,
                "queued.max.messages.kbytes": self.consumer.queued_max_kbytes,
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
