"""Builds runnable sources from the validated config, and supervises a pipeline.

Each source and each sink runs in its own process: they share nothing but
Kafka, a crash of one never corrupts another, and Python's GIL is never
shared by two hot loops. ``cdc run`` starts them all and, by default,
restarts one that fails with capped exponential backoff while the others go
on; ``--restart never`` stops them all at the first failure instead (for an
orchestrator such as Kubernetes that restarts the pod). Positions and
checkpoints make either restart lossless.
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
from enum import StrEnum
from pathlib import Path
from types import FrameType

from cdc.config import CdcConfig, SourceConfigBase
from cdc.errors import EXIT_NEEDS_OPERATOR, ConfigError
from cdc.offsets.store import OffsetStore
from cdc.registry import get_connector
from cdc.runtime.source_runner import RunnerSettings, SnapshotMode, SourceRunner
from cdc.serde import AvroSerde, RegistryClient
from cdc.serde.transaction import TransactionMetadataEncoder
from cdc.transport.backlog import ConsumerBacklog
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
            incremental_chunk_size=(source_cfg.signal.chunk_size if source_cfg.signal is not None
                                    else 1024),
            incremental_max_backlog=(source_cfg.signal.max_backlog
                                     if source_cfg.signal is not None else None),
        ),
        stop=stop,
        transactions=transactions,
        backlog=(ConsumerBacklog(kafka.bootstrap_servers, client)
                 if source_cfg.signal is not None else None),
    )


def stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class RestartPolicy(StrEnum):
    """What ``cdc run`` does when a child process exits with an error."""

    ON_FAILURE = "on-failure"  # restart it with capped exponential backoff; the others go on
    NEVER = "never"  # stop every child and exit with its code (for orchestrators)


# Exit code of a child that a restart cannot help: a usage error (click), or a
# sink stopped by ``errors.policy: fail`` on a record it cannot apply (it
# would fail on the same record again). Logged as an ERROR, not restarted.
FATAL_EXIT = 2
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
# A child that ran this long before failing starts its backoff from the first step again.
STABLE_AFTER_S = 60.0


def next_delay(previous: float, ran_s: float) -> float:
    """The wait before restarting a child that failed after running ``ran_s`` seconds."""
    if previous <= 0.0 or ran_s >= STABLE_AFTER_S:
        return BACKOFF_FIRST_S
    return min(previous * 2, BACKOFF_MAX_S)


@dataclass
class _Child:
    role: str
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    delay: float = 0.0  # the next backoff
    restart_at: float | None = None  # monotonic time of a pending restart
    exit_code: int | None = None  # set once the child is finished for good

    def spawn(self) -> None:
        self.proc = subprocess.Popen(self.argv)
        self.started = time.monotonic()
        self.restart_at = None

    @property
    def label(self) -> str:
        return f"{self.role} {self.name}"


def supervise(config_path: Path, config: CdcConfig, only: Sequence[str] = (),
              restart: RestartPolicy = RestartPolicy.ON_FAILURE,
              stop: threading.Event | None = None) -> int:
    """Run every source and sink (or those named) as child processes.

    A child that exits 0 has finished its work (an ``initial_only`` source):
    the others go on, and the pipeline exits 0 once every child has finished
    cleanly. A child that fails is restarted with capped exponential backoff
    (``on-failure``), each restart logged with its exit code and the next
    delay; with ``never`` the first failure stops every child and its exit code
    is returned. SIGTERM/SIGINT (or ``stop``) stop all children gracefully.
    """
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
        _Child(role, name,
               [sys.executable, "-m", "cdc.cli", role, str(config_path), "--name", name,
                "--metrics-port", str(base + i)])
        for i, (role, name) in enumerate(jobs)
    ]
    if stop is None:
        stop = threading.Event()
        stop_on_signals(stop)
    log.info("running %d processes, restart policy %s", len(children), restart.value)
    for child in children:
        child.spawn()
    rc = 0
    try:
        while not stop.is_set():
            now = time.monotonic()
            for child in children:
                if child.exit_code is not None:
                    continue
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        log.info("%s: restart #%d", child.label, child.restarts)
                        child.spawn()
                    continue
                assert child.proc is not None
                code = child.proc.poll()
                if code is None:
                    continue
                ran = now - child.started
                if code == 0:
                    log.info("%s finished (exit 0 after %.1fs)", child.label, ran)
                    child.exit_code = 0
                elif restart is RestartPolicy.NEVER:
                    log.error("%s exited with %d after %.1fs: stopping the pipeline "
                              "(restart policy never)", child.label, code, ran)
                    rc = code if code > 0 else 1
                    stop.set()
                    break
                elif code == EXIT_NEEDS_OPERATOR:
                    log.error("%s exited with %d after %.1fs: not restarted (stopped by an "
                              "error that needs an operator, logged above; fix the cause and "
                              "start it again)", child.label, code, ran)
                    child.exit_code = code
                elif code == FATAL_EXIT:
                    log.error("%s exited with %d after %.1fs: not restarted (a usage error, "
                              "or a sink stopped by errors.policy fail: a restart would fail "
                              "the same way; fix the cause and start it again)",
                              child.label, code, ran)
                    child.exit_code = code
                else:
                    child.delay = next_delay(child.delay, ran)
                    child.restarts += 1
                    child.restart_at = now + child.delay
                    log.warning("%s exited with %d after %.1fs: restart #%d in %.0fs",
                                child.label, code, ran, child.restarts, child.delay)
            if all(c.exit_code is not None for c in children):
                failed = [c.exit_code for c in children if c.exit_code]
                rc = max(failed) if failed else 0
                log.info("every process has finished: exit %d", rc)
                break
            stop.wait(0.2)
    finally:
        running = [c.proc for c in children
                   if c.exit_code is None and c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + 60
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return rc
