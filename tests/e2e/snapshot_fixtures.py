"""Shared pieces of the snapshot-replication tests: a source schema, both replicas, a config.

Each test gets its own PostgreSQL source schema ``<run>`` with two tables
(``items``: id, marker, val, amount; ``accounts``: id, marker, name), its own
replica schema (PostgreSQL) and database (MariaDB) of the same name, and its
own topics and runs topic. ``marker`` is the number of the last change round
that touched the source; a replica copy holds one round's rows in both
tables, never a mix. Comparisons read both sides with the database drivers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import yaml

from tests.fixtures.services import connection_settings, mysql_kwargs

Rows = dict[str, list[tuple[Any, ...]]]

QUERIES = {
    "items": "SELECT id, marker, val, amount FROM {t} ORDER BY id",
    "accounts": "SELECT id, marker, name FROM {t} ORDER BY id",
}


def run_name() -> str:
    return f"sr{int(time.time() * 1000) % 10**9}{random.randint(0, 99)}"


@dataclass
class SnapshotSetup:
    run: str
    pg_source_dsn: str
    pg_replica_dsn: str
    mysql_replica_url: str
    kafka_bootstrap: str
    schema_registry_url: str
    round: int = 0
    next_id: int = 1
    expected: dict[int, dict[str, int]] = field(default_factory=dict)  # round -> table -> rows

    @property
    def source(self) -> str:
        return f"{self.run}_src"

    @property
    def runs_topic(self) -> str:
        return f"{self.run}.snapshot-runs"

    # -- the source ---------------------------------------------------------------------

    def create(self, items: int = 1_200, accounts: int = 50) -> None:
        # items: over the PostgreSQL session's COPY_THRESHOLD (1,000), so a replica's
        # shadow table is loaded by the plain COPY of new rows; accounts: by the upsert.
        s = self.run
        with psycopg.connect(self.pg_source_dsn, autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {s}")
            c.execute(f"CREATE TABLE {s}.items (id bigint PRIMARY KEY, marker int NOT NULL, "
                      "val text, amount numeric(12,2))")
            c.execute(f"CREATE TABLE {s}.accounts (id int PRIMARY KEY, marker int NOT NULL, "
                      "name text NOT NULL)")
            c.execute(f"INSERT INTO {s}.items SELECT g, 0, 'v' || g, g * 0.25 "
                      "FROM generate_series(1, %s::int) g", (items,))
            c.execute(f"INSERT INTO {s}.accounts SELECT g, 0, 'a' || g "
                      "FROM generate_series(1, %s::int) g", (accounts,))
        self.next_id = items + 1
        with pymysql.connect(**{**mysql_kwargs(self.mysql_replica_url), "database": None}) as m:
            m.cursor().execute(f"CREATE DATABASE {s}")
        self.expected[0] = {"items": items, "accounts": accounts}

    def change(self, inserts: int = 40, deletes: int = 25, updates: int = 30) -> int:
        """One round of inserts, updates and deletes, and every row's marker set to the
        round's number, in ONE source transaction. Returns the round."""
        self.round += 1
        r, s = self.round, self.run
        with psycopg.connect(self.pg_source_dsn) as c:
            ids = [row[0] for row in c.execute(f"SELECT id FROM {s}.items").fetchall()]
            random.shuffle(ids)
            gone = ids[:deletes]
            c.execute(f"DELETE FROM {s}.items WHERE id = ANY(%s)", (gone,))
            c.execute(f"UPDATE {s}.items SET val = val || '+', amount = amount + 1 "
                      "WHERE id = ANY(%s)", (ids[deletes:deletes + updates],))
            first = self.next_id
            self.next_id += inserts
            c.execute(f"INSERT INTO {s}.items SELECT g, %s, 'new' || g, g * 0.5 "
                      "FROM generate_series(%s::bigint, %s::bigint) g",
                      (r, first, self.next_id - 1))
            c.execute(f"DELETE FROM {s}.accounts WHERE id = (SELECT min(id) FROM {s}.accounts)")
            c.execute(f"INSERT INTO {s}.accounts VALUES (%s, %s, %s)",
                      (1000 + r, r, f"round {r}"))
            c.execute(f"UPDATE {s}.items SET marker = %s", (r,))
            c.execute(f"UPDATE {s}.accounts SET marker = %s", (r,))
            counts = {t: int(c.execute(f"SELECT count(*) FROM {s}.{t}").fetchone()[0])  # type: ignore[index]
                      for t in QUERIES}
        self.expected[r] = counts
        return r

    def source_rows(self) -> Rows:
        with psycopg.connect(self.pg_source_dsn, autocommit=True) as c:
            return {t: [tuple(row) for row in c.execute(q.format(t=f"{self.run}.{t}")).fetchall()]
                    for t, q in QUERIES.items()}

    # -- the replicas ------------------------------------------------------------------

    def pg_rows(self) -> Rows:
        with psycopg.connect(self.pg_replica_dsn, autocommit=True) as c:
            return {t: [tuple(row) for row in c.execute(q.format(t=f"{self.run}.{t}")).fetchall()]
                    for t, q in QUERIES.items()}

    def maria_rows(self) -> Rows:
        with pymysql.connect(**{**mysql_kwargs(self.mysql_replica_url), "database": self.run}) as m:
            out: Rows = {}
            cur = m.cursor()
            for t, q in QUERIES.items():
                cur.execute(q.format(t=f"`{t}`"))
                out[t] = [_maria(row) for row in cur.fetchall()]
            return out

    def pg_tables(self) -> set[str]:
        with psycopg.connect(self.pg_replica_dsn, autocommit=True) as c:
            return {r[0] for r in c.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (self.run,)).fetchall()}

    def maria_tables(self) -> set[str]:
        with pymysql.connect(**{**mysql_kwargs(self.mysql_replica_url), "database": self.run}) as m:
            cur = m.cursor()
            cur.execute("SHOW TABLES")
            return {str(r[0]) for r in cur.fetchall()}

    def pg_observe(self, conn: psycopg.Connection[Any]) -> tuple[list[int], dict[str, int]]:
        """Markers and row counts of both PostgreSQL replica tables, in one statement."""
        s = self.run
        row = conn.execute(
            f"SELECT (SELECT array_agg(DISTINCT marker) FROM {s}.items), "
            f"(SELECT array_agg(DISTINCT marker) FROM {s}.accounts), "
            f"(SELECT count(*) FROM {s}.items), (SELECT count(*) FROM {s}.accounts)").fetchone()
        assert row is not None
        markers = sorted(set(row[0] or []) | set(row[1] or []))
        return markers, {"items": int(row[2]), "accounts": int(row[3])}

    def maria_observe(self, cur: Any) -> tuple[list[int], dict[str, int]]:
        """The same for the MariaDB replica, in one consistent-snapshot transaction."""
        s = self.run
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        try:
            cur.execute(f"SELECT DISTINCT marker FROM `{s}`.`items` UNION "
                        f"SELECT DISTINCT marker FROM `{s}`.`accounts`")
            markers = sorted(int(r[0]) for r in cur.fetchall())
            cur.execute(f"SELECT (SELECT count(*) FROM `{s}`.`items`), "
                        f"(SELECT count(*) FROM `{s}`.`accounts`)")
            a, b = cur.fetchone()
        finally:
            cur.execute("COMMIT")
        return markers, {"items": int(a), "accounts": int(b)}

    # -- the pipeline ---------------------------------------------------------------------

    def config(self, path: Path, *, interval_s: float | None = None, chunk_size: int = 1000,
               sinks: tuple[str, ...] = ("pg", "maria"), metrics_port: int | None = None) -> Path:
        schedule: dict[str, Any] = {"runs_topic": self.runs_topic, "switch_timeout_s": 180}
        if interval_s is not None:
            schedule["interval_s"] = interval_s
        topics = [f"{self.source}.{self.run}.*"]
        all_sinks = {
            "pg": {"name": f"{self.run}_to_pg", "kind": "postgres", "topics": topics,
                   "target": connection_settings(self.pg_replica_dsn, 5432),
                   "target_schema": self.run},
            "maria": {"name": f"{self.run}_to_maria", "kind": "mysql", "topics": topics,
                      "target": {**connection_settings(self.mysql_replica_url, 3306),
                                 "database": self.run}},
        }
        config: dict[str, Any] = {
            "kafka": {"bootstrap_servers": self.kafka_bootstrap,
                      "offsets_topic": f"{self.run}.offsets",
                      "producer": {"linger_ms": 5},
                      "topics": {"partitions": 2, "replication_factor": 1}},
            "schema_registry": {"url": self.schema_registry_url},
            "sources": [{
                "name": self.source, "kind": "postgres",
                "connection": connection_settings(self.pg_source_dsn, 5432),
                "tables": {"include": [f"{self.run}.*"]},
                "snapshot": {"chunk_size": chunk_size},
                "slot_name": f"{self.run}_slot", "publication_name": f"{self.run}_pub",
                "snapshot_replication": schedule,
            }],
            "sinks": [all_sinks[k] for k in sinks],
            "log": {"level": "INFO"},
        }
        if metrics_port is None:
            config["metrics"] = {"enabled": False}
        else:
            config["metrics"] = {"port": metrics_port}
        path.write_text(yaml.safe_dump(config))
        return path

    def drop(self) -> None:
        for dsn in (self.pg_source_dsn, self.pg_replica_dsn):
            try:
                with psycopg.connect(dsn, autocommit=True) as c:
                    c.execute(f"DROP SCHEMA IF EXISTS {self.run} CASCADE")
            except psycopg.Error:
                pass
        try:
            with pymysql.connect(**{**mysql_kwargs(self.mysql_replica_url), "database": None}) as m:
                m.cursor().execute(f"DROP DATABASE IF EXISTS `{self.run}`")
        except pymysql.Error:
            pass


def _maria(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(int(v) if isinstance(v, int) else v for v in row)


def normalise(rows: Rows) -> Rows:
    """Decimals compared by value (PostgreSQL and MariaDB spell scale alike here)."""
    return {t: [tuple(Decimal(v) if isinstance(v, Decimal) else v for v in r) for r in rs]
            for t, rs in rows.items()}


def setups(**kw: Any) -> Iterator[SnapshotSetup]:
    setup = SnapshotSetup(run_name(), **kw)
    setup.create()
    try:
        yield setup
    finally:
        setup.drop()
