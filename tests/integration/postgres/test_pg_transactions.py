"""The transaction metadata topic (BEGIN/END markers that match the change events), and
the source's Prometheus metrics, scraped over HTTP while it runs."""

from __future__ import annotations

import socket
import urllib.request
from collections import Counter, defaultdict
from typing import Any

import pytest

from cdc import native
from cdc.config import MetricsConfig
from cdc.observability.metrics import serve_source_metrics
from cdc.offsets.store import OffsetStore
from cdc.runtime.source_runner import RunnerSettings, SnapshotMode, SourceRunner
from cdc.serde import AvroSerde, RegistryClient
from cdc.serde.transaction import TransactionMetadataEncoder
from cdc.transport.producer import EventProducer
from cdc.transport.topics import TopicManager, TopicSpec
from tests.fixtures.topics import read_changes, read_transaction_markers
from tests.integration.postgres.conftest import PgEnv, RunningSource, current_lsn

pytestmark = pytest.mark.integration


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_markers_bracket_each_transaction_with_its_counts(
    pg: PgEnv, kafka_bootstrap: str, schema_registry_url: str
) -> None:
    a = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, v text)", f"{pg.name}_a")
    b = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, v text)", f"{pg.name}_b")
    registry = RegistryClient(schema_registry_url)
    tx_topic = f"{pg.name}.transaction"
    runner = SourceRunner(
        pg.name, pg.source(), AvroSerde(registry),
        EventProducer(kafka_bootstrap, {"linger.ms": 5}),
        OffsetStore(kafka_bootstrap, f"{pg.name}.offsets"), TopicManager(kafka_bootstrap),
        RunnerSettings(snapshot_mode=SnapshotMode.NEVER, checkpoint_interval_s=0.2,
                       topic_spec=TopicSpec(partitions=2)),
        transactions=TransactionMetadataEncoder(registry, tx_topic),
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert serve_source_metrics(runner, MetricsConfig(port=port), port) == port
    with RunningSource(runner) as running:
        running.wait_checkpoint("the stream never started")
        with pg.conn.transaction():  # two tables in one transaction
            pg.sql(f"INSERT INTO {a} SELECT g, 'x' FROM generate_series(1, 5) g")
            pg.sql(f"INSERT INTO {b} SELECT g, 'y' FROM generate_series(1, 3) g")
            pg.sql(f"UPDATE {a} SET v = 'z' WHERE id <= 2")
        pg.sql(f"DELETE FROM {b} WHERE id = 1")  # a transaction of its own
        with pg.conn.transaction(force_rollback=True):  # rolled back: nothing at all
            pg.sql(f"INSERT INTO {a} VALUES (100, 'never')")
        running.wait_checkpoint("checkpoints stopped", current_lsn(pg.dsn))
        scraped = _scrape(port)
        assert scraped[f'cdc_source_events_total{{source="{pg.name}"}}'] == 11
        assert scraped[f'cdc_source_checkpoints_total{{source="{pg.name}"}}'] >= 1
        assert scraped[f'cdc_source_postgres_slot_retained_wal_bytes{{source="{pg.name}"}}'] >= 0
        assert f'cdc_source_last_event_lag_seconds{{source="{pg.name}"}}' in scraped
        # which C speed-ups run, one gauge per module (cdc --version says the same)
        statuses = native.report()
        assert statuses
        for st in statuses:
            gauge = f'cdc_native_module_loaded{{module="{st.name}",source="{pg.name}"}}'
            assert scraped[gauge] == (1.0 if st.loaded else 0.0), gauge

    serde = AvroSerde(registry)
    events = [c for t in (a, b) for c, _ in read_changes(kafka_bootstrap, f"{pg.name}.public.{t}",
                                                         serde)]
    per_tx: dict[str, Counter[str]] = defaultdict(Counter)
    for c in events:
        assert c.transaction is not None
        per_tx[c.transaction.id][str(c.table)] += 1
    assert sorted(sum(n.values()) for n in per_tx.values()) == [1, 10]

    markers = read_transaction_markers(kafka_bootstrap, tx_topic, registry)
    by_tx: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in markers:
        by_tx[m["id"]].append(m)
    assert set(by_tx) == set(per_tx), "markers for exactly the committed transactions"
    for tx_id, ms in by_tx.items():
        assert {m["partition"] for m in ms} == {ms[0]["partition"]}, "one key, one partition"
        ms.sort(key=lambda m: m["offset"])
        assert [m["status"] for m in ms] == ["BEGIN", "END"]
        begin, end_marker = ms
        assert begin["event_count"] is None and begin["data_collections"] is None
        assert end_marker["event_count"] == sum(per_tx[tx_id].values())
        assert {d["data_collection"]: d["event_count"] for d in end_marker["data_collections"]} \
            == dict(per_tx[tx_id])
        assert begin["ts_ms"] == end_marker["ts_ms"] > 0
