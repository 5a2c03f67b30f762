"""`make demo`: show the local stack working end to end.

Today it proves each service answers its own protocol (Kafka produce/consume
with an idempotent producer, schema registration, PostgreSQL logical slots,
MariaDB row binlog). It grows into the full pipeline demo (sources -> Kafka ->
replica sinks, then `cdc verify`) as those parts land.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]


def load_env() -> dict[str, str]:
    out = subprocess.run([sys.executable, str(ROOT / "deploy/local/stack.py"), "env"],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def step(name: str, fn: object) -> bool:
    t0 = time.monotonic()
    try:
        detail = fn()  # type: ignore[operator]
    except Exception as e:
        print(f"  FAIL  {name}: {e}")
        return False
    print(f"  ok    {name} ({(time.monotonic() - t0) * 1000:.0f} ms){': ' + detail if detail else ''}")
    return True


def kafka(env: dict[str, str]) -> str:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"cdc.demo.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP"]})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "enable.idempotence": True})
    for i in range(1000):
        p.produce(topic, key=str(i).encode(), value=b"x" * 100)
    if p.flush(30):
        raise RuntimeError("undelivered messages")
    c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "group.id": topic,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    n, deadline = 0, time.monotonic() + 30
    while n < 1000 and time.monotonic() < deadline:
        m = c.poll(0.5)
        n += m is not None and not m.error()
    c.close()
    admin.delete_topics([topic])
    return f"1000 records produced (idempotent, acks=all) and {n} consumed"


def registry(env: dict[str, str]) -> str:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    c = SchemaRegistryClient({"url": env["SCHEMA_REGISTRY_URL"]})
    sid = c.register_schema("cdc.demo-value", Schema(json.dumps(
        {"type": "record", "name": "Demo", "fields": [{"name": "id", "type": "long"}]}), "AVRO"))
    return f"Avro schema registered as id {sid}"


def postgres(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        level = conn.execute("SHOW wal_level").fetchone()
    return f"PostgreSQL {version[0] if version else '?'}, wal_level={level[0] if level else '?'}"


def mariadb(url: str) -> str:
    import pymysql

    u = urlparse(url)
    conn = pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                           password=u.password or "")
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION(), @@binlog_format, @@binlog_row_metadata, @@gtid_binlog_pos")
        v, fmt, meta, gtid = cur.fetchone()  # type: ignore[misc]
    conn.close()
    return f"MariaDB {v}, binlog {fmt}/{meta}, gtid_binlog_pos={gtid or '-'}"


def main() -> int:
    env = load_env()
    print("cdc demo: the local stack")
    ok = all([
        step(f"Kafka {env['KAFKA_BOOTSTRAP']}", lambda: kafka(env)),
        step(f"schema registry {env['SCHEMA_REGISTRY_URL']}", lambda: registry(env)),
        step("PostgreSQL source", lambda: postgres(env["PG_SOURCE_DSN"])),
        step("PostgreSQL replica", lambda: postgres(env["PG_REPLICA_DSN"])),
        step("MariaDB source", lambda: mariadb(env["MYSQL_SOURCE_URL"])),
        step("MariaDB replica", lambda: mariadb(env["MYSQL_REPLICA_URL"])),
    ])
    if not ok:
        return 1
    from pipeline_demo import run_demo  # beside this file

    return run_demo(env)


if __name__ == "__main__":
    sys.exit(main())
