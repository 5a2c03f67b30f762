"""Kafka side of the sink tests: topics, producing events, config files, waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition

from cdc.config import load_config
from cdc.events import ChangeEvent, Op
from cdc.serde import AvroSerde
from cdc.sink.cli import build_worker
from cdc.sink.worker import SinkWorker
from cdc.spi import SinkSession, TableName
from cdc.transport.producer import EventProducer
from cdc.transport.topics import TopicManager, TopicSpec
from tests.integration.sink.helpers import dialect_for


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    TopicManager(bootstrap).ensure([topic], TopicSpec(partitions=partitions))


def produce(bootstrap: str, serde: AvroSerde, events: Iterable[ChangeEvent], partitions: int,
            *, topic: str | None = None) -> None:
    """Produce like the source runner: keyed records, truncates to every partition."""
    producer = EventProducer(bootstrap, {"linger.ms": 5})
    for ev in events:
        enc = serde.encode(ev)
        t = topic or enc.topic
        if ev.op is Op.TRUNCATE:
            for p in range(partitions):
                producer.send(t, None, enc.value, partition=p)
        else:
            producer.send(t, enc.key, enc.value)
    producer.flush(60)


def produce_raw(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None]],
                partition: int = 0) -> None:
    producer = EventProducer(bootstrap)
    for key, value in records:
        producer.send(topic, key, value, partition=partition)
    producer.flush(60)


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-probe"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        c.close()


def read_topic(bootstrap: str, topic: str, partitions: int = 1) -> list[Any]:
    ends = end_offsets(bootstrap, topic, partitions)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader",
                  "enable.auto.commit": False})
    out = []
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        need = sum(ends.values())
        deadline = time.monotonic() + 20
        while len(out) < need and time.monotonic() < deadline:
            m = c.poll(1)
            if m is not None and m.error() is None:
                out.append(m)
    finally:
        c.close()
    return out


def write_config(path: Path, bootstrap: str, registry_url: str, sinks: list[dict[str, Any]]) -> Path:
    data = {
        "kafka": {"bootstrap_servers": bootstrap, "consumer": {"session_timeout_ms": 6000}},
        "schema_registry": {"url": registry_url},
        "sinks": sinks,
        "metrics": {"enabled": False},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sink_entry(name: str, kind: str, dsn: str, topics: list[str], **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name, "kind": kind, "topics": topics, "target": {"dsn": dsn},
        "batch": {"max_rows": 500, "max_wait_ms": 50},
        "errors": {"retry": {"initial_backoff_s": 0.2, "max_backoff_s": 2.0}},
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(entry.get(k), dict):
            entry[k] = {**entry[k], **v}
        else:
            entry[k] = v
    return entry


class ThreadWorker:
    """A sink worker running in a thread of the test process."""

    def __init__(self, config_path: Path, name: str,
                 prepare: Callable[[SinkWorker], None] | None = None) -> None:
        config = load_config(config_path)
        self.stop = threading.Event()
        self.worker: SinkWorker = build_worker(config, name, stop=self.stop,
                                               dialect=dialect_for(config.sink(name).kind))
        if prepare is not None:
            prepare(self.worker)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as e:  # the test inspects it
            self.error = e

    def check(self) -> None:
        """Raise the worker's failure, if it stopped with one."""
        if self.error is not None:
            raise AssertionError(f"worker failed: {self.error!r}") from self.error

    def close(self, timeout: float = 30) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"


def checkpoint_offsets(session: SinkSession, group: str, topic: str,
                       schema: str | None = None) -> dict[int, int]:
    table = session.dialect.table_sql(TableName(schema, "cdc_offsets"))
    try:
        rows = session.query(
            f"SELECT {session.dialect.quote('partition')}, kafka_offset FROM {table} "
            "WHERE consumer_group = %s AND topic = %s", [group, topic])
    except Exception:  # not created yet
        rows = []
    session.rollback()
    return {int(p): int(o) for p, o in rows}


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60,
               also: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if also is not None:
            also()
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def caught_up(session: SinkSession, group: str, topic: str, ends: dict[int, int],
              schema: str | None = None) -> Callable[[], bool]:
    def check() -> bool:
        done = checkpoint_offsets(session, group, topic, schema)
        return all(done.get(p, -1) >= end - 1 for p, end in ends.items() if end > 0)

    return check
