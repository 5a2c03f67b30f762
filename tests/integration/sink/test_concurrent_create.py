"""Workers of one sink creating the same replica table at the same moment.

``cdc sink --workers N`` shares a sink's partitions among N processes, so two of them
meet a new table, or a fresh replica's checkpoint table, at once. PostgreSQL fails the
second ``CREATE TABLE IF NOT EXISTS`` of a name with a unique violation on its catalog
(it did in 28 of 30 raced pairs), which the dialect classifies as bad data: the
record went to the dead letter queue, or the worker stopped. Here two real sessions
start together (a barrier) on new tables, each with a change of its own partition:
both must apply, with no dead letter, no error, and both rows in the replica.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from cdc.events import Op
from cdc.serde import RegistryClient
from cdc.sink.checkpoint import CheckpointStore
from cdc.spi import TableName
from tests.integration.sink.helpers import ApplierHarness, EventFactory, drop_tables, items_schema

pytestmark = pytest.mark.integration

ROUNDS = 8


def _together(*calls: Callable[[], Any]) -> list[BaseException]:
    """Run ``calls`` on threads released at once; the exceptions they raised."""
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as e:  # (reported by the test)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_two_workers_creating_one_new_table_both_apply(
    replica: tuple[str, str], registry: RegistryClient, unique_name: str,
) -> None:
    kind, dsn = replica
    tables = [f"{unique_name}_c{i}" for i in range(ROUNDS)]
    topics = [f"src.public.{t}" for t in tables]
    workers = [ApplierHarness(kind, dsn, registry, unique_name, topics, partitions=2)
               for _ in range(2)]
    try:
        drop_tables(workers[0].session, *tables)
        for table in tables:
            factory = EventFactory(items_schema(table))
            events = [factory.event(Op.CREATE, after={"id": i, "v": i, "label": "x", "big": "b"})
                      for i in (1, 2)]
            results: list[Any] = []
            errors = _together(*[
                (lambda w=w, i=i, e=events[i], out=results: out.append(w.apply([e], partition=i)))
                for i, w in enumerate(workers)])
            assert not errors, errors
            assert all(r.failure is None and not r.dead_letters for r in results), results
            rows = workers[0].session.query(
                f"SELECT id FROM {workers[0].session.dialect.table_sql(TableName(None, table))} "
                "ORDER BY id")
            assert [r[0] for r in rows] == [1, 2], (table, rows)
    finally:
        drop_tables(workers[0].session, *tables)
        for w in workers:
            w.close()


def test_two_workers_creating_the_checkpoint_table_both_start(
    replica: tuple[str, str], unique_name: str,
) -> None:
    kind, dsn = replica
    from tests.integration.sink.helpers import dialect_for, sink_config

    dialect = dialect_for(kind)
    config = sink_config(kind, dsn, unique_name, ["t"])
    sessions = [dialect.connect(config) for _ in range(2)]
    schema = dialect.default_schema(config)
    names = [TableName(schema, f"{unique_name}_ck{i}") for i in range(ROUNDS)]
    try:
        for name in names:
            stores = [CheckpointStore(name, "g") for _ in sessions]
            errors = _together(*[(lambda s=s, st=st: st.ensure_table(s))
                                 for s, st in zip(sessions, stores, strict=True)])
            assert not errors, errors
            assert all(s.describe(name) is not None for s in sessions)
    finally:
        sessions[0].execute_ddl([f"DROP TABLE IF EXISTS {dialect.table_sql(n)}" for n in names])
        for s in sessions:
            s.close()
