"""The sink worker's consumer fetches a bounded number of records ahead (issue #15).

A sink far behind its topic used to hold librdkafka's default prefetch of
100,000 records in C memory (the sink's RSS grew with the backlog up to that;
docs/BENCHMARKS.md). The worker now asks for two batches ahead. These tests
build the worker from a real config and run its exact consumer settings
against a real topic holding more records than that bound, without taking any:
the consumer's queue (librdkafka's statistics, ``fetchq_cnt``) must stop well
short of the backlog. With the old default it fetches the whole topic.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cdc.config import load_config
from cdc.sink.cli import build_worker
from cdc.sink.worker import FETCH_QUEUE_BACKOFF_MS, prefetch_records
from tests.integration.sink.helpers import dialect_for
from tests.integration.sink.kafka_helpers import (
    ensure_topic,
    produce_raw,
    sink_entry,
    wait_until,
    write_config,
)

RECORDS = 30_000  # far more than two batches of 500 plus one fetch (1 MB, ~8,000 records)
MAX_ROWS = 500


def _worker_config(tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str,
                   pg_replica_dsn: str, topic: str, **extra: Any) -> dict[str, Any]:
    path = write_config(tmp_path / "cdc.yaml", kafka_bootstrap, schema_registry_url,
                        [sink_entry("pf", "postgres", pg_replica_dsn, [topic],
                                    batch={"max_rows": MAX_ROWS})])
    if extra:
        data = yaml.safe_load(path.read_text())
        data["kafka"]["client"] = extra
        path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    worker = build_worker(config, "pf", dialect=dialect_for("postgres"))
    return dict(worker._consumer_config)


def _queued_records(conf: dict[str, Any], topic: str) -> int:
    """Most records the consumer held fetched ahead, once fetching stopped (ten
    statistics reports in a row without the queue growing). Serving the reports takes
    one record per poll, a few hundred at most: the queue is still far above them."""
    reports: list[int] = []
    seen = threading.Condition()

    def on_stats(text: str) -> None:
        parts = json.loads(text).get("topics", {}).get(topic, {}).get("partitions", {})
        with seen:
            reports.append(int(parts.get("0", {}).get("fetchq_cnt", 0)))
            seen.notify_all()

    keep = {k: v for k, v in conf.items() if k not in ("on_commit", "error_cb", "logger")}
    keep.update({"statistics.interval.ms": 100, "stats_cb": on_stats})
    consumer = Consumer(keep)
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

        def settled() -> bool:
            consumer.poll(0)  # serves the statistics callback
            with seen:
                tail = reports[-10:]
            return len(tail) == 10 and tail[0] > 0 and max(tail) <= tail[0]

        wait_until("the consumer's prefetch to settle", settled, timeout=90)
        with seen:
            return max(reports)
    finally:
        consumer.close()


def test_worker_prefetches_two_batches_not_the_backlog(
    tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
    unique_name: str,
) -> None:
    topic = f"{unique_name}.prefetch"
    ensure_topic(kafka_bootstrap, topic, 1)
    produce_raw(kafka_bootstrap, topic, [(b"k%d" % i, os.urandom(100)) for i in range(RECORDS)])
    conf = _worker_config(tmp_path, kafka_bootstrap, schema_registry_url, pg_replica_dsn, topic)
    assert conf["queued.min.messages"] == prefetch_records(MAX_ROWS) == 2 * MAX_ROWS
    # Refetching at once below the bound: librdkafka's 1 s default pause starved the sink.
    assert conf["fetch.queue.backoff.ms"] == FETCH_QUEUE_BACKOFF_MS <= 100
    queued = _queued_records(conf, topic)
    # One fetch may overshoot the bound by up to max.partition.fetch.bytes (256 kB).
    assert queued < RECORDS // 2, f"the consumer prefetched {queued} of {RECORDS} records"


def test_kafka_client_overrides_the_prefetch(
    tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
    unique_name: str,
) -> None:
    conf = _worker_config(tmp_path, kafka_bootstrap, schema_registry_url, pg_replica_dsn,
                          f"{unique_name}.prefetch", **{"queued.min.messages": "50000"})
    assert str(conf["queued.min.messages"]) == "50000"
