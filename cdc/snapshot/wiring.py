"""Where snapshot replication's pieces come from in a validated config.

Which sources replicate by snapshot, which sinks are their replicas, the
runs topic of a source, and the Kafka client settings every part shares.
A sink is a snapshot replica of a source when one of its topic patterns
can match that source's topics (its first dotted part matches the source's
topic prefix); it must then take no streamed topics (``cdc config check``
and :func:`snapshot_sources_of` refuse a mix: a streaming sink would write
the live tables the switch replaces).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from cdc.config import CdcConfig, SourceConfigBase
from cdc.config.sinks import SinkConfigBase
from cdc.errors import ConfigError
from cdc.snapshot.runs import RunStore
from cdc.transport.topics import TopicSpec


def snapshot_sources(config: CdcConfig) -> list[SourceConfigBase]:
    return [s for s in config.sources if s.snapshot_replication is not None]


def _feeds(source: SourceConfigBase, sink: SinkConfigBase) -> bool:
    prefix = source.topic_prefix
    if sink.topic_regex is not None:
        import re

        return re.match(sink.topic_regex, f"{prefix}.") is not None
    for pattern in sink.topics:
        head = pattern.split(".", prefix.count(".") + 1)
        if fnmatchcase(prefix, ".".join(head[: prefix.count(".") + 1])):
            return True
    return False


def snapshot_sources_of(config: CdcConfig, sink: SinkConfigBase) -> list[SourceConfigBase]:
    """The snapshot-replication sources whose topics ``sink`` subscribes to.

    Raises ConfigError when the sink also subscribes to a streaming source.
    """
    feeding = [s for s in config.sources if _feeds(s, sink)]
    snap = [s for s in feeding if s.snapshot_replication is not None]
    streamed = [s for s in feeding if s.snapshot_replication is None]
    if snap and streamed:
        raise ConfigError(
            f"sink {sink.name} subscribes to topics of snapshot-replication source(s) "
            f"{', '.join(s.name for s in snap)} and of streaming source(s) "
            f"{', '.join(s.name for s in streamed)}",
            hint="use one sink entry per kind: a snapshot replica switches whole tables, "
            "a streaming sink applies changes to them",
        )
    return snap


def replicas_of(config: CdcConfig, source: SourceConfigBase) -> list[SinkConfigBase]:
    return [k for k in config.sinks if _feeds(source, k)]


def client_settings(config: CdcConfig) -> dict[str, Any]:
    client = dict(config.kafka.common_client_config())
    client.pop("bootstrap.servers", None)
    return client


def topic_spec(config: CdcConfig) -> TopicSpec:
    topics = config.kafka.topics
    return TopicSpec(partitions=topics.partitions, replication_factor=topics.replication_factor,
                     cleanup_policy=str(topics.cleanup_policy),
                     config={k: str(v) for k, v in topics.extra.items()})


def run_store(config: CdcConfig, source: SourceConfigBase) -> RunStore:
    if source.snapshot_replication is None:
        raise ConfigError(f"source {source.name} has no snapshot_replication block",
                          hint="add snapshot_replication: {interval_s: 3600} (or cron) to it")
    return RunStore(config.kafka.bootstrap_servers, source.snapshot_replication.runs_topic,
                    settings=client_settings(config),
                    replication_factor=config.kafka.topics.replication_factor)


def find_snapshot_source(config: CdcConfig, name: str | None) -> SourceConfigBase:
    """The named snapshot-replication source, or the only one when ``name`` is None."""
    sources = snapshot_sources(config)
    if name is None:
        if len(sources) != 1:
            raise ConfigError(
                f"the config has {len(sources)} snapshot-replication sources "
                f"({', '.join(s.name for s in sources) or 'none'})",
                hint="name one with --source" if sources else
                "add a snapshot_replication block to a source")
        return sources[0]
    for s in sources:
        if s.name == name:
            return s
    raise ConfigError(f"no snapshot-replication source named {name!r} "
                      f"(have: {', '.join(s.name for s in sources) or 'none'})",
                      hint="add a snapshot_replication block to that source")
