"""Master-master conflict handling end to end, on both replica dialects.

Node ``a`` is the replica; its sink consumes node ``b``'s topic (remote writes)
and node ``a``'s own topic (local writes, learnt). Records are produced to Kafka
with cdc's own encoder; each conflict type is provoked deterministically, and
the replica rows, the version table, the ``cdc_conflicts`` rows, the conflict
topic and the ``cdc_sink_conflicts_total`` metric are checked. A kill -9 mid-batch
over existing version and conflict tables loses nothing and logs nothing twice,
and retention purges old conflict rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdc.events import ChangeEvent, Op
from cdc.observability.sink_metrics import SinkCollector
from cdc.serde import AvroSerde, RegistryClient
from cdc.sink.versionstore import VersionStore
from cdc.spi import SinkSession, TableName
from tests.integration.sink.helpers import (
    EventFactory,
    dialect_for,
    drop_tables,
    items_schema,
    read_rows,
    sink_config,
)
from tests.integration.sink.kafka_helpers import (
    ThreadWorker,
    caught_up,
    end_offsets,
    ensure_topic,
    produce,
    read_topic,
    sink_entry,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture()
def serde(registry: RegistryClient) -> AvroSerde:
    return AvroSerde(registry)


def _at(ev: ChangeEvent, ts_ms: int) -> ChangeEvent:
    """``ev`` committed at ``ts_ms`` on its origin."""
    return dataclasses.replace(ev, source=dataclasses.replace(ev.source, ts_ms=ts_ms))


def _row(k: int, v: int, by: str) -> dict[str, Any]:
    return {"id": k, "v": v, "label": by, "big": f"{by}-{k}"}


class Scene:
    """Names and factories of one test: node a (the replica) and node b (remote)."""

    def __init__(self, unique: str, kind: str, dsn: str) -> None:
        self.kind, self.dsn = kind, dsn
        n = unique.rsplit("_", 1)[-1]
        self.table = f"mmt_{n}"
        self.node_a, self.node_b = f"mma_{n}", f"mmb_{n}"
        schema = items_schema(self.table)
        self.own = EventFactory(schema, prefix=self.node_a)
        self.remote = EventFactory(schema, prefix=self.node_b, lsn=50_000)
        self.own_topic = f"{self.node_a}.public.{self.table}"
        self.remote_topic = f"{self.node_b}.public.{self.table}"
        self.sink = f"mms_{n}"
        self.versions = f"mmv_{n}"
        self.conflicts = f"mmc_{n}"
        self.conflict_topic = f"cdc_conflicts.{self.sink}"
        self.group = f"g_{unique}"

    def entry(self, **extra: Any) -> dict[str, Any]:
        return sink_entry(
            self.sink, self.kind, self.dsn, [self.remote_topic], consumer_group=self.group,
            origin=self.node_a,
            conflicts={"own_topics": [self.own_topic], "versions_table": self.versions,
                       "log": {"table": self.conflicts}, **extra})

    def session(self) -> SinkSession:
        return dialect_for(self.kind).connect(sink_config(self.kind, self.dsn, "mmc", ["x"]))

    def cleanup(self, session: SinkSession) -> None:
        drop_tables(session, self.table, self.versions, self.conflicts)
        if self.kind == "postgres":
            self._drop_origins()

    def _drop_origins(self) -> None:
        """The sink's replication origins hold a server slot each until dropped (PostgreSQL 18
        allows 10 by default): a long-lived stack would refuse sinks after a few runs."""
        deadline = time.monotonic() + 30
        with psycopg.connect(self.dsn, autocommit=True) as c:
            while True:
                try:
                    c.execute("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin "
                              "WHERE roname = %s OR roname LIKE %s",
                              (f"cdc_{self.node_a}", f"cdc_{self.node_a}#%"))
                    return
                except psycopg.errors.ObjectInUse:  # the sink's backend is still exiting
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)


def _conflict_rows(session: SinkSession, scene: Scene) -> list[tuple[Any, ...]]:
    t = session.dialect.table_sql(TableName(None, scene.conflicts))
    rows = session.query(f"SELECT row_key, conflict_type, decision, local_origin, remote_origin, "
                         f"published, id FROM {t} ORDER BY row_key, conflict_type")
    session.rollback()
    return [(json.loads(r[0])[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in rows]


def _versions(session: SinkSession, scene: Scene) -> dict[int, tuple[str, int, bool]]:
    t = session.dialect.table_sql(TableName(None, scene.versions))
    rows = session.query(f"SELECT row_key, node, ts_ms, deleted FROM {t}")
    session.rollback()
    return {json.loads(r[0])[0]: (r[1], int(r[2]), bool(r[3])) for r in rows}


def _wait_applied(session: SinkSession, scene: Scene, bootstrap: str, topic: str,
                  worker: ThreadWorker | None = None) -> None:
    ends = end_offsets(bootstrap, topic, 1)
    check = caught_up(session, scene.group, topic, ends)

    def done() -> bool:
        if worker is not None:
            worker.check()
        return check()

    wait_until(f"{topic} applied", done, timeout=60)


def test_each_conflict_type_is_detected_resolved_and_logged(
        kafka_bootstrap: str, schema_registry_url: str, replica: tuple[str, str],
        serde: AvroSerde, unique_name: str, tmp_path: Path) -> None:
    kind, dsn = replica
    s = Scene(unique_name, kind, dsn)
    session = s.session()
    s.cleanup(session)
    for t in (s.own_topic, s.remote_topic):
        ensure_topic(kafka_bootstrap, t, 1)
    t0 = int(time.time() * 1000) - 60_000
    a, b = s.node_a, s.node_b
    # Node a's own writes (the app wrote them; the sink learns their versions).
    own = [_at(s.own.event(Op.CREATE, after=_row(k, 1, a)), t0) for k in range(1, 7)]
    own += [_at(s.own.event(Op.DELETE, before=_row(k, 1, a)), t0 + 10) for k in (3, 5)]
    produce(kafka_bootstrap, serde, own, 1)
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [s.entry()])
    worker = ThreadWorker(config, s.sink)
    try:
        _wait_applied(session, s, kafka_bootstrap, s.own_topic, worker)
        # The sink learnt the versions and re-applied nothing (the app holds its rows)...
        assert read_rows(session, s.table) == {}
        _app_write(session, s, [_row(k, 1, a) for k in (1, 2, 4, 6)])  # ...which it wrote
        assert _conflict_rows(session, s) == []
        # Node b's writes, each made before node a's changes reached it.
        remote = [
            # insert_exists: b inserted 1 too, later: b wins.
            _at(s.remote.event(Op.CREATE, after=_row(1, 2, b)), t0 + 1000),
            # update_origin_differs: b updated 2 from another image, earlier: a's row stays.
            _at(s.remote.event(Op.UPDATE, before=_row(2, 9, b), after=_row(2, 3, b)), t0 - 1000),
            # update_missing: a deleted 3 after b updated it: the delete stands.
            _at(s.remote.event(Op.UPDATE, before=_row(3, 1, a), after=_row(3, 4, b)), t0 + 5),
            # delete_origin_differs: b deleted 4 seen with another image, later: deleted.
            _at(s.remote.event(Op.DELETE, before=_row(4, 9, b)), t0 + 2000),
            # delete_missing: both deleted 5; b's is later.
            _at(s.remote.event(Op.DELETE, before=_row(5, 1, a)), t0 + 20),
            # causal: b updated 6 on top of a's insert: no conflict.
            _at(s.remote.event(Op.UPDATE, before=_row(6, 1, a), after=_row(6, 5, b)), t0 + 30),
            # (b inserts 7; a then updates it, with a clock behind: see below)
            _at(s.remote.event(Op.CREATE, after=_row(7, 6, b)), t0 + 3000),
        ]
        produce(kafka_bootstrap, serde, remote, 1)
        _wait_applied(session, s, kafka_bootstrap, s.remote_topic, worker)
        # The app on a updates 7 on top of b's row, but a's clock is 1 s behind: its write
        # comes before b's in the order of writes, so the sink puts b's row back.
        t = session.dialect.table_sql(TableName(None, s.table))
        session.begin()
        session.execute(f"UPDATE {t} SET v = 7, label = %s WHERE id = 7", [a])
        session.commit()
        produce(kafka_bootstrap, serde, [_at(s.own.event(
            Op.UPDATE, before=_row(7, 6, b), after={**_row(7, 7, a), "big": f"{b}-7"}),
            t0 + 2000)], 1)
        _wait_applied(session, s, kafka_bootstrap, s.own_topic, worker)
        rows = read_rows(session, s.table)
        assert rows == {1: _row(1, 2, b), 2: _row(2, 1, a), 6: _row(6, 5, b), 7: _row(7, 6, b)}
        assert _versions(session, s) == {
            1: (b, t0 + 1000, False), 2: (a, t0, False), 3: (a, t0 + 10, True),
            4: (b, t0 + 2000, True), 5: (b, t0 + 20, True), 6: (b, t0 + 30, False),
            7: (b, t0 + 3000, False)}
        expected = [
            (1, "insert_exists", "apply_remote", a, b),
            (2, "update_origin_differs", "keep_local", a, b),
            (3, "update_missing", "keep_local", a, b),
            (4, "delete_origin_differs", "apply_remote", a, b),
            (5, "delete_missing", "apply_remote", a, b),
            (7, "clock_skew", "restore", b, a),
        ]
        wait_until("conflicts published",
                   lambda: all(r[5] for r in _conflict_rows(session, s)), timeout=30)
        assert [r[:5] for r in _conflict_rows(session, s)] == expected
        records = [json.loads(m.value()) for m in read_topic(kafka_bootstrap, s.conflict_topic)]
        assert sorted((r["row_key"][0], r["conflict_type"]) for r in records) == [
            (e[0], e[1]) for e in expected]
        one = next(r for r in records if r["conflict_type"] == "insert_exists")
        assert one["remote_image"]["v"] == 2 and one["local_image"]["v"] == 1
        assert one["remote_ts_ms"] == t0 + 1000 and one["local_ts_ms"] == t0
        families = {f.name: f for f in SinkCollector(worker.worker).collect()}
        counted = {(x.labels["type"], x.labels["resolution"]): x.value
                   for x in families["cdc_sink_conflicts"].samples if x.name.endswith("_total")}
        assert counted == {(e[1], "last_writer_wins"): 1.0 for e in expected}
    finally:
        worker.close()
        s.cleanup(session)
        session.close()


def _app_write(session: SinkSession, scene: Scene, rows: list[dict[str, Any]]) -> None:
    """What the app on node a writes to its table (upsert by id)."""
    t = session.dialect.table_sql(TableName(None, scene.table))
    session.begin()
    for r in rows:
        session.execute(f"DELETE FROM {t} WHERE id = %s", [r["id"]])
        session.execute(f"INSERT INTO {t} (id, v, label, big) VALUES (%s, %s, %s, %s)",
                        [r["id"], r["v"], r["label"], r["big"]])
    session.commit()


def test_own_writes_are_reapplied_only_over_the_row_the_sink_left(
        kafka_bootstrap: str, schema_registry_url: str, replica: tuple[str, str],
        serde: AvroSerde, unique_name: str, tmp_path: Path) -> None:
    """A burst of local writes read back late must not show an earlier one again (a
    read-modify-write there would lose an update); an own write that wins over a remote
    write the sink applied meanwhile is still put back."""
    kind, dsn = replica
    s = Scene(unique_name, kind, dsn)
    session = s.session()
    s.cleanup(session)
    for t in (s.own_topic, s.remote_topic):
        ensure_topic(kafka_bootstrap, t, 1)
    t0 = int(time.time() * 1000) - 60_000
    a, b = s.node_a, s.node_b
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [s.entry()])
    worker = ThreadWorker(config, s.sink)
    try:
        # The table exists on node a (the sink creates it from a first own write).
        produce(kafka_bootstrap, serde, [_at(s.own.event(Op.CREATE, after=_row(9, 1, a)), t0)], 1)
        _wait_applied(session, s, kafka_bootstrap, s.own_topic, worker)
        # Key 1: the app inserts it and updates it twice in quick succession (v 1, 2, 3);
        # the sink has read back only the first two. Key 2: the app inserted it; b's
        # update of it arrived and was applied; the app's update of it (made before b's
        # arrived, and later) comes back after.
        _app_write(session, s, [_row(1, 3, a), _row(2, 1, a)])
        produce(kafka_bootstrap, serde, [
            _at(s.own.event(Op.CREATE, after=_row(1, 1, a)), t0 + 10),
            _at(s.own.event(Op.UPDATE, before=_row(1, 1, a), after=_row(1, 2, a)), t0 + 11),
            _at(s.own.event(Op.CREATE, after=_row(2, 1, a)), t0 + 12),
        ], 1)
        _wait_applied(session, s, kafka_bootstrap, s.own_topic, worker)
        assert read_rows(session, s.table)[1] == _row(1, 3, a)  # not v 2 again
        assert _versions(session, s)[1] == (a, t0 + 11, False)
        produce(kafka_bootstrap, serde, [_at(s.remote.event(
            Op.UPDATE, before=_row(2, 1, a), after=_row(2, 9, b)), t0 + 20)], 1)
        _wait_applied(session, s, kafka_bootstrap, s.remote_topic, worker)
        assert read_rows(session, s.table)[2] == _row(2, 9, b)
        produce(kafka_bootstrap, serde, [
            _at(s.own.event(Op.UPDATE, before=_row(1, 2, a), after=_row(1, 3, a)), t0 + 30),
            _at(s.own.event(Op.UPDATE, before=_row(2, 1, a), after=_row(2, 2, a)), t0 + 31),
        ], 1)
        _wait_applied(session, s, kafka_bootstrap, s.own_topic, worker)
        rows = read_rows(session, s.table)
        assert rows[1] == _row(1, 3, a)
        assert rows[2] == _row(2, 2, a)  # won (later) over b's, put back over it
        assert [r[:3] for r in _conflict_rows(session, s)] == [
            (2, "update_origin_differs", "reapply_local")]
    finally:
        worker.close()
        s.cleanup(session)
        session.close()


def _spawn(config: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.sink.run_worker", str(config), name],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill9_mid_batch_loses_nothing_and_logs_nothing_twice(
        kafka_bootstrap: str, schema_registry_url: str, replica: tuple[str, str],
        serde: AvroSerde, unique_name: str, tmp_path: Path) -> None:
    kind, dsn = replica
    s = Scene(unique_name, kind, dsn)
    session = s.session()
    s.cleanup(session)
    for t in (s.own_topic, s.remote_topic):
        ensure_topic(kafka_bootstrap, t, 1)
    t0 = int(time.time() * 1000) - 600_000
    a, b = s.node_a, s.node_b
    n = 3000
    own = [_at(s.own.event(Op.CREATE, after=_row(k, 1, a)), t0) for k in range(n)]
    # Every key conflicts: b inserted it too; odd keys later (b wins), even keys earlier.
    remote = [_at(s.remote.event(Op.CREATE, after=_row(k, 2, b)), t0 + (5 if k % 2 else -5))
              for k in range(n)]
    # Node a's app made its writes (the sink re-applies an own write only over its own)
    t = session.dialect.table_sql(TableName(None, s.table))
    session.begin()
    session.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, v bigint, "
                    "label varchar(40), big text)")
    session.commit()
    _app_write(session, s, [_row(k, 1, a) for k in range(n)])
    produce(kafka_bootstrap, serde, own, 1)
    produce(kafka_bootstrap, serde, remote, 1)
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        {**s.entry(), "batch": {"max_rows": 200, "max_wait_ms": 20}}])
    try:
        first = _spawn(config, s.sink)
        assert first.stdout is not None
        extra = 0  # batches since the first conflicts were committed
        while extra < 3:
            line = first.stdout.readline()
            assert line, first.stderr.read() if first.stderr else "worker exited"
            if line.startswith("batch") and (extra or _conflict_rows(session, s)):
                extra += 1
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        logged_before = len(_conflict_rows(session, s))
        assert 0 < logged_before < n
        second = _spawn(config, s.sink)
        try:
            for t in (s.own_topic, s.remote_topic):
                wait_until(f"{t} applied", caught_up(session, s.group, t,
                                                     end_offsets(kafka_bootstrap, t, 1)), 120)
        finally:
            second.send_signal(signal.SIGTERM)
            _out, err = second.communicate(timeout=30)
        assert second.returncode == 0, err
        rows = read_rows(session, s.table)
        assert rows == {k: _row(k, 2, b) if k % 2 else _row(k, 1, a) for k in range(n)}
        logged = _conflict_rows(session, s)
        assert len(logged) == n and len({r[6] for r in logged}) == n
        assert {r[0] for r in logged} == set(range(n))
        records = [json.loads(m.value()) for m in read_topic(kafka_bootstrap, s.conflict_topic)]
        assert {r["id"] for r in records} == {r[6].strip() for r in logged}  # none lost
    finally:
        s.cleanup(session)
        session.close()


def test_retention_purges_old_conflict_rows(replica: tuple[str, str], unique_name: str) -> None:
    kind, dsn = replica
    s = Scene(unique_name, kind, dsn)
    session = s.session()
    s.cleanup(session)
    store = VersionStore(TableName(None, s.versions), TableName(None, s.conflicts), s.sink)
    try:
        store.ensure_tables(session)
        from cdc.sink.versions import Version
        from cdc.sink.versionstore import ConflictRecord, utc_now

        now = utc_now()
        records = [ConflictRecord.make(s.sink, s.table, f"[{k}]", "insert_exists",
                                       "last_writer_wins", "apply_remote", None,
                                       Version(k, "b", (), str(k)), None,
                                       now - dt.timedelta(hours=k * 10)) for k in range(5)]
        session.begin()
        store.log(session, records)
        store.log(session, records)  # a replay: nothing twice
        session.commit()
        session.begin()
        gone = store.purge(session, now - dt.timedelta(hours=25))
        session.commit()
        assert gone == 2
        assert sorted(r[0] for r in _conflict_rows(session, s)) == [0, 1, 2]
    finally:
        s.cleanup(session)
        session.close()
