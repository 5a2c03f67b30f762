"""Builds runnable sources from the validated config, and supervises a pipeline.

Each source and each sink runs in its own process: they share nothing but
Kafka, a crash of one never corrupts another, and Python's GIL is never
shared by two hot loops. ``cdc run`` starts them all and stops them all when
one fails (an orchestrator such as Kubernetes restarts the pod; positions and
checkpoints make the restart lossless).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from cdc.config import CdcConfig, SourceConfigBase
from cdc.errors import ConfigError
from cdc.offsets.store import OffsetStore
from cdc.registry import get_connector
from cdc.runtime.source_runner import RunnerSettings, SnapshotMode, SourceRunner
from cdc.serde import AvroSerde, RegistryClient
from cdc.serde.transaction import TransactionMetadataEncoder
from cdc.transport.producer import EventProducer
from cdc.transport.topics import TopicManager, TopicSpec

log = logging.getLogger(__name__)


def find_source(config: CdcConfig, name: str) -> SourceConfigBase:
    for s in config.sources:
        if s.name == name:
            return s
    known = ", ".join(s.name for s in config.sources) or "none"
    raise ConfigError(f"no source named {name!r} in the config (sources: {known})")


def registry_client(config: CdcConfig) -> RegistryClient:
    reg = config.schema_registry
    password = reg.password.get_secret_value() if reg.password is not None else None
    cafile = str(reg.ssl_ca_location) if reg.ssl_ca_location is not None else None
    return RegistryClient(reg.url, username=reg.username, password=password,
                          timeout=reg.timeout_s, deadline=reg.timeout_s * 2, cafile=cafile)


def build_source_runner(config: CdcConfig, name: str,
                        stop: threading.Event | None = None) -> SourceRunner:
    source_cfg = find_source(config, name)
    connector = get_connector(source_cfg.kind)
    kafka = config.kafka
    client = dict(kafka.common_client_config())
    client.pop("bootstrap.servers", None)
    producer_settings = dict(kafka.producer_config())
    producer_settings.pop("bootstrap.servers", None)
    topics = kafka.topics
    spec = TopicSpec(partitions=topics.partitions, replication_factor=topics.replication_factor,
                     cleanup_policy=str(topics.cleanup_policy),
                     config={k: str(v) for k, v in topics.extra.items()})
    registry = registry_client(config)
    transactions = (
        TransactionMetadataEncoder(registry, source_cfg.transaction_topic_name)
        if source_cfg.transaction_topic else None
    )
    return SourceRunner(
        name,
        connector.create_source(source_cfg, name=name),
        AvroSerde(registry, topic_naming=lambda _prefix, table: source_cfg.topic_for(table)),
        EventProducer(kafka.bootstrap_servers, producer_settings,
                      max_in_flight=kafka.producer.max_in_flight_events),
        OffsetStore(kafka.bootstrap_servers, kafka.offsets_topic, settings=client,
                    replication_factor=topics.replication_factor),
        TopicManager(kafka.bootstrap_servers, client),
        RunnerSettings(
            snapshot_mode=SnapshotMode(source_cfg.snapshot.mode),
            tombstones_on_delete=source_cfg.tombstones_on_delete,
            topic_spec=spec,
            preflight=True,
        ),
        stop=stop,
        transactions=transactions,
    )


def stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@dataclass
class _Child:
    role: str
    name: str
    proc: subprocess.Popen[bytes]


def supervise(config_path: Path, config: CdcConfig, only: Sequence[str] = ()) -> int:
    """Run every source and sink (or those named) as child processes until one exits."""
    wanted = set(only)
    jobs = [("source", s.name) for s in config.sources if not wanted or s.name in wanted]
    jobs += [("sink", s.name) for s in config.sinks if not wanted or s.name in wanted]
    unknown = wanted - {n for _, n in jobs}
    if unknown:
        raise ConfigError(f"not in the config: {', '.join(sorted(unknown))}")
    if not jobs:
        raise ConfigError("nothing to run: the config has no sources or sinks")
    base = config.metrics.port
    children = [
        _Child(role, name, subprocess.Popen(
            [sys.executable, "-m", "cdc.cli", role, str(config_path), "--name", name,
             *(["--metrics-port", str(base + i)] if role == "source" else [])]))
        for i, (role, name) in enumerate(jobs)
    ]
    stop = threading.Event()
    stop_on_signals(stop)
    rc = 0
    try:
        while not stop.is_set():
            for child in children:
                code = child.proc.poll()
                if code is not None:
                    log.error("%s %s exited with %d: stopping the pipeline", child.role,
                              child.name, code)
                    rc = code or 1
                    stop.set()
            time.sleep(0.5)
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + 60
        for child in children:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
    return rc
