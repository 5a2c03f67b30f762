"""Master-master: a key change of a TOASTed row that is gone when its source re-reads it.

A PostgreSQL table under ``REPLICA IDENTITY DEFAULT`` (``cdc check`` warns
about it in master-master, but it runs) sends no unchanged TOAST value in an
update, so a primary-key change that leaves a TOASTed column alone is re-read
by the source by its new key (connectors/postgres/source/changes.py). When a
later transaction has deleted the row by then, the source publishes the key
change as a delete of the old key and a delete of the new key, and the real
delete of the new key follows. Two ways to make the re-read certainly find
nothing: the key change and the delete in one transaction, and in two
transactions while node A's source process is held (SIGSTOP, then SIGCONT).

Both nodes must end with the same rows (compared by checksum), and neither node's conflict log may hold a conflict: the
writes are all node A's, one after another, and no other node wrote the
table. The second delete of the new key lands on the entry of the first
(node A's own delete), which is not a ``delete_missing``.
"""

from __future__ import annotations

import secrets
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.e2e.mm_nodes import NS, Node
from tests.e2e.test_master_master import (
    Mesh,
    _cleanup,
    _pipeline,
    _published,
    _wait_equal,
)
from tests.fixtures.processes import processes, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]  # (a loaded machine)


def _create_default_identity(n: Node, table: str) -> None:
    """``mm.<table>`` (id, v text, n) under REPLICA IDENTITY DEFAULT: ``v`` can be TOASTed."""
    n.run(f"CREATE SCHEMA IF NOT EXISTS {NS}")
    n.run(f"DROP TABLE IF EXISTS {NS}.{table}")
    n.run(f"CREATE TABLE {NS}.{table} (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL)")


def _checksum(n: Node, table: str) -> tuple[int, str]:
    got = n.run(f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY id)), '') "
                f"FROM {NS}.{table} t")
    return int(got[0][0]), str(got[0][1])


def _conflicts(n: Node, table: str) -> list[tuple[Any, ...]]:
    return n.run("SELECT conflict_type, row_key, decision, local_origin, remote_origin "
                 "FROM cdc_conflicts WHERE table_name = %s ORDER BY detected_at",
                 (f"{NS}.{table}",))


def _has_version(n: Node, table: str, key: int) -> bool:
    """Whether ``n``'s sink has recorded a version of ``key`` (it consumed that write)."""
    return bool(n.run("SELECT 1 FROM cdc_row_versions WHERE table_name = %s AND row_key = %s",
                      (f"{NS}.{table}", f"[{key}]")))


def test_toast_key_change_of_a_row_gone_at_reread_converges_without_conflicts(
        tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str,
        pg_replica_dsn: str, unique_name: str) -> None:
    run = "mt" + unique_name[-7:]
    a = Node(f"{run}_a", "postgres", pg_source_dsn)
    b = Node(f"{run}_b", "postgres", pg_replica_dsn)
    nodes, table = [a, b], unique_name
    for n in nodes:
        n.cleanup()
        _create_default_identity(n, table)
    config = _pipeline(run, kafka_bootstrap, schema_registry_url, nodes, table)
    config["kafka"]["topics"]["partitions"] = 1  # one partition: a later record means all earlier
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    big = secrets.token_hex(8_000)  # 16 kB of random hex: stored out of line, not compressible
    try:
        with processes(tmp_path) as procs:
            mesh = Mesh(procs, path, nodes)
            mesh.start_all(table)
            a.insert(table, 1, big)
            a.insert(table, 3, big[::-1])
            _wait_equal(nodes, table, 120, procs, {1: (big, 0), 3: (big[::-1], 0)})
            assert a.run(f"SELECT bool_and(pg_column_size(v) > 2000) FROM {NS}.{table}")[0][0]

            # One transaction: the re-read (after the commit) finds nothing by key 2.
            with psycopg.connect(a.url, autocommit=False) as conn:
                conn.execute(f"UPDATE {NS}.{table} SET id = 2 WHERE id = 1")  # v unchanged
                conn.execute(f"DELETE FROM {NS}.{table} WHERE id = 2")
            # Two transactions, node A's source held in between: its re-read of key 4
            # happens after the delete.
            source = mesh.sources[a.name]
            source.send_signal(signal.SIGSTOP)
            try:
                a.run(f"UPDATE {NS}.{table} SET id = 4 WHERE id = 3")
                a.delete(table, 4)
            finally:
                source.send_signal(signal.SIGCONT)
            a.insert(table, 10, "marker a")
            b.insert(table, 11, "marker b")
            _wait_equal(nodes, table, 180, procs, {10: ("marker a", 0), 11: ("marker b", 0)})
            # Every record of A's topic (one partition) is consumed by both sinks once the
            # marker after them is (B's sink applies it, A's sink reads its own topic).
            wait_for("both sinks to consume A's marker",
                     lambda: all(_has_version(n, table, 10) for n in nodes), 120,
                     procs.all_logs)
            assert mesh.running(), procs.all_logs()

            published = _published(kafka_bootstrap, schema_registry_url, f"{a.name}.{NS}.{table}")
            # the re-read found nothing: the key change is a delete of each key
            assert published == [("c", 1), ("c", 3), ("d", 1), ("d", 2), ("d", 2),
                                 ("d", 3), ("d", 4), ("d", 4), ("c", 10)], published
            sums = [_checksum(n, table) for n in nodes]
            assert sums[0] == sums[1], sums
            logged = {n.name: _conflicts(n, table) for n in nodes}
            assert logged == {a.name: [], b.name: []}, logged
    finally:
        _cleanup(nodes, table)
