"""The root of the configuration tree: :class:`CdcConfig`, plus metrics and logging.

One YAML file is one :class:`CdcConfig`: the Kafka cluster and schema registry
(:mod:`cdc.config.kafka`), the sources (:mod:`cdc.config.sources`) and sinks
(:mod:`cdc.config.sinks`), and the process-wide metrics and log settings
defined here. Connectors subclass the source and sink bases with their
kind-specific fields; :func:`cdc.config.loader.config_model` assembles the
final tree from whatever connectors are registered, so no config module names
a database.

Descriptions and examples on every field are the documentation:
``docs/CONFIG.md`` and ``cdc config schema`` are generated from them
(:mod:`cdc.config.docs`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from cdc.config.base import ConfigModel
from cdc.config.kafka import KafkaConfig, SchemaRegistryConfig
from cdc.config.master_master import MasterMasterConfig
from cdc.config.operations import StatusThresholds
from cdc.config.sinks import SinkConfigBase
from cdc.config.sources import SourceConfigBase


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
    master_master: MasterMasterConfig | None = Field(
        default=None,
        description="Writable nodes replicating to each other; expanded into one source and "
        "one sink per node, added to `sources` and `sinks` (docs/MASTER-MASTER.md).",
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
