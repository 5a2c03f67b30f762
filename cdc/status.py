"""``cdc status FILE``: where every source and sink of a pipeline stands, from outside.

Reads only what a running pipeline leaves behind, so it works from any host
that reaches the servers, while the pipeline runs or not:

* a source's stored position and snapshot state are its latest record in the
  offsets topic (its age: that record's Kafka timestamp); how far the position
  is behind the server comes from the connector (:class:`cdc.spi.InspectsLag`);
* a sink's progress is its replica's checkpoint table (``cdc_offsets``, the
  truth a worker resumes from): per partition the lag in records is the
  topic's end offset minus the next offset to apply, the lag in seconds the
  age of the oldest unapplied record (0 when there is none);
* dead letters are the end offsets of the sink's dead-letter topic.

Exit codes (for cron and alerting): 0 every threshold of ``status`` in the
config is kept; 1 one is exceeded (each is printed); 3 a server could not be
reached (Kafka, a source or a replica), whatever else was found. No secret of
the config ever reaches the output: known secret values are masked as a last
line of defence.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import click
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from pydantic import BaseModel, SecretStr

from cdc.config import CdcConfig, SinkConfigBase, SourceConfigBase
from cdc.config.base import REDACTED
from cdc.config.operations import StatusThresholds
from cdc.errors import CdcError, ConfigError
from cdc.offsets.store import SourceOffset
from cdc.registry import get_connector
from cdc.sink.checkpoint import CHECKPOINT_TABLE, decode_position
from cdc.spi import InspectsLag, Position, TableName
from cdc.transport.client_log import KAFKA_LOG

log = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_THRESHOLD: Final = 1
EXIT_UNREACHABLE: Final = 3


class Unreachable(CdcError):
    """A server ``cdc status`` needs did not answer."""


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class SourceStatus:
    name: str
    kind: str
    position: str | None = None  # the stored position, as the position prints itself
    snapshot: str = "none"  # none (never ran) | running | done
    checkpoint_age_s: float | None = None  # now minus the offsets record's timestamp
    lag: Mapping[str, float | None] = field(default_factory=dict)
    error: str | None = None
    # sources[].ha: processes in the lease group, whether one holds the lease, its epoch.
    ha: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    topic: str
    partition: int
    end_offset: int
    applied_offset: int  # -1: nothing applied yet
    lag_records: int
    lag_seconds: float
    position: str | None = None  # the highest source position applied from it


@dataclass(frozen=True, slots=True)
class SinkStatus:
    name: str
    kind: str
    consumer_group: str
    partitions: tuple[PartitionStatus, ...] = ()
    dead_letters: int | None = None  # None: no dead-letter topic configured
    error: str | None = None
    # The highest source position applied from any partition (one per source kind).
    last_applied: str | None = None

    @property
    def lag_records(self) -> int:
        return sum(p.lag_records for p in self.partitions)

    @property
    def lag_seconds(self) -> float:
        return max((p.lag_seconds for p in self.partitions), default=0.0)


@dataclass(frozen=True, slots=True)
class StatusReport:
    sources: tuple[SourceStatus, ...]
    sinks: tuple[SinkStatus, ...]
    errors: tuple[str, ...] = ()  # global failures (Kafka unreachable)
    breaches: tuple[str, ...] = ()
    taken_at: float = 0.0

    @property
    def unreachable(self) -> bool:
        return bool(self.errors) or any(s.error for s in self.sources) \
            or any(s.error for s in self.sinks)

    @property
    def exit_code(self) -> int:
        if self.unreachable:
            return EXIT_UNREACHABLE
        return EXIT_THRESHOLD if self.breaches else EXIT_OK


def breaches(sources: Iterable[SourceStatus], sinks: Iterable[SinkStatus],
             limits: StatusThresholds) -> list[str]:
    """Every threshold the pipeline is past, one sentence each (pure; unit tested)."""
    out: list[str] = []
    for s in sources:
        age = limits.max_checkpoint_age_seconds
        if age is not None and s.checkpoint_age_s is not None and s.checkpoint_age_s > age:
            out.append(f"source {s.name}: last checkpoint {s.checkpoint_age_s:.0f}s ago "
                       f"(status.max_checkpoint_age_seconds: {age:g})")
        lag = s.lag.get("lag_bytes")
        most = limits.max_source_lag_bytes
        if most is not None and lag is not None and lag > most:
            out.append(f"source {s.name}: {lag:.0f} bytes of log behind the server "
                       f"(status.max_source_lag_bytes: {most})")
    for k in sinks:
        most_records = limits.max_sink_lag_records
        most_seconds = limits.max_sink_lag_seconds
        for p in k.partitions:
            where = f"sink {k.name}: {p.topic}[{p.partition}]"
            if most_records is not None and p.lag_records > most_records:
                out.append(f"{where} lags {p.lag_records} records "
                           f"(status.max_sink_lag_records: {most_records})")
            if most_seconds is not None and p.lag_seconds > most_seconds:
                out.append(f"{where} lags {p.lag_seconds:.0f}s "
                           f"(status.max_sink_lag_seconds: {most_seconds:g})")
        most_letters = limits.max_dead_letters
        if most_letters is not None and k.dead_letters is not None \
                and k.dead_letters > most_letters:
            out.append(f"sink {k.name}: {k.dead_letters} dead letters "
                       f"(status.max_dead_letters: {most_letters})")
    return out


# --------------------------------------------------------------------------- collecting


def _kafka_error(e: BaseException) -> str:
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return str(e.args[0].str())
    return str(e)


class _Kafka:
    """One plain consumer (no group membership) for metadata, watermarks and reads."""

    def __init__(self, config: CdcConfig, timeout: float) -> None:
        self.timeout = timeout
        self.bootstrap = config.kafka.bootstrap_servers
        self.consumer = Consumer({
            **config.kafka.common_client_config(),
            "group.id": f"cdc-status-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # An unapplied offset already removed by retention: read from the oldest kept.
            "auto.offset.reset": "earliest",
            "logger": KAFKA_LOG,
        })
        try:
            md = self.consumer.list_topics(timeout=timeout)
        except KafkaException as e:
            self.consumer.close()
            raise Unreachable(f"Kafka at {self.bootstrap} did not answer: {_kafka_error(e)}",
                              hint="is the broker up, and kafka.security right?") from None
        self.topics: dict[str, int] = {
            name: len(t.partitions) for name, t in md.topics.items() if t.error is None
        }

    def close(self) -> None:
        self.consumer.close()

    def lease(self, config: CdcConfig, source: str) -> dict[str, int]:
        """The HA lease of ``source``: members of its group, whether one holds the
        partition (``active``), and the epoch last committed (cdc.runtime.lease)."""
        from confluent_kafka import ConsumerGroupTopicPartitions
        from confluent_kafka.admin import AdminClient

        from cdc.runtime.lease import epoch_of, lease_group, lease_topic

        conf: dict[str, Any] = {**config.kafka.common_client_config(), "logger": KAFKA_LOG}
        admin = AdminClient(conf)
        group = lease_group(source)
        try:
            desc = admin.describe_consumer_groups(
                [group], request_timeout=self.timeout)[group].result()
            tp = TopicPartition(lease_topic(config.kafka.offsets_topic), 0)
            offsets = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, [tp])],
                request_timeout=self.timeout)[group].result()
        except KafkaException as e:
            raise Unreachable(f"cannot describe lease group {group}: {_kafka_error(e)}") \
                from None
        members = list(desc.members or [])
        active = any(m.assignment and m.assignment.topic_partitions for m in members)
        parts = offsets.topic_partitions or []
        epoch = epoch_of(parts[0].metadata) if parts else 0
        return {"processes": len(members), "active": int(active), "epoch": epoch}

    def end_offsets(self, topic: str) -> dict[int, int]:
        out = {}
        for p in range(self.topics.get(topic, 0)):
            try:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=self.timeout)
            except KafkaException as e:
                raise Unreachable(f"no end offset for {topic}[{p}]: {_kafka_error(e)}") from None
            out[p] = int(high)
        return out

    def read(self, wanted: Mapping[tuple[str, int], tuple[int, int]]) -> Iterator[Any]:
        """Messages of each (topic, partition) from ``start`` up to ``end`` (exclusive)."""
        parts = {tp: se for tp, se in wanted.items() if se[1] > se[0]}
        if not parts:
            return
        self.consumer.assign([TopicPartition(t, p, s) for (t, p), (s, _) in parts.items()])
        pending = set(parts)
        deadline = time.monotonic() + self.timeout
        try:
            while pending:
                if time.monotonic() > deadline:
                    names = ", ".join(f"{t}[{p}]" for t, p in sorted(pending))
                    raise Unreachable(f"could not read {names} from Kafka at {self.bootstrap} "
                                      f"within {self.timeout:.0f}s")
                msg = self.consumer.poll(0.5)
                if msg is None:
                    continue
                tp = (str(msg.topic()), int(msg.partition() or 0))
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(tp)
                        continue
                    raise Unreachable(f"reading {tp[0]}[{tp[1]}]: {err.str()}")
                if tp not in pending:
                    continue
                yield msg
                if int(msg.offset() or 0) + 1 >= parts[tp][1]:
                    pending.discard(tp)
        finally:
            self.consumer.unassign()

    def first_unapplied(self, wanted: Mapping[tuple[str, int], int],
                        ends: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], float]:
        """The Kafka timestamp (epoch seconds) of the record at each partition's offset."""
        out: dict[tuple[str, int], float] = {}
        todo = {tp: (off, ends[tp]) for tp, off in wanted.items() if ends[tp] > off}
        seen: set[tuple[str, int]] = set()
        for msg in self.read(todo):
            tp = (str(msg.topic()), int(msg.partition() or 0))
            if tp in seen:
                continue
            seen.add(tp)
            _, ts = msg.timestamp()
            out[tp] = ts / 1000 if ts and ts > 0 else time.time()
            if len(seen) == len(todo):
                break
        return out


def _offsets_records(kafka: _Kafka, topic: str) -> dict[str, tuple[bytes | None, float]]:
    """The latest value of every key of the offsets topic, with its Kafka timestamp."""
    latest: dict[str, tuple[bytes | None, float]] = {}
    if topic not in kafka.topics:
        return latest
    ends = kafka.end_offsets(topic)
    for msg in kafka.read({(topic, p): (OFFSET_BEGINNING, e) for p, e in ends.items()}):
        key = msg.key()
        if key is None:
            continue
        _, ts = msg.timestamp()
        latest[key.decode(errors="replace")] = (msg.value(), ts / 1000 if ts > 0 else 0.0)
    return latest


def source_status(cfg: SourceConfigBase, record: tuple[bytes | None, float] | None,
                  now: float, ha: Mapping[str, int] | None = None) -> SourceStatus:
    name, kind = cfg.name, cfg.kind
    position = None
    stored: SourceOffset | None = None
    age = None
    snapshot = "none"
    if record is not None and record[0] is not None:
        try:
            stored = SourceOffset.from_json(record[0])
        except CdcError as e:
            return SourceStatus(name, kind, error=f"unreadable offsets record: {e}")
        age = max(0.0, now - record[1]) if record[1] else None
        snapshot = "running" if stored.snapshot is not None else "done"
        position = stored.position
    lag: Mapping[str, float | None] = {}
    error = None
    try:
        source = get_connector(kind).create_source(cfg, name=name)
        try:
            if isinstance(source, InspectsLag):
                lag = dict(source.inspect_lag(position))
        finally:
            source.close()
    except CdcError as e:
        error = str(e)
    except Exception as e:  # a driver error the connector did not wrap
        error = f"{type(e).__name__}: {e}"
    return SourceStatus(name, kind, None if position is None else str(position), snapshot,
                        age, lag, error, ha)


def _checkpoints(sink: SinkConfigBase) -> dict[tuple[str, int], tuple[int, Position | None]]:
    """(topic, partition) -> (applied offset, position) from the replica's checkpoint table."""
    dialect = get_connector(sink.kind).create_dialect()
    table = TableName(dialect.default_schema(sink), CHECKPOINT_TABLE)
    try:
        session = dialect.connect(sink)
    except CdcError:
        raise
    except Exception as e:
        raise Unreachable(f"cannot reach the replica of sink {sink.name}: {e}") from None
    try:
        if session.describe(table) is None:
            return {}
        d = session.dialect
        rows = session.query(
            f"SELECT topic, {d.quote('partition')}, kafka_offset, source_position "
            f"FROM {d.table_sql(table)} WHERE consumer_group = %s", [sink.consumer_group])
        out = {}
        for topic, part, offset, text in rows:
            where = f"{table}({sink.consumer_group}, {topic}, {part})"
            pos = decode_position(text, where)
            out[(str(topic), int(part))] = (int(offset), pos)
        return out
    except CdcError:
        raise
    except Exception as e:
        raise Unreachable(f"cannot read {table} on the replica of sink {sink.name}: {e}") \
            from None
    finally:
        session.close()


def sink_status(sink: SinkConfigBase, kafka: _Kafka, internal: frozenset[str],
                now: float) -> SinkStatus:
    try:
        applied = _checkpoints(sink)
    except CdcError as e:
        return SinkStatus(sink.name, sink.kind, sink.consumer_group, error=str(e))
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in sorted(kafka.topics):
            if topic in internal or topic.startswith("__") or not sink.subscribes(topic):
                continue
            for p, end in kafka.end_offsets(topic).items():
                ends[(topic, p)] = end
        next_offsets = {tp: applied.get(tp, (-1, None))[0] + 1 for tp in ends}
        # A partition trimmed by retention starts later than the checkpoint says.
        oldest = kafka.first_unapplied(next_offsets, ends)
        partitions = []
        for tp, end in sorted(ends.items()):
            offset, position = applied.get(tp, (-1, None))
            lag = max(0, end - (offset + 1))
            seconds = max(0.0, now - oldest[tp]) if lag and tp in oldest else 0.0
            partitions.append(PartitionStatus(tp[0], tp[1], end, offset, lag, seconds,
                                              None if position is None else str(position)))
        letters = None
        if getattr(sink.errors, "policy", "fail") == "dead_letter":
            dlq = sink.errors.dead_letter_topic
            letters = sum(kafka.end_offsets(dlq).values()) if dlq in kafka.topics else 0
    except CdcError as e:
        return SinkStatus(sink.name, sink.kind, sink.consumer_group, error=str(e))
    highest: dict[str, Position] = {}
    for _, position in applied.values():
        if position is not None and (position.kind not in highest
                                     or position > highest[position.kind]):
            highest[position.kind] = position
    last = ", ".join(str(p) for _, p in sorted(highest.items())) or None
    return SinkStatus(sink.name, sink.kind, sink.consumer_group, tuple(partitions), letters,
                      last_applied=last)


def collect(config: CdcConfig) -> StatusReport:
    """Ask every server; never raises for a server that does not answer (it is reported).

    Snapshot-replication sources and their replicas keep no stream positions or
    consumer offsets: ``cdc snapshot status`` shows them, this leaves them out.
    """
    from cdc.snapshot.wiring import snapshot_sources_of

    config = config.model_copy(update={
        "sources": tuple(s for s in config.sources if s.snapshot_replication is None),
        "sinks": tuple(k for k in config.sinks if not snapshot_sources_of(config, k)),
    })
    limits = config.status
    now = time.time()
    try:
        kafka = _Kafka(config, limits.timeout_s)
    except CdcError as e:
        return StatusReport(
            tuple(SourceStatus(s.name, s.kind, error="Kafka unreachable") for s in config.sources),
            tuple(SinkStatus(s.name, s.kind, s.consumer_group, error="Kafka unreachable")
                  for s in config.sinks),
            errors=(str(e),), taken_at=now)
    errors: list[str] = []
    try:
        offsets_topic = config.kafka.offsets_topic
        try:
            records = _offsets_records(kafka, offsets_topic)
        except CdcError as e:
            errors.append(str(e))
            records = {}
        sources = []
        for s in config.sources:
            try:
                ha = kafka.lease(config, s.name) if s.ha.enabled else None
            except CdcError as e:
                errors.append(str(e))
                ha = None
            sources.append(source_status(s, records.get(s.name), now, ha))
        internal = frozenset({offsets_topic, f"{offsets_topic}.lease"}
                             | {s.errors.dead_letter_topic for s in config.sinks})
        sinks = tuple(sink_status(s, kafka, internal, now) for s in config.sinks)
    finally:
        kafka.close()
    return StatusReport(tuple(sources), sinks, tuple(errors),
                        tuple(breaches(sources, sinks, limits)), taken_at=now)


# --------------------------------------------------------------------------- output


def to_json(report: StatusReport) -> dict[str, Any]:
    def sink(s: SinkStatus) -> dict[str, Any]:
        return {
            "name": s.name, "kind": s.kind, "consumer_group": s.consumer_group,
            "lag_records": s.lag_records, "lag_seconds": round(s.lag_seconds, 3),
            "last_applied_position": s.last_applied, "dead_letters": s.dead_letters,
            "partitions": [asdict(p) for p in s.partitions], "error": s.error,
        }

    return {
        "taken_at": round(report.taken_at, 3),
        "sources": [{**asdict(s), "lag": dict(s.lag), "ha": None if s.ha is None else dict(s.ha)}
                    for s in report.sources],
        "sinks": [sink(s) for s in report.sinks],
        "errors": list(report.errors),
        "breaches": list(report.breaches),
        "exit_code": report.exit_code,
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]


def render(report: StatusReport) -> str:
    lines = [f"cdc status at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(report.taken_at))}"
             " UTC", ""]
    lines += [f"ERROR: {e}" for e in report.errors]
    lines.append("SOURCES")
    rows = []
    for s in report.sources:
        lag = ", ".join(f"{k}={_num(v)}" for k, v in s.lag.items())
        ha = "-" if s.ha is None else (
            f"{'active' if s.ha['active'] else 'NO ACTIVE'} e{s.ha['epoch']}, "
            f"{s.ha['processes']} process{'es' if s.ha['processes'] != 1 else ''}")
        rows.append([s.name, s.kind, s.snapshot, _age(s.checkpoint_age_s), lag or "-", ha,
                     s.position or "-"])
    lines += _table(["NAME", "KIND", "SNAPSHOT", "CHECKPOINT AGE", "LAG", "HA", "POSITION"],
                    rows)
    for s in report.sources:
        if s.error:
            lines.append(f"  {s.name}: ERROR {s.error}")
    lines += ["", "SINKS"]
    rows = []
    for k in report.sinks:
        rows.append([k.name, k.kind, "-" if k.error else str(k.lag_records),
                     "-" if k.error else _age(k.lag_seconds),
                     "-" if k.dead_letters is None else str(k.dead_letters),
                     k.last_applied or "-"])
    lines += _table(["NAME", "KIND", "LAG RECORDS", "LAG", "DEAD LETTERS", "LAST APPLIED"], rows)
    for k in report.sinks:
        if k.error:
            lines.append(f"  {k.name}: ERROR {k.error}")
            continue
        for p in k.partitions:
            if p.lag_records:
                lines.append(f"  {k.name} {p.topic}[{p.partition}]: {p.lag_records} records, "
                             f"{_age(p.lag_seconds)} behind (applied {p.applied_offset}, "
                             f"end {p.end_offset})")
    if report.breaches:
        lines += ["", "THRESHOLDS EXCEEDED"] + [f"  {b}" for b in report.breaches]
    return "\n".join(lines)


def secret_values(model: Any) -> set[str]:
    """Every secret string in a config tree (to mask them in anything printed)."""
    found: set[str] = set()
    if isinstance(model, SecretStr):
        v = model.get_secret_value()
        if len(v) >= 3:
            found.add(v)
    elif isinstance(model, BaseModel):
        for name in type(model).model_fields:
            found |= secret_values(getattr(model, name))
    elif isinstance(model, Mapping):
        for v in model.values():
            found |= secret_values(v)
    elif isinstance(model, (list, tuple)):
        for v in model:
            found |= secret_values(v)
    return found


def mask(text: str, secrets: Iterable[str]) -> str:
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, REDACTED)
    return text


@click.command("status")
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object (top-level `sources` and `sinks` lists) for scripts.")
@click.option("--watch", type=float, default=None, is_flag=False, flag_value=5.0,
              metavar="[SECONDS]", help="Refresh every SECONDS (default 5) until interrupted.")
def status_command(config_file: Path, as_json: bool, watch: float | None) -> None:
    """Show each source's position and lag, and each sink's lag, per partition.

    Exit 0: within the `status` thresholds of FILE; 1: a threshold is exceeded;
    3: a server (Kafka, a source or a replica) could not be reached.
    """
    from cdc.config import load_config
    from cdc.observability.logging import setup_logging

    try:
        config = load_config(config_file)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    setup_logging("ERROR", config.log.format)  # the report says what went wrong
    secrets = secret_values(config)

    def once() -> int:
        report = collect(config)
        text = json.dumps(to_json(report), indent=2) if as_json else render(report)
        if watch is not None and not as_json:
            click.clear()
        click.echo(mask(text, secrets))
        return report.exit_code

    if watch is None:
        raise SystemExit(once())
    rc = EXIT_OK
    try:
        while True:
            rc = once()
            time.sleep(max(0.5, watch))
    except KeyboardInterrupt:
        pass
    raise SystemExit(rc)
