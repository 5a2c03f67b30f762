"""Writable nodes of the master-master tests: table setup, writes and an independent reader.

Each node is one database of the local stack (or a third PostgreSQL server)
holding the test's table in namespace ``mm`` (a PostgreSQL schema, a MariaDB
database). Rows are read back with the databases' own drivers (psycopg,
PyMySQL) and normalised to plain Python values, so two nodes of different
kinds compare row by row without cdc's code in the loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlparse

import psycopg
import pymysql

from tests.fixtures.processes import drop_slots
from tests.fixtures.services import connection_settings, mysql_kwargs

NS = "mm"


@dataclass(frozen=True)
class Node:
    """A node: its name (source name, topic prefix, origin) and its database."""

    name: str
    kind: str  # postgres | mysql
    url: str  # postgresql://... (the node's database) or mysql://.../<checkpoint database>

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.kind == "postgres":
            with psycopg.connect(self.url, autocommit=True) as conn:
                cur = conn.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        conn = pymysql.connect(**{**mysql_kwargs(self.url), "autocommit": True})
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def create(self, table: str) -> None:
        """``mm.<table>`` (id, v, n), empty; PostgreSQL with REPLICA IDENTITY FULL."""
        if self.kind == "postgres":
            self.run(f"CREATE SCHEMA IF NOT EXISTS {NS}")
            self.run(f"DROP TABLE IF EXISTS {NS}.{table}")
            self.run(f"CREATE TABLE {NS}.{table} (id int PRIMARY KEY, v varchar(64) NOT NULL, "
                     "n int NOT NULL)")
            self.run(f"ALTER TABLE {NS}.{table} REPLICA IDENTITY FULL")
        else:
            self.run(f"CREATE DATABASE IF NOT EXISTS {NS}")
            self.run(f"DROP TABLE IF EXISTS {NS}.{table}")
            self.run(f"CREATE TABLE {NS}.{table} (id int PRIMARY KEY, v varchar(64) NOT NULL, "
                     "n int NOT NULL) DEFAULT CHARSET=utf8mb4")

    def drop(self, table: str) -> None:
        self.run(f"DROP TABLE IF EXISTS {NS}.{table}")

    def rows(self, table: str) -> dict[int, tuple[str, int]]:
        return {int(i): (str(v), int(n))
                for i, v, n in self.run(f"SELECT id, v, n FROM {NS}.{table}")}

    def upsert(self, table: str, key: int, v: str, n: int) -> None:
        if self.kind == "postgres":
            self.run(f"INSERT INTO {NS}.{table} VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE "
                     "SET v = excluded.v, n = excluded.n", (key, v, n))
        else:
            self.run(f"INSERT INTO {NS}.{table} VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE "
                     "v = VALUES(v), n = VALUES(n)", (key, v, n))

    def insert(self, table: str, key: int, v: str, n: int = 0) -> None:
        self.run(f"INSERT INTO {NS}.{table} VALUES (%s, %s, %s)", (key, v, n))

    def update(self, table: str, key: int, v: str) -> None:
        self.run(f"UPDATE {NS}.{table} SET v = %s, n = n + 1 WHERE id = %s", (v, key))

    def delete(self, table: str, key: int) -> None:
        self.run(f"DELETE FROM {NS}.{table} WHERE id = %s", (key,))

    def connection(self) -> dict[str, Any]:
        return connection_settings(self.url, 5432 if self.kind == "postgres" else 3306)

    @property
    def port(self) -> int:
        return int(urlparse(self.url).port or (5432 if self.kind == "postgres" else 3306))

    def conflict_keys(self, table: str) -> set[int]:
        """Keys of ``table`` the node's conflict log (``cdc_conflicts``) holds, or an empty set."""
        try:
            got = self.run("SELECT * FROM cdc_conflicts")
        except Exception:  # no conflict table yet: nothing detected here
            return set()
        keys: set[int] = set()
        for row in got:
            text = " ".join(str(c) for c in row)
            if table not in text:
                continue
            for c in row:
                k = _key_of(c)
                if k is not None:
                    keys.add(k)
        return keys

    def cleanup(self) -> None:
        if self.kind == "postgres":
            drop_slots(self.url, [f"cdc_{self.name}"])
            self.run(f"DROP PUBLICATION IF EXISTS cdc_{self.name}")
            self.run("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin "
                     "WHERE roname = %s", (f"cdc_{self.name}",))


def _key_of(cell: Any) -> int | None:
    """The ``id`` of a conflict record's key column (``row_key``: a JSON array of the key
    values, ``[7]``; an object ``{"id": 7}`` is read too)."""
    if isinstance(cell, list) and len(cell) == 1:
        cell = {"id": cell[0]}
    if isinstance(cell, dict):
        v = cell.get("id")
        return int(v) if isinstance(v, int | str | Decimal) and str(v).lstrip("-").isdigit() \
            else None
    if isinstance(cell, bytes | bytearray):
        cell = cell.decode("utf-8", "replace")
    if isinstance(cell, str) and (cell.startswith("[") or (cell.startswith("{") and '"id"' in cell)):
        try:
            return _key_of(json.loads(cell))
        except ValueError:
            return None
    return None
