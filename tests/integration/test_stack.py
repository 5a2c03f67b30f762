"""The local stack's services are real: each test talks the service's own protocol."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pymysql
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent

from tests.fixtures.services import (
    Endpoints,
    ServiceUnavailable,
    mysql_kwargs,
    probe_kafka,
    probe_mysql,
    probe_postgres,
    probe_registry,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_kafka_idempotent_produce_and_consume(kafka_bootstrap: str, unique_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    fut = admin.create_topics([NewTopic(unique_name, num_partitions=3, replication_factor=1)])
    fut[unique_name].result(timeout=30)

    delivered: list[tuple[int, int]] = []
    errors: list[object] = []

    def on_delivery(err: object, msg: object) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    producer = Producer({
        "bootstrap.servers": kafka_bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
    })
    for i in range(500):
        producer.produce(unique_name, key=str(i % 17).encode(), value=f"v{i}".encode(),
                         on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert not errors
    assert len(delivered) == 500

    consumer = Consumer({
        "bootstrap.servers": kafka_bootstrap,
        "group.id": unique_name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([unique_name])
    seen: dict[bytes, list[int]] = {}
    deadline = time.monotonic() + 60
    count = 0
    while count < 500 and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        count += 1
        seen.setdefault(msg.key(), []).append(int(msg.value().decode()[1:]))
    consumer.close()
    assert count == 500
    # Same key, same partition, produce order kept.
    for values in seen.values():
        assert values == sorted(values)
    assert sum(len(v) for v in seen.values()) == 500


def test_postgres_source_has_pgoutput_slots(pg_source_dsn: str, unique_name: str) -> None:
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        row = conn.execute(
            "SELECT lsn FROM pg_create_logical_replication_slot(%s, 'pgoutput')", [unique_name]
        ).fetchone()
        try:
            assert row is not None and "/" in str(row[0])
            plugin = conn.execute(
                "SELECT plugin FROM pg_replication_slots WHERE slot_name = %s", [unique_name]
            ).fetchone()
            assert plugin == ("pgoutput",)
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", [unique_name])


def test_postgres_replica_is_writable(pg_replica_dsn: str, unique_name: str) -> None:
    with psycopg.connect(pg_replica_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {unique_name} (id int primary key, v text)")
        conn.execute(f"INSERT INTO {unique_name} VALUES (1, 'x')")
        assert conn.execute(f"SELECT v FROM {unique_name}").fetchone() == ("x",)
        conn.execute(f"DROP TABLE {unique_name}")


def test_mariadb_binlog_row_event_has_column_names(mysql_source_url: str, unique_name: str) -> None:
    kw = mysql_kwargs(mysql_source_url)
    conn = pymysql.connect(**kw)  # type: ignore[arg-type]
    with conn.cursor() as cur:
        cur.execute("SELECT @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@log_bin")
        assert cur.fetchone() == ("ROW", "FULL", "FULL", 1)
        cur.execute("SHOW MASTER STATUS")
        status = cur.fetchone()
        assert status is not None
        log_file, log_pos = status[0], status[1]
        cur.execute(f"CREATE TABLE {unique_name} (id INT PRIMARY KEY, name VARCHAR(40)) "
                    "DEFAULT CHARSET=utf8mb4")
        cur.execute(f"INSERT INTO {unique_name} VALUES (7, 'héllo 🐘')")
    conn.close()

    settings = {k: kw[k] for k in ("host", "port", "user", "password")}
    stream = BinLogStreamReader(
        connection_settings=settings,
        server_id=4242,
        log_file=log_file,
        log_pos=log_pos,
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent],
        only_tables=[unique_name],
    )
    try:
        rows = [row["values"] for ev in stream for row in ev.rows]
    finally:
        stream.close()
    assert rows == [{"id": 7, "name": "héllo 🐘"}]


def test_registry_register_and_fetch_avro(schema_registry_url: str, unique_name: str) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    schema = Schema(json.dumps({
        "type": "record", "name": "Row", "namespace": "cdc.test",
        "fields": [{"name": "id", "type": "long"}, {"name": "v", "type": ["null", "string"],
                                                    "default": None}],
    }), "AVRO")
    subject = f"{unique_name}-value"
    schema_id = client.register_schema(subject, schema)
    fetched = client.get_schema(schema_id)
    assert json.loads(fetched.schema_str)["fields"][0]["name"] == "id"
    latest = client.get_latest_version(subject)
    assert latest.schema_id == schema_id
    # Registering the same schema again is idempotent.
    assert client.register_schema(subject, schema) == schema_id


def test_registry_defaults_to_backward_compatibility(schema_registry_url: str,
                                                     unique_name: str) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    subject = f"{unique_name}-value"
    v1 = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    v2 = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}
    client.register_schema(subject, Schema(json.dumps(v1), "AVRO"))
    assert client.test_compatibility(subject, Schema(json.dumps(v2), "AVRO")) is False


def test_unreachable_services_fail_fast_with_name_and_address() -> None:
    checks = [
        (lambda: probe_kafka("127.0.0.1:1"), "Kafka at 127.0.0.1:1"),
        (lambda: probe_registry("http://127.0.0.1:1/apis/ccompat/v7"), "schema registry at"),
        (lambda: probe_postgres("PostgreSQL source", "postgresql://postgres@127.0.0.1:1/x"),
         "PostgreSQL source at 127.0.0.1:1"),
        (lambda: probe_mysql("MariaDB source", "mysql://root@127.0.0.1:1/x"),
         "MariaDB source at 127.0.0.1:1"),
    ]
    for check, expected in checks:
        t0 = time.monotonic()
        with pytest.raises(ServiceUnavailable, match=expected):
            check()
        assert time.monotonic() - t0 < 15


def _local_stack(endpoints: Endpoints) -> bool:
    return "make up" in endpoints.origin


def test_stack_status_reports_every_service_healthy(endpoints: Endpoints) -> None:
    if not _local_stack(endpoints):
        pytest.skip("services given by environment, not the local stack")
    p = subprocess.run([sys.executable, str(ROOT / "deploy/local/stack.py"), "status"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    for name in ("kafka", "registry", "pg-source", "pg-replica", "mysql-source", "mysql-replica"):
        assert any(line.startswith(name) and line.endswith("healthy")
                   for line in p.stdout.splitlines()), p.stdout


def test_registry_ids_survive_a_restart(endpoints: Endpoints, schema_registry_url: str,
                                        unique_name: str) -> None:
    """Schema ids are persistent (PostgreSQL storage), so Kafka records stay decodable."""
    if not _local_stack(endpoints):
        pytest.skip("registry not managed by the local stack")
    client = SchemaRegistryClient({"url": schema_registry_url})
    schema = Schema(json.dumps({"type": "record", "name": "Persist", "fields": [
        {"name": "marker", "type": "string", "default": uuid.uuid4().hex}]}), "AVRO")
    schema_id = client.register_schema(f"{unique_name}-value", schema)
    p = subprocess.run([sys.executable, str(ROOT / "deploy/local/stack.py"), "restart", "registry"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    fresh = SchemaRegistryClient({"url": schema_registry_url})
    assert json.loads(fresh.get_schema(schema_id).schema_str) == json.loads(schema.schema_str)
