"""The run records of snapshot replication, and the compacted topic that keeps them.

Framing of a run (one compacted, single-partition topic; JSON values):

* ``run/<source>/<run id>``: written ``running`` when a run starts, then
  ``published`` (or ``failed``) when its last row is acknowledged by Kafka.
  The published record is the run's end marker: the source position the copy
  is consistent with, and per table its topic, row count and the offset range
  of each partition that holds its rows.
* ``replica/<source>/<run id>/<sink>``: each replica's outcome (``switched``
  or ``failed``, rows, duration).

Data records of a run carry the header ``cdc.snapshot.run`` (the run id), so
a replica counts exactly this run's rows even if another run wrote the same
topics meanwhile. Run ids sort by start time.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from cdc.errors import UnreachableError
from cdc.transport.client_log import KAFKA_LOG
from cdc.transport.producer import FIXED_SETTINGS
from cdc.transport.topics import TopicManager, TopicSpec

RUN_HEADER: Final = "cdc.snapshot.run"
RunState = Literal["running", "published", "failed"]
ReplicaState = Literal["loading", "switched", "failed"]


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by start time: ``20261206T221500.123Z-1a2b``."""
    t = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{t:%Y%m%dT%H%M%S}.{t.microsecond // 1000:03d}Z-{secrets.token_hex(2)}"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class TableRun:
    """One table of a run: where its rows are and how many there are."""

    table: str  # the source table, schema.table (database.table)
    topic: str
    rows: int
    # partition -> [first offset, end offset) of the range holding the run's rows
    offsets: Mapping[int, tuple[int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "topic": self.topic, "rows": self.rows,
                "offsets": {str(p): list(r) for p, r in sorted(self.offsets.items())}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TableRun:
        return cls(str(d["table"]), str(d["topic"]), int(d["rows"]),
                   {int(p): (int(r[0]), int(r[1])) for p, r in dict(d.get("offsets") or {}).items()})


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as the source side recorded it."""

    source: str
    run_id: str
    state: RunState
    started_ms: int
    finished_ms: int | None = None
    position: Mapping[str, Any] | None = None  # the source position's to_dict()
    tables: tuple[TableRun, ...] = ()
    error: str | None = None
    trigger: str = "schedule"  # schedule | manual

    @property
    def key(self) -> str:
        return f"run/{self.source}/{self.run_id}"

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def duration_s(self) -> float | None:
        if self.finished_ms is None:
            return None
        return (self.finished_ms - self.started_ms) / 1000

    def finished(self, state: RunState, **changes: Any) -> RunRecord:
        return replace(self, state=state, finished_ms=now_ms(), **changes)

    def to_json(self) -> bytes:
        d = asdict(self)
        d["tables"] = [t.to_dict() for t in self.tables]
        d["position"] = dict(self.position) if self.position is not None else None
        d["type"] = "run"
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        return cls(
            source=str(d["source"]), run_id=str(d["run_id"]), state=d["state"],
            started_ms=int(d["started_ms"]),
            finished_ms=None if d.get("finished_ms") is None else int(d["finished_ms"]),
            position=d.get("position"),
            tables=tuple(TableRun.from_dict(t) for t in d.get("tables") or ()),
            error=d.get("error"), trigger=str(d.get("trigger") or "schedule"),
        )


@dataclass(frozen=True, slots=True)
class ReplicaRecord:
    """One replica's outcome for one run."""

    source: str
    run_id: str
    sink: str
    state: ReplicaState
    started_ms: int
    finished_ms: int | None = None
    rows: int = 0
    error: str | None = None

    @property
    def key(self) -> str:
        return f"replica/{self.source}/{self.run_id}/{self.sink}"

    @property
    def duration_s(self) -> float | None:
        if self.finished_ms is None:
            return None
        return (self.finished_ms - self.started_ms) / 1000

    def to_json(self) -> bytes:
        d = asdict(self)
        d["type"] = "replica"
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReplicaRecord:
        return cls(
            source=str(d["source"]), run_id=str(d["run_id"]), sink=str(d["sink"]),
            state=d["state"], started_ms=int(d["started_ms"]),
            finished_ms=None if d.get("finished_ms") is None else int(d["finished_ms"]),
            rows=int(d.get("rows") or 0), error=d.get("error"),
        )


@dataclass(slots=True)
class RunLog:
    """Everything the runs topic holds, latest record per key."""

    runs: dict[tuple[str, str], RunRecord] = field(default_factory=dict)
    replicas: dict[tuple[str, str, str], ReplicaRecord] = field(default_factory=dict)

    def runs_of(self, source: str) -> list[RunRecord]:
        """Runs of ``source``, oldest first."""
        return sorted((r for (s, _), r in self.runs.items() if s == source),
                      key=lambda r: r.run_id)

    def latest_published(self, source: str) -> RunRecord | None:
        done = [r for r in self.runs_of(source) if r.state == "published"]
        return done[-1] if done else None

    def replicas_of(self, source: str, run_id: str) -> dict[str, ReplicaRecord]:
        return {k: r for (s, rid, k), r in self.replicas.items() if s == source and rid == run_id}

    def add(self, value: bytes) -> None:
        d = json.loads(value)
        if d.get("type") == "run":
            run = RunRecord.from_dict(d)
            self.runs[(run.source, run.run_id)] = run
        elif d.get("type") == "replica":
            rep = ReplicaRecord.from_dict(d)
            self.replicas[(rep.source, rep.run_id, rep.sink)] = rep


class RunStore:
    """Reads and writes the runs topic (created compacted, one partition)."""

    def __init__(self, bootstrap_servers: str, topic: str, *,
                 settings: Mapping[str, Any] | None = None, replication_factor: int = 1,
                 timeout_s: float = 30.0) -> None:
        self.topic = topic
        self._bootstrap = bootstrap_servers
        self._settings = dict(settings or {})
        self._timeout = timeout_s
        TopicManager(bootstrap_servers, self._settings, timeout_s=timeout_s).ensure(
            [topic], TopicSpec(partitions=1, replication_factor=replication_factor,
                               cleanup_policy="compact"))
        self._producer = Producer({**self._settings, **FIXED_SETTINGS,
                                   "bootstrap.servers": bootstrap_servers, "linger.ms": 0,
                                   "logger": KAFKA_LOG})

    def write(self, record: RunRecord | ReplicaRecord) -> None:
        """Write one record and wait until Kafka has acknowledged it."""
        failure: list[str] = []

        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                failure.append(err.str())

        self._producer.produce(self.topic, record.to_json(), record.key.encode(),
                               on_delivery=delivered)
        left = self._producer.flush(self._timeout)
        if left or failure:
            raise UnreachableError(
                f"could not write {record.key} to {self.topic} at {self._bootstrap}: "
                f"{failure[0] if failure else 'not acknowledged in time'}")

    def read(self) -> RunLog:
        """The whole topic (compacted: about one record per run and replica)."""
        out = RunLog()
        consumer = Consumer({**self._settings, "bootstrap.servers": self._bootstrap,
                             "group.id": f"cdc-snapshot-runs-{uuid.uuid4().hex}",
                             "enable.auto.commit": False, "logger": KAFKA_LOG})
        try:
            tp = KafkaPartition(self.topic, 0, OFFSET_BEGINNING)
            low, high = consumer.get_watermark_offsets(tp, timeout=self._timeout)
            if high <= low:
                return out
            consumer.assign([tp])
            deadline = time.monotonic() + self._timeout
            while True:
                if time.monotonic() > deadline:
                    raise UnreachableError(f"could not read {self.topic} within "
                                           f"{self._timeout:.0f}s")
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error() is not None:
                    raise UnreachableError(f"reading {self.topic}: {msg.error()}")
                value = msg.value()
                if value:
                    out.add(value)
                if (msg.offset() or 0) + 1 >= high:
                    return out
        except KafkaException as e:
            raise UnreachableError(f"could not read {self.topic}: {e}") from e
        finally:
            consumer.close()

    def close(self) -> None:
        self._producer.flush(5)
