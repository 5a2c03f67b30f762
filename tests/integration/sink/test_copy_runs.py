"""Runs written from the record bytes (Applier._run: binary COPY,
connectors/postgres/sink/copyrun.py; SQL literal rows, connectors/mysql/sink/runs.py)
against the reference path, on a real PostgreSQL and a real MariaDB replica.

Seeded workloads mix long runs of inserts and snapshot reads, and long runs of
updates (some with full before images, as REPLICA IDENTITY FULL sends), with
what must end a run or take another path: deletes, a key inserted or updated
twice in a batch, key changes, unchanged (TOAST) columns, records of the sink's
own origin, replays below the checkpoint at new offsets, values the replica
cannot take (dead-lettered), and a re-snapshot over rows the replica already
holds (the plain COPY meets existing keys and upserts). One applier takes runs,
one takes only the reference path: results, checkpoints and replica rows must
be identical, and runs must have carried most inserts and updates. A restart
(a new applier and session on the same replica) that meets batches of update
runs again skips them and leaves the replica as it was.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cdc.events import ChangeEvent, Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.serde import RegistryClient
from cdc.spi import TableName
from connectors.postgres.position import Lsn, PgPosition
from tests.integration.sink.helpers import (
    ApplierHarness,
    EventFactory,
    FakeDeadLetters,
    drop_tables,
)

pytestmark = pytest.mark.integration

ORIGIN = "replica_runs"


def _schema(table: str) -> TableSchema:
    t = ColumnType
    columns = (
        Column("id", t(Kind.INT64, "bigint"), nullable=False),
        Column("qty", t(Kind.INT32, "integer")),
        Column("name", t(Kind.STRING, "text")),
        Column("price", t(Kind.DECIMAL, "numeric(10,2)", precision=10, scale=2)),
        Column("created", t(Kind.TIMESTAMP, "timestamp")),
        Column("stamp", t(Kind.TIMESTAMPTZ, "timestamptz")),
        Column("day", t(Kind.DATE, "date")),
        Column("ratio", t(Kind.FLOAT64, "double precision")),
        Column("active", t(Kind.BOOLEAN, "boolean")),
        Column("code", t(Kind.STRING, "varchar(8)", length=8)),
        Column("u", t(Kind.UUID, "uuid")),
        Column("small", t(Kind.INT16, "smallint")),
        Column("raw", t(Kind.BYTES, "bytea")),
    )
    return TableSchema(TableId("app", "public", table), columns, ("id",))


# Strings whose SQL literals need care (quotes, a backslash, control characters).
_HOSTILE = ("it's", "back\\slash", 'a "quoted" \'word\'', "tab\tnew\nline\r\x1a end")


def _row(rng: random.Random, k: int, bad: bool = False) -> dict[str, Any]:
    row = {
        "id": k,
        "qty": rng.choice([None, 0, -(2**31), 2**31 - 1, rng.randrange(1000)]),
        "name": rng.choice([None, "", "é\U0001f600", f"product {k}", "x" * 3000]),
        "price": rng.choice([None, Decimal("0.00"), Decimal("-99999999.99"),
                             Decimal(rng.randrange(-10**6, 10**6)).scaleb(-2)]),
        "created": rng.choice([None, datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999),
                               datetime(2024, 1, 1) + timedelta(seconds=k, microseconds=k)]),
        "stamp": rng.choice([None, datetime(1970, 1, 1, tzinfo=UTC),
                             datetime(2024, 5, 1, 12, 0, 0, k % 1000, tzinfo=UTC)]),
        "day": rng.choice([None, date(2000, 2, 29), date(1, 1, 1), date(2024, 1, 1)]),
        "ratio": rng.choice([None, -0.0, float("inf"), k / 7.0]),
        "active": rng.choice([None, True, False]),
        "code": "C" * 9 if bad else rng.choice([None, "", f"C{k % 1000}"]),
        "u": rng.choice([None, uuid.UUID(int=k), uuid.UUID(int=2**128 - 1)]),
        "small": rng.choice([None, -(2**15), 2**15 - 1]),
    }
    if k % 7 == 3:  # (drawn after the rest: the seeded workload keeps its shape)
        row["name"] = _HOSTILE[k // 7 % len(_HOSTILE)]
    if k % 11 == 5 and not bad:
        row["code"] = "é" * 8
    row["raw"] = None if k % 5 == 0 else k.to_bytes(8, "big", signed=True) + b"'\\\x00\xff"
    return row


full_row = _row


def _looped(ev: ChangeEvent) -> ChangeEvent:
    p = ev.source.position
    assert isinstance(p, PgPosition)
    position = dataclasses.replace(p, lsn=Lsn(p.lsn.value + 5))
    source = dataclasses.replace(ev.source, origin=ORIGIN, position=position)
    return dataclasses.replace(ev, source=source)


def _workload(name: str, seed: int, kind: str = "postgres") -> list[list[ChangeEvent]]:
    rng = random.Random(seed)
    f = EventFactory(_schema(name))

    def _row(rng: random.Random, k: int, bad: bool = False) -> dict[str, Any]:
        row = full_row(rng, k, bad)
        if kind == "mysql" and k % 97 and row["ratio"] == float("inf"):
            # MariaDB has no infinity (dead-lettered): rarer, or runs would stay short.
            row["ratio"] = 1.7976931348623157e308
        return row

    rows: dict[int, dict[str, Any]] = {}
    events: list[ChangeEvent] = []
    next_key = 0
    for _ in range(14):
        what = rng.random()
        if what < 0.45 or not rows:  # a run of inserts (or snapshot reads) of new keys
            op = Op.READ if rng.random() < 0.3 else Op.CREATE
            for _ in range(rng.choice([20, 60, 300])):
                r = _row(rng, next_key, bad=rng.random() < 0.003)
                next_key += 1
                ev = f.event(op, after=r)
                events.append(ev)
                if not r["code"] or len(r["code"]) <= 8:
                    rows[r["id"]] = r
                if rng.random() < 0.005:
                    events.append(_looped(ev))
        elif what < 0.6:  # a run of updates of existing keys, with what ends such runs
            for k in rng.sample(sorted(rows), min(len(rows), rng.choice([20, 60, 200]))):
                if k not in rows:
                    continue
                r = {**_row(rng, k, bad=rng.random() < 0.003), "id": k}
                style = rng.random()
                if style < 0.01:  # a key change
                    r["id"] = next_key
                    next_key += 1
                    events.append(f.event(Op.UPDATE, before=rows.pop(k), after=r))
                elif style < 0.3:  # a full before image (replica identity full)
                    events.append(f.event(Op.UPDATE, before=rows[k], after=r))
                elif style < 0.32:  # an unchanged TOAST column
                    events.append(f.event(Op.UPDATE, after=r, unchanged=("name",)))
                    r["name"] = rows[k]["name"]
                elif style < 0.34:  # the same key again in the run
                    events.append(f.event(Op.UPDATE, after={**_row(rng, k), "id": k}))
                    events.append(f.event(Op.UPDATE, after=r))
                else:
                    events.append(f.event(Op.UPDATE, after=r))
                if rng.random() < 0.005:
                    events.append(_looped(events[-1]))
                if not r["code"] or len(r["code"]) <= 8:
                    rows[r["id"]] = r
        elif what < 0.75:  # updates and deletes of existing keys
            for k in rng.sample(sorted(rows), min(len(rows), 15)):
                if rng.random() < 0.5:
                    rows[k] = {**_row(rng, k), "id": k}
                    events.append(f.event(Op.UPDATE, after=rows[k]))
                else:
                    events.append(f.event(Op.DELETE, before=rows.pop(k)))
        elif what < 0.88:  # a re-snapshot of existing keys (they collide in the replica)
            for k in sorted(rows)[:40]:
                events.append(f.event(Op.READ, after={**_row(rng, k), "id": k}))
        else:  # the same key twice within what would be a run
            k = next_key
            next_key += 1
            events.append(f.event(Op.CREATE, after=_row(rng, k)))
            events.append(f.event(Op.DELETE, before=_row(rng, k)))
            events.append(f.event(Op.CREATE, after=_row(rng, k)))
            for _ in range(30):
                events.append(f.event(Op.CREATE, after=_row(rng, next_key)))
                next_key += 1
    batches: list[list[ChangeEvent]] = []
    i = 0
    while i < len(events):
        n = rng.choice([50, 200, 700])
        batch = events[i : i + n]
        if i and rng.random() < 0.3:  # a source replay: old events again, at new offsets
            a = rng.randrange(i)
            batch = events[a : min(i, a + rng.randrange(1, 60))] + batch
        batches.append(batch)
        i += n
    return batches


def _count_runs(session: Any, method: str, counts: dict[str, int]) -> None:
    """Count the rows ``session``'s run ``method`` (insert_run, update_run) writes."""
    real = getattr(session, method)

    def counting(table: Any, columns: Any, payload: bytes, rows: int) -> None:
        counts[method] = counts.get(method, 0) + rows
        real(table, columns, payload, rows)

    setattr(session, method, counting)


def _read(h: ApplierHarness, table: str) -> list[tuple[Any, ...]]:
    rows = h.session.query(
        f"SELECT * FROM {h.session.dialect.table_sql(TableName(None, table))} ORDER BY id")
    h.session.rollback()
    return rows


@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_runs_and_reference_path_leave_the_same_replica(
    replica: tuple[str, str], registry: RegistryClient, unique_name: str, seed: int
) -> None:
    kind, dsn = replica
    names = (f"{unique_name}_r"[-40:], f"{unique_name}_p"[-40:])
    letters = [FakeDeadLetters(), FakeDeadLetters()]
    harnesses = [
        ApplierHarness(kind, dsn, registry, n, [f"src.public.{n}"],
                       origin=ORIGIN, policy="dead_letter", dead_letters=dl)
        for n, dl in zip(names, letters, strict=True)
    ]
    harnesses[1].applier.fast = False
    run_rows = {"insert_run": 0, "update_run": 0}
    session = harnesses[0].session
    for method in list(run_rows):
        _count_runs(session, method, run_rows)
    try:
        for h, n in zip(harnesses, names, strict=True):
            drop_tables(h.session, n)
        results = []
        for h, n in zip(harnesses, names, strict=True):
            out = []
            for batch in _workload(n, seed, kind):
                r = h.apply(batch)
                out.append((r.applied, r.skipped, r.dead_letters,
                            sorted((tp[1], c) for tp, c in r.consumed.items())))
                assert r.failure is None
            results.append(out)
        assert results[0] == results[1]
        assert _read(harnesses[0], names[0]) == _read(harnesses[1], names[1])
        cps = [{tp[1]: (cp.offset, cp.position) for tp, cp in h.checkpoints.items()}
               for h in harnesses]
        assert cps[0] == cps[1]
        assert [(x.offset, x.kind) for x in letters[0].letters] == \
            [(x.offset, x.kind) for x in letters[1].letters]
        batches = _workload(names[0], seed, kind)
        inserts = sum(1 for b in batches for e in b if e.op in (Op.CREATE, Op.READ))
        # (MariaDB refuses more of the workload's values in runs: infinity, NUL in text)
        share = 3 if kind == "postgres" else 4
        assert run_rows["insert_run"] > inserts // share, f"runs took {run_rows} of {inserts} inserts"
        # (a batch with a dead letter is applied again row by row, without runs)
        updates = sum(1 for b, r in zip(batches, results[0], strict=True) if not r[2]
                      for e in b if e.op is Op.UPDATE)
        assert run_rows["update_run"] >= updates // 3, f"runs took {run_rows} of {updates} updates"
        if seed == 1:
            assert run_rows["update_run"] > 80
    finally:
        for h, n in zip(harnesses, names, strict=True):
            drop_tables(h.session, n)
            h.close()


def test_a_restart_replays_batches_of_update_runs_without_change(
    replica: tuple[str, str], registry: RegistryClient, unique_name: str
) -> None:
    """Batches of update runs applied, then met again by a restarted sink (a new
    applier and session reading the replica's checkpoints: Kafka redelivers what
    was applied but not committed there), whole and straddling the checkpoint."""
    kind, dsn = replica
    name = f"{unique_name}_u"[-40:]
    rng = random.Random(7)
    f = EventFactory(_schema(name))

    def _row(rng: random.Random, k: int) -> dict[str, Any]:
        row = full_row(rng, k)
        if kind == "mysql" and row["ratio"] == float("inf"):  # (MariaDB has no infinity)
            row["ratio"] = 1.7976931348623157e308
        return row

    h = ApplierHarness(kind, dsn, registry, name, [f"src.public.{name}"])
    runs: dict[str, int] = {"update_run": 0}
    _count_runs(h.session, "update_run", runs)
    restarted: ApplierHarness | None = None
    try:
        drop_tables(h.session, name)
        h.apply([f.event(Op.CREATE, after=_row(rng, k)) for k in range(300)])
        batches = [
            h.records([f.event(Op.UPDATE, after=_row(rng, k),
                               before=_row(rng, k) if k % 3 == 0 else None)
                       for k in range(lo, lo + 150)])
            for lo in (0, 150, 0)
        ]
        for b in batches[:2]:
            assert h.apply_records(b).applied == 150
        assert runs["update_run"] == 300
        before = _read(h, name)
        restarted = ApplierHarness(kind, dsn, registry, name, [f"src.public.{name}"])
        _count_runs(restarted.session, "update_run", runs)

        def again(records: list[Any]) -> list[Any]:
            return [dataclasses.replace(r, decoded=None, error=None) for r in records]

        r = restarted.apply_records(again(batches[1]))
        assert (r.applied, r.skipped) == (0, 150)
        assert _read(restarted, name) == before
        # the last 50 applied records again, then a new batch of update runs
        r = restarted.apply_records(again(batches[1][100:]) + again(batches[2]))
        assert (r.applied, r.skipped) == (150, 50)
        after = _read(restarted, name)
        assert after[150:] == before[150:] and after[:150] != before[:150]
        assert [cp.offset for cp in restarted.checkpoints.values()] == [batches[2][-1].offset]
        assert runs["update_run"] > 400  # the new batch went in runs after the restart too
    finally:
        drop_tables(h.session, name)
        h.close()
        if restarted is not None:
            restarted.close()
