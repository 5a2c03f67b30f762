"""Sink workers end to end: Kafka + registry + replicas, real consumer groups.

Events are produced with the real serde and producer (as the sources will)
to multi-partition topics; workers run in threads, or as processes where a
test kills them with SIGKILL.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from cdc.events import ChangeEvent, Op
from cdc.serde import AvroSerde, RegistryClient, frame_prefix
from cdc.sink.applier import SinkFailure
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
    produce_raw,
    read_topic,
    sink_entry,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


class Workload:
    """A versioned workload: every change carries a new, larger ``v``.

    Key changes stay within a partition: a source sends a key change as one
    update keyed by the new key, so a change across partitions could race
    with the old key's other changes (see docs/SINK.md).
    """

    def __init__(self, f: EventFactory, serde: AvroSerde, partitions: int, seed: int) -> None:
        self.f = f
        self.serde = serde
        self.partitions = partitions
        self.rng = random.Random(seed)
        self.rows: dict[int, dict[str, Any]] = {}
        self.v = 0
        self.retired: set[int] = set()  # moved-away keys are never reused
        self.fresh = 1_000_000

    def part(self, key: int) -> int:
        ev = self.f.event(Op.CREATE, after={"id": key, "v": 0, "label": "", "big": ""}, last=False)
        k = self.serde.encode(ev).key
        assert k is not None
        return zlib.crc32(k) % self.partitions

    def events(self, n: int, keys: int = 300) -> list[ChangeEvent]:
        out: list[ChangeEvent] = []
        f, rng = self.f, self.rng
        while len(out) < n:
            self.v += 1
            v = self.v
            existing = sorted(self.rows)
            r = rng.random()
            if r < 0.35 or not existing:
                k = rng.randrange(keys)
                if k in self.retired:
                    k = self.fresh
                    self.fresh += 1
                row = {"id": k, "v": v, "label": f"l{v}", "big": "B" * rng.randrange(1, 40)}
                out.append(f.event(Op.CREATE if k not in self.rows else Op.UPDATE, after=row))
                self.rows[k] = row
            elif r < 0.65:
                k = rng.choice(existing)
                row = {**self.rows[k], "v": v}
                if rng.random() < 0.3:
                    out.append(f.event(Op.UPDATE, after={c: x for c, x in row.items() if c != "big"},
                                       unchanged=["big"]))
                else:
                    out.append(f.event(Op.UPDATE, after=row))
                self.rows[k] = row
            elif r < 0.85:
                k = rng.choice(existing)
                out.append(f.event(Op.DELETE, before=self.rows.pop(k)))
            else:
                k = rng.choice(existing)
                p = self.part(k)
                while self.part(self.fresh) != p:
                    self.fresh += 1
                new = self.fresh
                self.fresh += 1
                row = {**self.rows.pop(k), "id": new, "v": v}
                self.retired.add(k)
                out.append(f.event(Op.UPDATE, after=row, before={"id": k}))
                self.rows[new] = row
        return out


class Monitor:
    """Samples the replica and records any row whose version went backwards."""

    def __init__(self, session: SinkSession, table: str) -> None:
        self.session = session
        self.table = table
        self.seen: dict[int, int] = {}
        self.backwards: list[tuple[int, int, int]] = []
        self.stop = threading.Event()
        self.samples = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sql = f"SELECT id, v FROM {self.session.dialect.table_sql(TableName(None, self.table))}"
        while not self.stop.is_set():
            try:
                rows = self.session.query(sql)
                self.session.rollback()
            except Exception:  # table not created yet, or replica restarting
                self.session.rollback()
                time.sleep(0.1)
                continue
            self.samples += 1
            for k, v in rows:
                last = self.seen.get(k)
                if last is not None and v < last:
                    self.backwards.append((k, last, v))
                self.seen[k] = v
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture()
def serde(registry: RegistryClient) -> AvroSerde:
    return AvroSerde(registry)


def _session(kind: str, dsn: str, name: str) -> SinkSession:
    cfg = sink_config(kind, dsn, name, ["x"])
    return dialect_for(kind).connect(cfg)


def _spawn(config: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.sink.run_worker", str(config), name],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill9_mid_stream_then_restart_equals_the_model(
        kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
        serde: AvroSerde, unique_name: str, tmp_path: Path) -> None:
    parts = 3
    f = EventFactory(items_schema(unique_name), prefix=unique_name)
    topic = f"{unique_name}.public.{unique_name}"
    ensure_topic(kafka_bootstrap, topic, parts)
    w = Workload(f, serde, parts, seed=11)
    produce(kafka_bootstrap, serde, w.events(6000), parts)
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        sink_entry("kill", "postgres", pg_replica_dsn, [topic], consumer_group=f"g_{unique_name}",
                   batch={"max_rows": 100, "max_wait_ms": 20})])
    session = _session("postgres", pg_replica_dsn, "kill")
    drop_tables(session, unique_name)
    monitor = Monitor(_session("postgres", pg_replica_dsn, "mon"), unique_name)
    try:
        first = _spawn(config, "kill")
        assert first.stdout is not None
        batches, wanted = 0, random.randint(10, 30)
        while batches < wanted:
            line = first.stdout.readline()
            assert line, first.stderr.read() if first.stderr else "worker exited"
            batches += line.startswith("batch")
        time.sleep(random.uniform(0, 0.05))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        applied_before = read_rows(session, unique_name)
        assert applied_before != w.rows  # killed mid-stream
        # More events arrive while it is down, then a new process resumes.
        produce(kafka_bootstrap, serde, w.events(1500), parts)
        ends = end_offsets(kafka_bootstrap, topic, parts)
        second = _spawn(config, "kill")
        try:
            wait_until("the restarted worker to catch up",
                       caught_up(session, f"g_{unique_name}", topic, ends), timeout=60)
        finally:
            second.send_signal(signal.SIGTERM)
            _out, err = second.communicate(timeout=30)
        assert second.returncode == 0, err
        assert read_rows(session, unique_name) == w.rows
    finally:
        monitor.close()
        drop_tables(session, unique_name)
        session.close()
    assert monitor.samples > 5
    assert monitor.backwards == []


def test_replays_at_new_offsets_are_skipped_and_new_events_apply(
        kafka_bootstrap: str, schema_registry_url: str, mysql_replica_url: str,
        serde: AvroSerde, unique_name: str, tmp_path: Path) -> None:
    parts = 2
    f = EventFactory(items_schema(unique_name), prefix=unique_name)
    topic = f"{unique_name}.public.{unique_name}"
    ensure_topic(kafka_bootstrap, topic, parts)
    w = Workload(f, serde, parts, seed=5)
    first = w.events(800)
    produce(kafka_bootstrap, serde, first, parts)
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        sink_entry("replay", "mysql", mysql_replica_url, [topic], consumer_group=f"g_{unique_name}")])
    session = _session("mysql", mysql_replica_url, "replay")
    drop_tables(session, unique_name)
    worker = ThreadWorker(config, "replay")
    try:
        wait_until("first pass", caught_up(session, f"g_{unique_name}", topic,
                                           end_offsets(kafka_bootstrap, topic, parts)))
        assert read_rows(session, unique_name) == w.rows
        # A restarted source re-publishes an older slice (same positions, new offsets),
        # then continues with new events.
        produce(kafka_bootstrap, serde, first[300:], parts)
        produce(kafka_bootstrap, serde, w.events(200), parts)
        wait_until("second pass", caught_up(session, f"g_{unique_name}", topic,
                                            end_offsets(kafka_bootstrap, topic, parts)))
        assert read_rows(session, unique_name) == w.rows
        assert worker.worker.stats.skipped >= 500
    finally:
        worker.close()
        drop_tables(session, unique_name)
        session.close()
    assert worker.error is None


def test_three_sinks_progress_independently(
        kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
        mysql_replica_url: str, serde: AvroSerde, unique_name: str, tmp_path: Path) -> None:
    parts = 2
    f = EventFactory(items_schema(unique_name), prefix=unique_name)
    topic = f"{unique_name}.public.{unique_name}"
    ensure_topic(kafka_bootstrap, topic, parts)
    w = Workload(f, serde, parts, seed=3)
    produce(kafka_bootstrap, serde, w.events(600), parts)
    other_schema = f"s_{unique_name}"[:60]
    copy = f"{unique_name}_copy"
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        sink_entry("pg_a", "postgres", pg_replica_dsn, [topic], consumer_group=f"a_{unique_name}"),
        sink_entry("pg_b", "postgres", pg_replica_dsn, [f"{unique_name}.public.*"],
                   consumer_group=f"b_{unique_name}", target_schema=other_schema,
                   tables={"name_map": {topic: copy}}),
        sink_entry("my_c", "mysql", mysql_replica_url, [topic], consumer_group=f"c_{unique_name}"),
    ])
    pg = _session("postgres", pg_replica_dsn, "a")
    my = _session("mysql", mysql_replica_url, "c")
    drop_tables(pg, unique_name)
    drop_tables(my, unique_name)

    def pg_b_rows() -> dict[int, dict[str, Any]]:
        rows = pg.query(f'SELECT id, v, label, big FROM "{other_schema}"."{copy}"')
        pg.rollback()
        return {r[0]: {"id": r[0], "v": r[1], "label": r[2], "big": r[3]} for r in rows}

    workers = {n: ThreadWorker(config, n) for n in ("pg_a", "pg_b", "my_c")}
    try:
        ends = end_offsets(kafka_bootstrap, topic, parts)
        for group, sess, sch in ((f"a_{unique_name}", pg, None), (f"b_{unique_name}", pg, other_schema),
                                 (f"c_{unique_name}", my, None)):
            wait_until(f"{group} to catch up", caught_up(sess, group, topic, ends, sch),
                       also=lambda: [wk.check() for wk in workers.values()] and None)
        workers.pop("my_c").close()  # the MariaDB replica's sink stops...
        produce(kafka_bootstrap, serde, w.events(400), parts)
        ends = end_offsets(kafka_bootstrap, topic, parts)
        wait_until("pg_a", caught_up(pg, f"a_{unique_name}", topic, ends))
        wait_until("pg_b", caught_up(pg, f"b_{unique_name}", topic, ends, other_schema))
        assert read_rows(pg, unique_name) == w.rows
        assert pg_b_rows() == w.rows
        assert read_rows(my, unique_name) != w.rows  # ...and falls behind, alone
        workers["my_c"] = ThreadWorker(config, "my_c")  # restarted: it catches up
        wait_until("my_c", caught_up(my, f"c_{unique_name}", topic, ends))
        assert read_rows(my, unique_name) == w.rows
    finally:
        for wk in workers.values():
            wk.close()
        drop_tables(pg, unique_name)
        drop_tables(my, unique_name)
        pg.execute_ddl([f'DROP SCHEMA IF EXISTS "{other_schema}" CASCADE'])
        pg.close()
        my.close()
    assert all(wk.error is None for wk in workers.values())


def test_batches_adapt_a_backlog_in_full_batches_a_trickle_at_once(
        kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
        serde: AvroSerde, unique_name: str, tmp_path: Path) -> None:
    # max_wait_ms is ten minutes: only the adaptive cut (the consumer has nothing more
    # fetched) can apply the trickle within the wait below (issue #15).
    parts = 2
    f = EventFactory(items_schema(unique_name), prefix=unique_name)
    topic = f"{unique_name}.public.{unique_name}"
    ensure_topic(kafka_bootstrap, topic, parts)
    w = Workload(f, serde, parts, seed=17)
    produce(kafka_bootstrap, serde, w.events(3000), parts)
    group = f"g_{unique_name}"
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        sink_entry("adapt", "postgres", pg_replica_dsn, [topic], consumer_group=group,
                   batch={"max_rows": 500, "max_wait_ms": 600_000})])
    session = _session("postgres", pg_replica_dsn, "adapt")
    drop_tables(session, unique_name)
    worker = ThreadWorker(config, "adapt")
    try:
        wait_until("the backlog applied", caught_up(
            session, group, topic, end_offsets(kafka_bootstrap, topic, parts)),
            also=worker.check)
        assert read_rows(session, unique_name) == w.rows
        stats = worker.worker.stats
        # 3,000 records in batches of at most 500: full batches, not one per fetch.
        assert stats.applied + stats.skipped <= 3000
        assert stats.batches <= 12, stats
        for _ in range(3):  # a trickle: each few records applied long before max_wait
            produce(kafka_bootstrap, serde, w.events(5), parts)
            wait_until("a trickle applied", caught_up(
                session, group, topic, end_offsets(kafka_bootstrap, topic, parts)),
                timeout=60, also=worker.check)
            assert read_rows(session, unique_name) == w.rows
    finally:
        worker.close()
        drop_tables(session, unique_name)
        session.close()
    worker.check()


def test_transactional_mode_applies_source_transactions_atomically(
        kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
        serde: AvroSerde, unique_name: str, tmp_path: Path) -> None:
    f = EventFactory(items_schema(unique_name), prefix=unique_name)
    topic = f"{unique_name}.public.{unique_name}"
    ensure_topic(kafka_bootstrap, topic, 1)
    tx_rows, txs = 7, 40
    events = []
    for t in range(txs):  # transaction t writes keys t*7 .. t*7+6, all with v = t
        for i in range(tx_rows):
            events.append(f.event(Op.CREATE, after={"id": t * tx_rows + i, "v": t, "label": "x",
                                                    "big": "b"}, index=i, last=i == tx_rows - 1))
    produce(kafka_bootstrap, serde, events, 1)
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        sink_entry("txn", "postgres", pg_replica_dsn, [topic], consumer_group=f"g_{unique_name}",
                   batch={"max_rows": 3, "max_wait_ms": 10})])
    session = _session("postgres", pg_replica_dsn, "txn")
    drop_tables(session, unique_name)
    seen_partial: list[dict[int, int]] = []
    stop = threading.Event()

    def watch() -> None:  # every sample must hold whole transactions only
        s = _session("postgres", pg_replica_dsn, "watch")
        try:
            while not stop.is_set():
                try:
                    rows = s.query(f'SELECT v, count(*) FROM "{unique_name}" GROUP BY v')
                except Exception:
                    rows = []
                s.rollback()
                partial = {v: n for v, n in rows if n != tx_rows}
                if partial:
                    seen_partial.append(partial)
                time.sleep(0.01)
        finally:
            s.close()

    def transactional(w: Any) -> None:
        w.applier.settings = dataclasses.replace(w.applier.settings, transactional=True)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    worker = ThreadWorker(config, "txn", prepare=transactional)
    try:
        wait_until("all transactions", caught_up(session, f"g_{unique_name}", topic,
                                                 {0: len(events)}), also=worker.check)
        assert len(read_rows(session, unique_name)) == tx_rows * txs
        assert worker.worker.stats.batches <= txs + 5  # cut at tx ends (not every 3 rows)
    finally:
        stop.set()
        watcher.join(10)
        worker.close()
        drop_tables(session, unique_name)
        session.close()
    assert seen_partial == []


def _poison(serde: AvroSerde, f: EventFactory) -> tuple[list[tuple[bytes | None, bytes | None]], list[int]]:
    """Good records with three bad ones among them; returns the records and the bad offsets."""
    out: list[tuple[bytes | None, bytes | None]] = []
    bad = []
    for i in range(10):
        if i == 3:
            bad.append(len(out))
            out.append((None, b"garbage, not Avro"))
        if i == 5:
            bad.append(len(out))
            out.append((None, frame_prefix(987_654_321) + b"\x00\x02"))  # unknown schema id
        label = "x" * 60 if i == 7 else f"ok{i}"  # too long for varchar(40)
        if i == 7:
            bad.append(len(out))
        enc = serde.encode(f.event(Op.CREATE, after={"id": i, "v": i, "label": label, "big": "b"}))
        out.append((enc.key, enc.value))
    return out, bad


def test_poison_messages_go_to_the_dead_letter_queue(
        kafka_bootstrap: str, schema_registry_url: str, pg_replica_dsn: str,
        serde: AvroSerde, unique_name: str, tmp_path: Path) -> None:
    f = EventFactory(items_schema(unique_name), prefix=unique_name)
    topic = f"{unique_name}.public.{unique_name}"
    dlq = f"{unique_name}.dlq"
    ensure_topic(kafka_bootstrap, topic, 1)
    records, bad = _poison(serde, f)
    produce_raw(kafka_bootstrap, topic, records)
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        sink_entry("poison", "postgres", pg_replica_dsn, [topic], consumer_group=f"g_{unique_name}",
                   errors={"policy": "dead_letter", "dead_letter_topic": dlq})])
    session = _session("postgres", pg_replica_dsn, "poison")
    drop_tables(session, unique_name)
    # The replica's column is narrower than the source's: the database refuses row 7.
    session.execute_ddl([f'CREATE TABLE "{unique_name}" (id bigint PRIMARY KEY, v bigint, '
                         f'label varchar(40), big text)'])
    worker = ThreadWorker(config, "poison")
    try:
        wait_until("the batch", caught_up(session, f"g_{unique_name}", topic, {0: len(records)}))
        assert sorted(read_rows(session, unique_name)) == [0, 1, 2, 3, 4, 5, 6, 8, 9]
        letters = read_topic(kafka_bootstrap, dlq)
        assert len(letters) == 3
        by_offset = {int(dict(m.headers())["cdc.offset"]): m for m in letters}
        assert sorted(by_offset) == bad
        for off, m in by_offset.items():
            h = dict(m.headers())
            assert h["cdc.topic"] == topic.encode() and h["cdc.partition"] == b"0"
            assert h["cdc.error"] and m.value() == records[off][1] and m.key() == records[off][0]
        kinds = {dict(m.headers())["cdc.error.kind"] for m in letters}
        assert kinds == {b"decode", b"apply"}
        # The worker carries on with later records.
        enc = serde.encode(f.event(Op.CREATE, after={"id": 50, "v": 1, "label": "late", "big": "b"}))
        produce_raw(kafka_bootstrap, topic, [(enc.key, enc.value)])
        wait_until("the late record", lambda: 50 in read_rows(session, unique_name))
    finally:
        worker.close()
        drop_tables(session, unique_name)
        session.close()
    assert worker.error is None


def test_fail_policy_stops_with_a_clear_message(
        kafka_bootstrap: str, schema_registry_url: str, mysql_replica_url: str,
        serde: AvroSerde, unique_name: str, tmp_path: Path) -> None:
    f = EventFactory(items_schema(unique_name), prefix=unique_name)
    topic = f"{unique_name}.public.{unique_name}"
    ensure_topic(kafka_bootstrap, topic, 1)
    records, bad = _poison(serde, f)
    produce_raw(kafka_bootstrap, topic, records)
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        sink_entry("failing", "mysql", mysql_replica_url, [topic], consumer_group=f"g_{unique_name}")])
    session = _session("mysql", mysql_replica_url, "failing")
    drop_tables(session, unique_name)
    worker = ThreadWorker(config, "failing")
    try:
        worker.thread.join(60)
        assert not worker.thread.is_alive()
        assert isinstance(worker.error, SinkFailure)
        msg = str(worker.error)
        assert f"{topic}[0]@{bad[0]}" in msg and "policy is fail" in msg
        assert sorted(read_rows(session, unique_name)) == [0, 1, 2]
        assert caught_up(session, f"g_{unique_name}", topic, {0: bad[0]})()
    finally:
        worker.close()
        drop_tables(session, unique_name)
        session.close()


def test_replica_restart_mid_stream_waits_and_resumes(
        kafka_bootstrap: str, schema_registry_url: str, mysql_replica_url: str,
        serde: AvroSerde, unique_name: str, tmp_path: Path) -> None:
    parts = 2
    f = EventFactory(items_schema(unique_name), prefix=unique_name)
    topic = f"{unique_name}.public.{unique_name}"
    ensure_topic(kafka_bootstrap, topic, parts)
    w = Workload(f, serde, parts, seed=17)
    produce(kafka_bootstrap, serde, w.events(1500), parts)
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, schema_registry_url, [
        sink_entry("restart", "mysql", mysql_replica_url, [topic], consumer_group=f"g_{unique_name}",
                   batch={"max_rows": 50, "max_wait_ms": 20})])
    session = _session("mysql", mysql_replica_url, "restart")
    drop_tables(session, unique_name)
    session.close()
    worker = ThreadWorker(config, "restart")
    try:
        wait_until("some batches", lambda: worker.worker.stats.batches >= 5)
        subprocess.run([sys.executable, str(ROOT / "deploy/local/stack.py"), "restart",
                        "mysql-replica"], check=True, capture_output=True, timeout=120)
        produce(kafka_bootstrap, serde, w.events(500), parts)
        ends = end_offsets(kafka_bootstrap, topic, parts)
        session = _session("mysql", mysql_replica_url, "restart")
        wait_until("catch up after the restart",
                   caught_up(session, f"g_{unique_name}", topic, ends), timeout=90)
        assert read_rows(session, unique_name) == w.rows
        assert worker.worker.stats.retries >= 1
    finally:
        worker.close()
        s = _session("mysql", mysql_replica_url, "restart")
        drop_tables(s, unique_name)
        s.close()
    assert worker.error is None
