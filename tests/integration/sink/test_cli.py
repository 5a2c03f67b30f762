"""``cdc sink`` and ``cdc verify`` as commands: a replica built by the sink verifies equal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from cdc.events import Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.serde import AvroSerde, RegistryClient
from tests.integration.sink.helpers import EventFactory, dialect_for, drop_tables, sink_config
from tests.integration.sink.kafka_helpers import (
    caught_up,
    end_offsets,
    ensure_topic,
    produce,
    wait_until,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.integration.sink.cli_entry", *args],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sink_command_replicates_and_verify_command_compares(
        kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
        mysql_replica_url: str, registry: RegistryClient, unique_name: str, tmp_path: Path) -> None:
    source = "src_" + unique_name.replace("t_test_", "")[:20].strip("_")
    table = unique_name
    topic = f"{source}.public.{table}"
    ensure_topic(kafka_bootstrap, topic, 2)
    schema = TableSchema(TableId("cdc_source", "public", table), (
        Column("id", ColumnType(Kind.INT64, "bigint"), nullable=False),
        Column("name", ColumnType(Kind.STRING, "text")),
        Column("at", ColumnType(Kind.TIMESTAMPTZ, "timestamp with time zone")),
    ), ("id",))
    rows = [{"id": i, "name": f"n{i}", "at": None} for i in range(50)]
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, at timestamptz)")
        for r in rows:
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)", (r["id"], r["name"], r["at"]))
    config = tmp_path / "cdc.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_bootstrap, "consumer": {"session_timeout_ms": 6000}},
        "schema_registry": {"url": schema_registry_url},
        "sources": [{"name": source, "kind": "postgres", "connection": {"dsn": pg_source_dsn},
                     "tables": {"include": [f"public.{table}"]}}],
        "sinks": [
            {"name": "rep_pg", "kind": "postgres", "topics": [f"{source}.public.*"],
             "target": {"dsn": pg_replica_dsn}, "consumer_group": f"pg_{unique_name}"},
            {"name": "rep_my", "kind": "mysql", "topics": [topic],
             "target": {"dsn": mysql_replica_url}, "consumer_group": f"my_{unique_name}"},
        ],
        "metrics": {"enabled": False},
    }))
    sessions = {k: dialect_for(k).connect(sink_config(k, dsn, "cli", [topic]))
                for k, dsn in (("postgres", pg_replica_dsn), ("mysql", mysql_replica_url))}
    for s in sessions.values():
        drop_tables(s, table)
    proc = _cli("sink", str(config))  # both sinks: one process each
    try:
        f = EventFactory(schema, prefix=source)
        produce(kafka_bootstrap, AvroSerde(registry), [f.event(Op.READ, after=r) for r in rows], 2)
        ends = end_offsets(kafka_bootstrap, topic, 2)
        wait_until("pg", caught_up(sessions["postgres"], f"pg_{unique_name}", topic, ends))
        wait_until("my", caught_up(sessions["mysql"], f"my_{unique_name}", topic, ends))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    try:
        ok = _cli("verify", str(config), "--source", source)
        out, err = ok.communicate(timeout=60)
        assert ok.returncode == 0, out + err
        assert out.count("OK") == 2 and "rep_pg" in out and "rep_my" in out
        sessions["mysql"].execute_ddl([f"DELETE FROM `{table}` WHERE id = 7",
                                       f"UPDATE `{table}` SET name = 'changed' WHERE id = 9"])
        bad = _cli("verify", str(config), "--source", source, "--sink", "rep_my")
        out, err = bad.communicate(timeout=60)
        assert bad.returncode == 1, out + err
        assert "DIFF" in out and "missing on replica: (7)" in out and "different: (9)" in out
    finally:
        for s in sessions.values():
            drop_tables(s, table)
            s.close()
        with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
