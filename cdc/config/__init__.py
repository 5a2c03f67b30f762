"""Pipeline configuration: one YAML file, one pydantic model tree, env overrides.

Start at :func:`load_config`. Models are in :mod:`cdc.config.kafka`
(connector-specific ones in ``connectors/<db>/config.py``), the loader in
:mod:`cdc.config.loader`, error formatting in :mod:`cdc.config.problems`,
whole-file checks in :mod:`cdc.config.checks`, docs generation in
:mod:`cdc.config.docs` and the ``cdc config`` commands in :mod:`cdc.config.cli`.
"""

from cdc.config.base import ConfigModel, RedactedDict
from cdc.config.kafka import (
    CdcConfig,
    ConnectionConfig,
    KafkaConfig,
    LogConfig,
    MetricsConfig,
    SchemaRegistryConfig,
    SinkConfigBase,
    SourceConfigBase,
    TableFilter,
)
from cdc.config.loader import (
    ConfigReport,
    config_model,
    inspect_config,
    load_config,
    validate_config,
)
from cdc.config.problems import ConfigProblem, ConfigValidationError

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
