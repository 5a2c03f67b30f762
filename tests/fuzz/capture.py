"""Capture the fuzz seed corpus from the real local stack (``make up`` first).

Run from the repository root::

    CDC_PORT_OFFSET=... .venv/bin/python -m tests.fuzz.capture

It creates one table of (nearly) every column type in the PostgreSQL source
(``tests/fixtures/pgoutput/typed_table.py``) and in the MariaDB source (the
DDL of ``tests/integration/mysql/test_types_stream.py``), writes, updates and
deletes rows with extreme, empty and NULL values, and then:

- reads the MariaDB binlog of those writes with mysql-replication and keeps
  each rows event's body (the bytes ``FastRowDecoder`` decodes) plus the
  TableMap's column facts: ``corpus/rowimage/`` and ``rowimage-tables.json``;
- runs both sources with ``cdc run`` into fresh topics and keeps every Kafka
  key and value exactly as produced (Confluent-framed Avro), plus the writer
  schemas from the registry: ``corpus/avro_key/``, ``corpus/avro_envelope/``,
  ``corpus/framing/`` and ``avro-schemas.json``;
- copies a sample of every pgoutput message type from the captured sessions
  in ``tests/fixtures/pgoutput`` (real server bytes): ``corpus/pgoutput/``.

Seed files are named by the hash of their content, so a second capture adds
only what is new. Nothing in the databases is left behind but the two tables.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pymysql
import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.mysql.types import BinlogColumn
from tests.fixtures.pgoutput import typed_table
from tests.fixtures.services import (
    connection_settings,
    mysql_kwargs,
    mysql_settings,
    resolve_endpoints,
)
from tests.integration.mysql.test_types_stream import DDL as MY_DDL
from tests.integration.mysql.test_types_stream import ROW1, ROW2, ROW3, ROW4

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
ROOT = HERE.parents[1]
PGOUTPUT = ROOT / "tests" / "fixtures" / "pgoutput"


def save(target: str, data: bytes) -> bool:
    """Write one seed file named by its content hash; False when it already exists."""
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    path = d / hashlib.sha1(data).hexdigest()[:16]
    if path.exists():
        return False
    path.write_bytes(data)
    return True


# ------------------------------------------------------------------ pgoutput


def pgoutput_seeds(per_tag: int = 3, max_size: int = 1500) -> int:
    """A sample of every message type of the captured pgoutput sessions.

    Seed format (tests/fuzz/targets.py): 1 byte in-stream flag, then the message.
    """
    n = 0
    for gz in sorted(PGOUTPUT.glob("*.bin.gz")):
        raw = gzip.decompress(gz.read_bytes())
        seen: dict[tuple[int, bool], int] = {}
        in_stream = False
        pos = 0
        while pos < len(raw):
            (size,) = struct.unpack_from(">I", raw, pos)
            msg = raw[pos + 4 : pos + 4 + size]
            pos += 4 + size
            if not msg or msg[0] != 0x77:  # 'w' XLogData: 1 + 3 x 8 header bytes
                continue
            payload = msg[25:]
            tag = payload[0]
            key = (tag, in_stream)
            if seen.get(key, 0) < per_tag and len(payload) <= max_size:
                seen[key] = seen.get(key, 0) + 1
                n += save("pgoutput", bytes([in_stream]) + payload)
            if tag == 0x53:  # Stream Start
                in_stream = True
            elif tag == 0x45:  # Stream Stop
                in_stream = False
    return n


# ------------------------------------------------------------------ binlog rows


def mysql_writes(url: str, table: str) -> None:
    conn = pymysql.connect(**mysql_kwargs(url))  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = ''")  # the zero dates of ROW4
            cur.execute(MY_DDL.format(t=table))
            for row in (ROW1, ROW2, ROW3, ROW4):
                cur.execute(row.format(t=table))
            cur.execute(f"UPDATE {table} SET vc = 'updated', bi = bi DIV 2 WHERE id IN (1, 2)")
            cur.execute(f"UPDATE {table} SET id = 10 WHERE id = 3")
            cur.execute(f"DELETE FROM {table} WHERE id = 4")
            cur.execute(f"INSERT INTO {table} (id, vc) VALUES (11, 'multi'), (12, NULL), (13, '')")
    finally:
        conn.close()


def binlog_seeds(url: str, table: str, start: tuple[str, int]) -> int:
    """The rows events of ``table`` since ``start``: body bytes + TableMap column facts.

    Seed format: 1 byte (bit 7: update pairs; bits 0-6: table index in
    rowimage-tables.json), then the rows event body after its header.
    """
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.event import RotateEvent
    from pymysqlreplication.row_event import (
        DeleteRowsEvent,
        TableMapEvent,
        UpdateRowsEvent,
        WriteRowsEvent,
    )

    tables_path = HERE / "rowimage-tables.json"
    tables: list[list[dict[str, Any]]] = (
        json.loads(tables_path.read_text()) if tables_path.exists() else []
    )
    reader = BinLogStreamReader(
        connection_settings=mysql_settings(url),
        server_id=random.randint(30000, 39999),
        blocking=False,
        is_mariadb=False,
        log_file=start[0],
        log_pos=start[1],
        resume_stream=True,
        only_events=[TableMapEvent, WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, RotateEvent],
        only_tables=[table],
        enable_logging=False,
    )
    n = 0
    maps: dict[int, Any] = {}
    try:
        for ev in reader:
            if isinstance(ev, TableMapEvent):
                maps[ev.table_id] = ev
                continue
            if not isinstance(ev, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                continue
            tm = maps[ev.table_id]
            mask = tm.null_bitmask
            cols = [
                asdict(BinlogColumn.from_replication(c, bool(mask[i >> 3] & (1 << (i & 7)))))
                for i, c in enumerate(tm.columns)
            ]
            if cols not in tables:
                tables.append(cols)
            index = tables.index(cols)
            packet = ev.packet
            body = packet.read(ev.event_size - packet.read_bytes)
            flag = 0x80 if isinstance(ev, UpdateRowsEvent) else 0
            n += save("rowimage", bytes([flag | index]) + body)
    finally:
        reader.close()
    tables_path.write_text(json.dumps(tables, indent=1) + "\n")
    return n


# ------------------------------------------------------------------ Avro from the sources


def pg_writes(dsn: str, table: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for stmt in typed_table.SETUP_SQL.strip().split(";"):
            if stmt.strip():
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    conn.execute(stmt)
        conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, "
                     + ", ".join(f"{c.name} {c.sql_type}" for c in _PG_COLUMNS) + ")")
        conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        for stmt in _pg_inserts(table, (1, 2, 3)):
            conn.execute(stmt)


# Left out: timestamps beyond Avro's long of microseconds (infinity, year
# 294276), which the PostgreSQL source refuses by design; they would stop the
# capture. Arrays (multi-dimensional ones included) are captured.
_PG_COLUMNS = [
    c for c in typed_table.COLUMNS
    if not any(w in " ".join(c.literals) for w in ("infinity", "294276"))
]


def _pg_inserts(table: str, ids: tuple[int, int, int]) -> list[str]:
    names = ", ".join(c.name for c in _PG_COLUMNS)
    return [
        *(f"INSERT INTO {table} (id, {names}) VALUES ({row_id}, "
          + ", ".join(c.literals[idx] for c in _PG_COLUMNS) + ")"
          for row_id, idx in ((ids[0], 0), (ids[2], 1))),
        f"INSERT INTO {table} (id) VALUES ({ids[1]})",
    ]


def pg_stream_writes(dsn: str, table: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {table} (id) VALUES (20), (21)")
        conn.execute(f"UPDATE {table} SET id = 22 WHERE id = 20")
        conn.execute(f"DELETE FROM {table} WHERE id = 21")
        for stmt in _pg_inserts(table, (31, 32, 33)):
            conn.execute(stmt)


def topic_records(bootstrap: str, prefix: str) -> list[tuple[str, bytes | None, bytes | None]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix + ".")
              and not t.endswith((".offsets", ".history"))]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"capture-{prefix}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    out: list[tuple[str, bytes | None, bytes | None]] = []
    try:
        for topic in topics:
            parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
            for p in parts:
                lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if hi <= lo:
                    continue
                consumer.assign([TopicPartition(topic, p, lo)])
                got = 0
                while got < hi - lo:
                    msg = consumer.poll(5)
                    if msg is None:
                        break
                    if msg.error():
                        continue
                    got += 1
                    out.append((topic, msg.key(), msg.value()))
    finally:
        consumer.close()
    return out


def schema_of(registry: str, schema_id: int) -> Any:
    import urllib.request

    with urllib.request.urlopen(f"{registry}/schemas/ids/{schema_id}", timeout=10) as r:
        return json.loads(json.loads(r.read())["schema"])


def avro_seeds(eps: Any, run: str, pg_table: str, my_table: str, my_db: str) -> int:
    config = Path(tempfile.mkdtemp()) / "capture.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": eps.kafka_bootstrap, "offsets_topic": f"{run}.offsets",
                  "producer": {"linger_ms": 5},
                  "topics": {"partitions": 1, "replication_factor": 1}},
        "schema_registry": {"url": eps.schema_registry_url},
        "sources": [
            {"name": f"{run}_pg", "kind": "postgres",
             "connection": connection_settings(eps.pg_source_dsn, 5432),
             "tables": {"include": [f"public.{pg_table}"]},
             "slot_name": f"{run}_slot", "publication_name": f"{run}_pub"},
            {"name": f"{run}_my", "kind": "mysql",
             "connection": {k: v for k, v in connection_settings(eps.mysql_source_url, 3306).items()
                            if k != "database"},
             "tables": {"include": [f"{my_db}.{my_table}"]},
             "server_id": random.randint(40000, 49999)},
        ],
        "sinks": [],
        "metrics": {"enabled": False},
        "log": {"level": "WARNING"},
    }))
    cdc = [sys.executable, "-m", "cdc.cli"]
    proc = subprocess.Popen([*cdc, "run", str(config)], cwd=ROOT)
    try:
        time.sleep(8)  # snapshot, then stream what follows
        pg_stream_writes(eps.pg_source_dsn, pg_table)
        mysql_writes_more(eps.mysql_source_url, my_table)
        deadline = time.monotonic() + 60
        records: list[tuple[str, bytes | None, bytes | None]] = []
        while time.monotonic() < deadline:
            records = topic_records(eps.kafka_bootstrap, f"{run}_pg") + topic_records(eps.kafka_bootstrap, f"{run}_my")
            if sum(1 for r in records if r[0].startswith(f"{run}_pg")) >= 8 and \
               sum(1 for r in records if r[0].startswith(f"{run}_my")) >= 8:
                break
            time.sleep(2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run([*cdc, "reset-source", str(config), "--name", f"{run}_pg", "--release",
                        "--yes"], cwd=ROOT, capture_output=True, timeout=60)
    schemas_path = HERE / "avro-schemas.json"
    schemas: dict[str, Any] = (
        json.loads(schemas_path.read_text()) if schemas_path.exists() else {}
    )
    n = 0
    for _topic, key, value in records:
        for target, data in (("avro_key", key), ("avro_envelope", value)):
            if not data or len(data) < 5:
                continue
            (sid,) = struct.unpack_from(">I", data, 1)
            kind = "key" if target == "avro_key" else "value"
            if str(sid) not in schemas:
                schemas[str(sid)] = {"kind": kind, "schema": schema_of(eps.schema_registry_url, sid)}
            n += save(target, data)
            n += save("framing", data[:64])
    schemas_path.write_text(json.dumps(schemas, indent=1, sort_keys=True) + "\n")
    return n


def mysql_writes_more(url: str, table: str) -> None:
    conn = pymysql.connect(**mysql_kwargs(url))  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = ''")
            cur.execute(f"UPDATE {table} SET tx = 'streamed', d2 = -1.5 WHERE id = 1")
            cur.execute(f"DELETE FROM {table} WHERE id = 2")
            cur.execute(f"INSERT INTO {table} (id, js) VALUES (21, '{{\"k\": null}}')")
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-avro", action="store_true", help="binlog and pgoutput seeds only")
    args = ap.parse_args()
    eps = resolve_endpoints()
    print(f"pgoutput seeds: {pgoutput_seeds()} new")
    run = f"fuzzcap{random.randint(0, 10**6)}"
    my_db = urlparse(eps.mysql_source_url).path.strip("/")
    my_table, pg_table = f"{run}_my", f"{run}_pg"
    conn = pymysql.connect(**mysql_kwargs(eps.mysql_source_url))  # type: ignore[arg-type]
    with conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        file, pos = cur.fetchone()[:2]
    conn.close()
    mysql_writes(eps.mysql_source_url, my_table)
    print(f"binlog rows seeds: {binlog_seeds(eps.mysql_source_url, my_table, (file, pos))} new")
    if not args.skip_avro:
        pg_writes(eps.pg_source_dsn, pg_table)
        print(f"avro seeds: {avro_seeds(eps, run, pg_table, my_table, my_db)} new")
    with psycopg.connect(eps.pg_source_dsn, autocommit=True) as c:
        c.execute(f"DROP TABLE IF EXISTS {pg_table}")
    conn = pymysql.connect(**mysql_kwargs(eps.mysql_source_url))  # type: ignore[arg-type]
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {my_table}")
    conn.close()


if __name__ == "__main__":
    main()
