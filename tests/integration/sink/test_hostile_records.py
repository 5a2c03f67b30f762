"""A running sink against records crafted to take its memory (issue #11, defect 1).

The issue's reproduction: 20 records of about 400 bytes, each an envelope whose row
has an ``array<null>`` column claiming a billion items in blocks of ten million.
They took a running ``cdc sink`` past 2 GB. Now each is a bad record, refused by
the decoder before it allocates (decoding.max_items): under ``errors.policy:
dead_letter`` the 20 go to the dead-letter topic and the sink applies the good
records around them, with its memory bounded.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

from cdc.events import Op
from cdc.serde import AvroSerde, RegistryClient, frame_prefix
from tests.integration.sink.helpers import (
    EventFactory,
    dialect_for,
    drop_tables,
    items_schema,
    read_rows,
    sink_config,
)
from tests.integration.sink.kafka_helpers import (
    ThreadWorker,
    caught_up,
    ensure_topic,
    produce_raw,
    read_topic,
    sink_entry,
    wait_until,
    write_config,
)
from tests.unit.serde.test_decode_limits import ENVELOPE, bomb

pytestmark = pytest.mark.integration


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def test_records_claiming_a_billion_nulls_are_dead_lettered_with_bounded_memory(
        kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
        unique_name: str, tmp_path: Path) -> None:
    registry = RegistryClient(schema_registry_url)
    serde = AvroSerde(registry)
    f = EventFactory(items_schema(unique_name), prefix=unique_name)
    topic = f"{unique_name}.public.{unique_name}"
    dlq = f"{unique_name}.dlq"
    ensure_topic(kafka_bootstrap, topic, 1)
    hostile_id = registry.register(f"{unique_name}.hostile-value", json.dumps(ENVELOPE))
    hostile = frame_prefix(hostile_id) + bomb(10_000_000, 100)
    assert len(hostile) < 450

    records: list[tuple[bytes | None, bytes | None]] = []
    for i in range(3):
        enc = serde.encode(f.event(Op.CREATE, after={"id": i, "v": i, "label": "ok", "big": "b"}))
        records.append((enc.key, enc.value))
    records += [(None, hostile)] * 20
    enc = serde.encode(f.event(Op.CREATE, after={"id": 9, "v": 9, "label": "after", "big": "b"}))
    records.append((enc.key, enc.value))
    produce_raw(kafka_bootstrap, topic, records)

    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        sink_entry("hostile", "postgres", pg_replica_dsn, [topic],
                   consumer_group=f"g_{unique_name}",
                   errors={"policy": "dead_letter", "dead_letter_topic": dlq})])
    session = dialect_for("postgres").connect(
        sink_config("postgres", pg_replica_dsn, "hostile", ["x"]))
    drop_tables(session, unique_name)
    rss_before = _peak_rss_mb()
    worker = ThreadWorker(config, "hostile")
    try:
        wait_until("every record", caught_up(session, f"g_{unique_name}", topic,
                                             {0: len(records)}), also=worker.check)
        assert sorted(read_rows(session, unique_name)) == [0, 1, 2, 9]
        letters = read_topic(kafka_bootstrap, dlq)
        assert len(letters) == 20
        for m in letters:
            h = dict(m.headers())
            assert h["cdc.error.kind"] == b"decode"
            assert b"decoding.max_items" in h["cdc.error"]
            assert m.value() == hostile
    finally:
        worker.close()
        drop_tables(session, unique_name)
        session.close()
    assert worker.error is None
    # Before the fix each record asked for a billion-item list (8 GB of pointers);
    # refused up front, the whole run stays far below one such list.
    assert _peak_rss_mb() - rss_before < 300
