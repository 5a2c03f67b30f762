"""Pipeline configuration: one YAML file, one pydantic model tree, env overrides.

Start at :func:`load_config`. The model tree's root is in :mod:`cdc.config.pipeline`,
its parts in :mod:`cdc.config.kafka` (Kafka and the schema registry),
:mod:`cdc.config.sources`, :mod:`cdc.config.sinks` and :mod:`cdc.config.connection`,
shared building blocks in :mod:`cdc.config.base` (connector-specific models
in ``connectors/<db>/config.py``), the loader in
:mod:`cdc.config.loader`, error formatting in :mod:`cdc.config.problems`,
whole-file checks in :mod:`cdc.config.checks`, docs generation in
:mod:`cdc.config.docs` and the ``cdc config`` commands in :mod:`cdc.config.cli`.
"""

from cdc.config.base import ConfigModel, RedactedDict
from cdc.config.connection import ConnectionConfig
from cdc.config.kafka import KafkaConfig, SchemaRegistryConfig
from cdc.config.loader import (
    ConfigReport,
    config_model,
    inspect_config,
    load_config,
    validate_config,
)
from cdc.config.pipeline import CdcConfig, LogConfig, MetricsConfig
from cdc.config.problems import ConfigProblem, ConfigValidationError
from cdc.config.sinks import SinkConfigBase
from cdc.config.sources import SourceConfigBase, TableFilter

__all__ = [
    "CdcConfig",
    "ConfigModel",
    "ConfigProblem",
    "ConfigReport",
    "ConfigValidationError",
    "ConnectionConfig",
    "KafkaConfig",
    "LogConfig",
    "MetricsConfig",
    "RedactedDict",
    "SchemaRegistryConfig",
    "SinkConfigBase",
    "SourceConfigBase",
    "TableFilter",
    "config_model",
    "inspect_config",
    "load_config",
    "validate_config",
]
