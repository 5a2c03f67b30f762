"""Micro-benchmark: pgoutput decode (+ text conversion) of 10-column row messages.

Measures the hot path of the PostgreSQL source on one core, without I/O:
CopyData frame -> XLogData -> Insert/Update message -> canonical Python row.
Messages are built in memory with the shapes pgoutput produces.

    .venv/bin/python bench/pgoutput_decode_bench.py [--messages 200000]
"""

from __future__ import annotations

import argparse
import struct
import time
import uuid
from collections.abc import Callable

from connectors.postgres.source.decoder import PgOutputDecoder, decode_copy_data
from connectors.postgres.types import make_row_converter, resolve_type

# id int4, name text, qty int8, price numeric(12,2), created timestamptz,
# day date, active bool, code varchar(20), ratio float8, ref uuid
COLUMNS = [(23, -1), (25, -1), (20, -1), (1700, ((12 << 16) | 2) + 4), (1184, -1),
           (1082, -1), (16, -1), (1043, 24), (701, -1), (2950, -1)]  # fmt: skip


def row_text(i: int) -> list[str]:
    return [
        str(i),
        f"customer name {i}",
        str(i * 7919),
        f"{i % 100000}.{i % 100:02d}",
        f"2024-05-{1 + i % 28:02d} 12:{i % 60:02d}:{(i * 7) % 60:02d}.{i % 1000000:06d}+00",
        f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
        "t" if i % 2 else "f",
        f"CODE-{i % 9999}",
        repr(i / 7),
        str(uuid.UUID(int=i * 2654435761)),
    ]


def tuple_bytes(values: list[str]) -> bytes:
    out = [struct.pack(">H", len(values))]
    for v in values:
        raw = v.encode()
        out.append(b"t" + struct.pack(">I", len(raw)) + raw)
    return b"".join(out)


def frame(payload: bytes, lsn: int) -> bytes:
    return b"w" + struct.pack(">QQq", lsn, lsn, 0) + payload


def build(n: int) -> tuple[list[bytes], list[bytes]]:
    inserts, updates = [], []
    for i in range(n):
        t = tuple_bytes(row_text(i))
        inserts.append(frame(b"I" + struct.pack(">I", 16400) + b"N" + t, 1000 + i))
        updates.append(frame(b"U" + struct.pack(">I", 16400) + b"N" + t, 1000 + i))
    return inserts, updates


def run(frames: list[bytes], convert: Callable[[list[str]], list[object]] | None) -> float:
    """Messages per CPU second (process time: the machine may be shared)."""
    dec = PgOutputDecoder()
    start = time.process_time()
    for raw in frames:
        m = dec.decode(decode_copy_data(raw).payload)  # type: ignore[union-attr]
        if convert is not None:
            convert(m.new)  # type: ignore[union-attr, arg-type]
    return len(frames) / (time.process_time() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measure; the best is shown")
    args = ap.parse_args()
    inserts, updates = build(args.messages)
    convert = make_row_converter([resolve_type(o, m) for o, m in COLUMNS])
    size = sum(len(f) for f in inserts) / len(inserts)
    print(f"{args.messages} messages of 10 text columns, {size:.0f} bytes per frame, one core")
    for name, frames in (("insert", inserts), ("update", updates)):
        run(frames[:20_000], convert)  # warm up
        decode_only = max(run(frames, None) for _ in range(args.repeat))
        with_convert = max(run(frames, convert) for _ in range(args.repeat))
        print(
            f"  {name:6}  decode {decode_only:>9,.0f} msg/s   "
            f"decode+convert {with_convert:>9,.0f} msg/s"
        )


if __name__ == "__main__":
    main()
