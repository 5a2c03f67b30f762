"""Micro-benchmark of the Avro serde: records/s on one core, no Kafka.

The row is the 10-column shape used throughout the project's measurements
(MACHINE-NOTES.md): int64, string, decimal(12,2), timestamptz, date, bool,
float64, string, int32, json. Insert envelopes carry ``after`` only; update
envelopes carry two different images. For comparison it also times the naive
approach (fastavro ``schemaless_writer`` over the whole envelope with logical
types), which is what the codec's hand-assembled envelopes replace.

Run: ``.venv/bin/python bench/serde_bench.py [--seconds 2]``
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastavro import parse_schema, schemaless_writer

from cdc.events import (
    ChangeEvent,
    Column,
    ColumnType,
    Kind,
    Op,
    Row,
    SourceInfo,
    TableId,
    TableSchema,
)
from cdc.serde import AvroSerde, InMemorySchemaRegistry
from connectors.postgres.position import Lsn, PgPosition

SCHEMA = TableSchema(
    TableId("shop", "public", "orders"),
    (
        Column("id", ColumnType(Kind.INT64, "bigint"), nullable=False),
        Column("customer", ColumnType(Kind.STRING, "text")),
        Column("amount", ColumnType(Kind.DECIMAL, "numeric(12,2)", precision=12, scale=2)),
        Column("created_at", ColumnType(Kind.TIMESTAMPTZ, "timestamptz")),
        Column("ship_date", ColumnType(Kind.DATE, "date")),
        Column("paid", ColumnType(Kind.BOOLEAN, "boolean")),
        Column("weight", ColumnType(Kind.FLOAT64, "double precision")),
        Column("note", ColumnType(Kind.STRING, "varchar(200)", length=200)),
        Column("qty", ColumnType(Kind.INT32, "integer")),
        Column("attrs", ColumnType(Kind.JSON, "jsonb")),
    ),
    ("id",),
)


def make_row(i: int) -> dict[str, Any]:
    return {
        "id": 1_000_000 + i,
        "customer": f"customer-{i % 977}",
        "amount": Decimal(f"{i % 100000}.{i % 100:02d}"),
        "created_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i, microseconds=i % 997),
        "ship_date": date(2026, 1, 1) + timedelta(days=i % 365),
        "paid": i % 2 == 0,
        "weight": i * 0.25,
        "note": "deliver to the back door, ring twice",
        "qty": i % 50,
        "attrs": '{"gift": false, "channel": "web"}',
    }


def make_events(n: int, op: Op, per_tx: int = 10) -> list[ChangeEvent]:
    """Events in transactions of ``per_tx`` rows, which share commit time, LSN and xid."""
    events = []
    for i in range(n):
        tx, index = divmod(i, per_tx)
        src = SourceInfo(
            connector="postgresql",
            name="bench",
            version="0.1.0",
            db_version="18.6",
            position=PgPosition(
                Lsn(0x16_0000_0000 + tx * 4096), index=index, last_in_tx=index == per_tx - 1
            ),
            ts_ms=1_767_225_600_000 + tx,
            tx_id=str(1000 + tx),
        )
        after = make_row(i)
        before = make_row(i + 7) if op is Op.UPDATE else None
        if before is not None:
            before["id"] = after["id"]
        events.append(
            ChangeEvent(op, SCHEMA, {"id": after["id"]}, before, after, src, src.ts_ms + 5)
        )
    return events


def rate(fn: Callable[[Any], object], items: list[Any], seconds: float) -> float:
    """Records/s of ``fn`` over ``items``: the best pass within ``seconds``.

    Best-of (like timeit) because the machine is shared: slower passes measure
    other processes, not this code.
    """
    fn(items[0])  # warm caches (schema registration, codegen)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or best == 0.0:
        start = time.perf_counter()
        for it in items:
            fn(it)
        best = max(best, len(items) / (time.perf_counter() - start))
    return best


def naive_encoder(serde: AvroSerde, event: ChangeEvent) -> Callable[[ChangeEvent], bytes]:
    """fastavro over the whole envelope, logical types on: the baseline."""
    schema = json.loads(
        serde.registry.get_schema(int.from_bytes(serde.encode_value(event)[1:5], "big"))
    )
    parsed = parse_schema(schema)

    def row(r: Row | None) -> dict[str, Any] | None:
        if r is None:
            return None
        out = dict(r)
        out["created_at"] = r["created_at"].isoformat()
        return out

    def source(src: SourceInfo) -> dict[str, Any]:
        assert isinstance(src.position, PgPosition)
        return {
            "version": src.version, "connector": src.connector, "name": src.name,
            "ts_ms": src.ts_ms, "snapshot": src.snapshot, "db": "shop", "sequence": None,
            "schema": "public", "table": "orders", "txId": int(src.tx_id or 0),
            "lsn": src.position.lsn.value, "xmin": None,
            "cdc_position": json.dumps(src.position.to_dict()),
            "cdc_origin": None, "cdc_db_version": src.db_version, "cdc_tx_id": src.tx_id,
        }  # fmt: skip

    def encode(ev: ChangeEvent) -> bytes:
        record = {
            "before": row(ev.before),
            "after": row(ev.after),
            "source": source(ev.source),
            "transaction": None,
            "op": ev.op.value,
            "ts_ms": ev.ts_ms,
            "cdc_unchanged": None,
            "cdc_before_absent": None,
            "cdc_special_values": None,
        }
        buf = io.BytesIO()
        schemaless_writer(buf, parsed, record)
        return buf.getvalue()

    return encode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--events", type=int, default=1000, help="distinct events per pass")
    args = ap.parse_args()

    serde = AvroSerde(InMemorySchemaRegistry())
    results: list[tuple[str, float]] = []
    for op, label in ((Op.CREATE, "insert"), (Op.UPDATE, "update")):
        events = make_events(args.events, op)
        encoded = [serde.encode(ev) for ev in events]
        results.append((f"encode {label} (key+value)", rate(serde.encode, events, args.seconds)))
        results.append(
            (f"encode {label} (value only)", rate(serde.encode_value, events, args.seconds))
        )
        results.append((
            f"decode {label} (key+value)",
            rate(lambda e: serde.decode(e.key, e.value), encoded, args.seconds),
        ))  # fmt: skip
        if op is Op.UPDATE:
            single = make_events(args.events, op, per_tx=1)
            results.append(
                ("encode update, 1-row txs (key+value)", rate(serde.encode, single, args.seconds))
            )
            naive = naive_encoder(serde, events[0])
            results.append(("naive fastavro update (value)", rate(naive, events, args.seconds)))

    width = max(len(name) for name, _ in results)
    print(f"best pass of {args.events} events over {args.seconds:g}s per row, one core")
    print(f"{'measurement':<{width}}  {'records/s':>12}  {'us/record':>10}")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 10}")
    for name, r in results:
        print(f"{name:<{width}}  {r:>12,.0f}  {1e6 / r:>10.1f}")


if __name__ == "__main__":
    main()
