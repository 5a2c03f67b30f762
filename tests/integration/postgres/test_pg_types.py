"""PostgreSQL type table against a live server: the stack's SELECT text and pgoutput agree.

The live twin of the offline parity in tests/unit/postgres/test_types.py:
the typed table (every type family, values at the edges) is created and
filled on the source server, read back with text-format SELECT and streamed
through a pgoutput slot; both must give the same text, byte for byte, and
that text must convert (with the type catalog loaded from this server) to
the canonical values the typed table expects.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import psycopg
import pytest

from connectors.postgres import types
from connectors.postgres.source import decoder, messages
from connectors.postgres.types import resolve_type
from tests.fixtures.pgoutput import typed_table
from tests.fixtures.pgoutput.capture import raw_text_rows, stream_copy_data


def _drop_slot(conn: Any, slot: str) -> None:
    # The walsender of a just-closed replication connection may not have exited yet.
    deadline = time.monotonic() + 10
    while True:
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if row is None:
            return
        if not row[0] or time.monotonic() > deadline:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return
        time.sleep(0.05)


@pytest.mark.integration
def test_live_select_and_pgoutput_parity(pg_source_dsn: str) -> None:
    suffix = secrets.token_hex(4)
    schema, slot, pub, end = (
        f"cdc_types_{suffix}",
        f"cdc_types_{suffix}",
        f"cdc_types_{suffix}",
        f"end-{suffix}",
    )
    with psycopg.connect(pg_source_dsn, autocommit=True, options=types.libpq_options()) as conn:
        if conn.execute("SHOW wal_level").fetchone() != ("logical",):
            pytest.skip("pg_source needs wal_level=logical")
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(f"SET search_path = {schema}")
            conn.execute(typed_table.SETUP_SQL)
            conn.execute(typed_table.create_table_sql())
            conn.execute(f"CREATE PUBLICATION {pub} FOR TABLE {schema}.typed")
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
            try:
                for stmt in typed_table.insert_sql():
                    try:
                        conn.execute(stmt)
                    except psycopg.errors.FeatureNotSupported:
                        pytest.skip("server lacks a feature the typed table needs")
                conn.execute("SELECT pg_logical_emit_message(false, %s, '')", (end,))
                frames = stream_copy_data(
                    pg_source_dsn,
                    slot,
                    {"proto_version": "2", "publication_names": pub, "messages": "true"},
                    lambda raw: raw[:1] == b"w" and f"{end}\0".encode() in raw,
                )
            finally:
                _drop_slot(conn, slot)
                conn.execute(f"DROP PUBLICATION IF EXISTS {pub}")
            names = ["id", *(c.name for c in typed_table.COLUMNS)]
            select = {
                int(r[0]): r  # type: ignore[arg-type]
                for r in raw_text_rows(conn, f"SELECT {', '.join(names)} FROM typed ORDER BY id")
            }
            dec = decoder.PgOutputDecoder()
            relation: messages.Relation | None = None
            streamed: dict[int, list[str | None]] = {}
            for raw in frames:
                frame = decoder.decode_copy_data(raw)
                if isinstance(frame, decoder.XLogData):
                    m = dec.decode(frame.payload)
                    if isinstance(m, messages.Relation):
                        relation = m
                    elif isinstance(m, messages.Insert):
                        streamed[int(m.new[0])] = list(m.new)  # type: ignore[arg-type]
            assert relation is not None and [c.name for c in relation.columns] == names
            assert streamed == select
            catalog = types.load_type_catalog(conn, [c.type_oid for c in relation.columns])
            column_types = [resolve_type(c.type_oid, c.type_modifier, catalog)
                            for c in relation.columns]
            typed_table.check_rows(select, column_types, names)
            assert column_types[names.index("c_enum")].column_type.values == ("sad", "ok", "happy")
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
