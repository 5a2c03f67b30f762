"""Two topics whose tables share a name, in one sink: a fatal error, not two streams in one table.

Replica tables are named after the source table alone (cdc/sink/naming.py).
Subscribed by wildcard, the collision is invisible to `cdc config check`; the
sink meets it at run time and must stop naming both topics, having written
only the first topic's rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.errors import ConfigError
from cdc.events import Op
from cdc.serde import AvroSerde, RegistryClient
from cdc.spi import TableName
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
    ensure_topic,
    produce,
    sink_entry,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def test_second_topic_for_one_replica_table_stops_the_sink(
        kafka_bootstrap: str, schema_registry_url: str, registry: RegistryClient,
        replica: tuple[str, str], unique_name: str, tmp_path: Path) -> None:
    kind, dsn = replica
    serde = AvroSerde(registry)
    first = EventFactory(items_schema(unique_name), prefix=f"{unique_name}_a")
    second = EventFactory(items_schema(unique_name, schema="shop"), prefix=f"{unique_name}_b")
    topic_a = f"{unique_name}_a.public.{unique_name}"
    topic_b = f"{unique_name}_b.shop.{unique_name}"
    for t in (topic_a, topic_b):
        ensure_topic(kafka_bootstrap, t, 1)
    session = dialect_for(kind).connect(sink_config(kind, dsn, "collide", ["x"]))
    drop_tables(session, unique_name)
    row = {"id": 1, "v": 1, "label": "a", "big": "x"}
    produce(kafka_bootstrap, serde, [first.event(Op.CREATE, after=row)], 1, topic=topic_a)
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        sink_entry("collide", kind, dsn, [f"{unique_name}_a.*", f"{unique_name}_b.*"],
                   consumer_group=f"g_{unique_name}")])
    worker = ThreadWorker(config, "collide")
    try:
        def applied() -> bool:
            exists = session.describe(TableName(None, unique_name)) is not None
            session.rollback()
            return exists and 1 in read_rows(session, unique_name)

        wait_until("the first topic's row", applied)
        other = dict(row, id=2, label="b")
        produce(kafka_bootstrap, serde, [second.event(Op.CREATE, after=other)], 1, topic=topic_b)
        worker.thread.join(60)
        assert not worker.thread.is_alive(), "the sink went on writing one table from two topics"
        assert isinstance(worker.error, ConfigError), repr(worker.error)
        msg = str(worker.error)
        assert f"{topic_a} and {topic_b} both map to replica table" in msg
        assert "tables.name_map" in msg
        assert sorted(read_rows(session, unique_name)) == [1]
    finally:
        worker.close()
        drop_tables(session, unique_name)
        session.close()
