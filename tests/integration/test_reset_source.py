"""`cdc reset-source` forgets offsets, and drops a slot only when asked (--release)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from cdc.cli import main
from cdc.offsets.store import OffsetStore, SourceOffset
from connectors.postgres.position import Lsn, PgPosition

pytestmark = pytest.mark.integration


def _slot_exists(dsn: str, slot: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                           [slot]).fetchone()
    return row is not None


def test_reset_source_releases_the_slot_only_on_request(
    kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, unique_name: str,
    tmp_path: Path,
) -> None:
    slot = f"{unique_name}_slot"
    offsets_topic = f"{unique_name}.offsets"
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_bootstrap, "offsets_topic": offsets_topic},
        "schema_registry": {"url": schema_registry_url},
        "sources": [{"name": unique_name, "kind": "postgres",
                     "connection": {"dsn": pg_source_dsn},
                     "slot_name": slot, "publication_name": f"{unique_name}_pub"}],
    }))
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
    store = OffsetStore(kafka_bootstrap, offsets_topic)
    try:
        store.save(unique_name, SourceOffset(PgPosition(Lsn(42))))
        runner = CliRunner()
        result = runner.invoke(main, ["reset-source", str(config), "--name", unique_name, "--yes"])
        assert result.exit_code == 0, result.output
        assert store.load(unique_name) is None
        assert _slot_exists(pg_source_dsn, slot), "no slot is dropped without --release"

        result = runner.invoke(main, ["reset-source", str(config), "--name", unique_name,
                                      "--release", "--yes"])
        assert result.exit_code == 0, result.output
        assert f"dropped replication slot {slot}" in result.output
        assert not _slot_exists(pg_source_dsn, slot)
    finally:
        if _slot_exists(pg_source_dsn, slot):
            with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])


@pytest.mark.slow
def test_reset_source_uses_the_configured_kafka_security(
    kafka_bootstrap: str, schema_registry_url: str, unique_name: str, tmp_path: Path,
) -> None:
    """The local broker speaks PLAINTEXT only: with SASL configured, reset-source must not
    reach it (before, it ignored kafka.security and reset offsets anyway). ~30 s: the
    offsets store's connect timeout."""
    password = "Kafka-pw-9d41c7"
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_bootstrap, "offsets_topic": f"{unique_name}.offsets",
                  "security": {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                               "username": "cdc", "password": password}},
        "schema_registry": {"url": schema_registry_url},
        "sources": [{"name": unique_name, "kind": "mysql",
                     "connection": {"host": "127.0.0.1", "port": 3306, "user": "root"},
                     "server_id": 4242}],
    }))
    result = CliRunner().invoke(main, ["reset-source", str(config), "--name", unique_name,
                                       "--yes"])
    assert result.exit_code != 0, result.output
    assert f"offsets of {unique_name} reset" not in result.output
    assert password not in result.output
