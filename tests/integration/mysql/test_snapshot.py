"""Snapshot under concurrent writes, then the stream from its position: replaying
both must reproduce the source table exactly, with no change applied twice or
missed (every update's and delete's before-image must match the replayed row)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from cdc.events import ChangeEvent, Op
from connectors.mysql.source import MySqlSource
from tests.integration.mysql.conftest import drain

pytestmark = pytest.mark.integration

ROWS = 3000


def _writer(kwargs: dict[str, Any], table: str, stop: threading.Event, ops: list[int]) -> None:
    conn = pymysql.connect(**kwargs, autocommit=True)
    rnd = random.Random(7)
    next_id = ROWS + 1
    try:
        with conn.cursor() as cur:
            while not stop.is_set():
                r = rnd.random()
                if r < 0.4:
                    cur.execute(
                        f"UPDATE {table} SET v = v + 1, s = CONCAT(s, 'u') WHERE id = %s",
                        (rnd.randint(1, next_id),),
                    )
                elif r < 0.7:
                    cur.execute("BEGIN")
                    cur.execute(f"INSERT INTO {table} VALUES (%s, 0, 'new')", (next_id,))
                    cur.execute(
                        f"UPDATE {table} SET v = v - 1 WHERE id = %s", (rnd.randint(1, ROWS),)
                    )
                    cur.execute("COMMIT")
                    next_id += 1
                else:
                    cur.execute(f"DELETE FROM {table} WHERE id = %s", (rnd.randint(1, next_id),))
                ops[0] += 1
                time.sleep(0.001)
    finally:
        conn.close()


def _apply(state: dict[int, dict[str, Any]], e: ChangeEvent) -> None:
    assert e.key is not None
    k = e.key["id"]
    if e.op in (Op.READ, Op.CREATE):
        assert k not in state, f"{e.op} of id {k} that already exists: applied twice?"
        assert e.after is not None
        state[k] = dict(e.after)
    elif e.op is Op.UPDATE:
        assert state.get(k) == e.before, f"update of id {k}: before-image differs"
        assert e.after is not None
        state[k] = dict(e.after)
    elif e.op is Op.DELETE:
        assert state.pop(k, None) == e.before, f"delete of id {k}: before-image differs"


@pytest.mark.parametrize("lock", ["none", "global"])
def test_snapshot_under_writes_then_stream_equals_source(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    source_kwargs: dict[str, Any],
    unique_name: str,
    lock: str,
) -> None:
    t, marker = unique_name, f"{unique_name}_end"
    sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, v INT, s VARCHAR(200))")
    sql(f"CREATE TABLE {marker} (id INT PRIMARY KEY)")
    sql(f"INSERT INTO {t} SELECT seq, seq, CONCAT('s', seq) FROM seq_1_to_{ROWS}")
    src = make_source(
        include=[f"cdc_source.{t}", f"cdc_source.{marker}"], chunk_size=97, snapshot_lock=lock
    )

    stop, ops = threading.Event(), [0]
    writer = threading.Thread(target=_writer, args=(source_kwargs, t, stop, ops), daemon=True)
    writer.start()
    try:
        time.sleep(0.2)
        position, rows = src.snapshot(None)
        before = ops[0]
        snap = list(rows)
        during = ops[0] - before
        time.sleep(0.2)
    finally:
        stop.set()
        writer.join(10)
    assert during > 0, "the writer made no change while the snapshot was read"
    assert len(snap) >= ROWS * 0.8
    assert [e.position.index for e in snap] == list(range(1, len(snap) + 1))

    sql(f"INSERT INTO {marker} VALUES (1)")
    stream = drain(
        src.stream(position), lambda ev: any(e.table.table == marker for e in ev), timeout=60
    )

    state: dict[int, dict[str, Any]] = {}
    for e in snap:
        _apply(state, e)
    for e in stream:
        if e.table.table == t:
            _apply(state, e)
    final = {r[0]: {"id": r[0], "v": r[1], "s": r[2]} for r in sql(f"SELECT id, v, s FROM {t}")}
    assert state == final
