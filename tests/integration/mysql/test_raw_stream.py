"""The raw-packet path (rows, TableMap, GTID and XID events read from the packet
bytes with the native row-image program) against mysql-replication's parse of
the same binlog range: the change events, positions and transaction blocks must
be identical. The workload mixes captured and uncaptured tables in one
transaction, key changes, deletes, a statement split over many rows events, an
ALTER TABLE mid-stream and a row over 16 MB (a rows event spanning several
protocol packets).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cdc.events import ChangeEvent
from connectors.mysql.source import MySqlSource, rowimage
from tests.integration.mysql.conftest import drain

pytestmark = pytest.mark.integration

BIG = 17 * 1024 * 1024


def _view(e: ChangeEvent) -> tuple[Any, ...]:
    return (
        e.op,
        e.schema,
        e.key,
        e.before,
        e.after,
        e.source.position.to_dict(),
        e.source.ts_ms,
        e.source.tx_id,
        e.transaction,
    )


def test_raw_packets_equal_the_library_parse(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    unique_name: str,
) -> None:
    if not rowimage.native_available():
        pytest.skip("_crowimage not built")
    t, u = unique_name, f"{unique_name}_u"
    probe = make_source(include=[f"cdc_source.{t}"])
    start = probe.reader.current_position()
    sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(40), d DECIMAL(10,2), b LONGBLOB) "
        "DEFAULT CHARSET=utf8mb4")
    sql(f"CREATE TABLE {u} (id INT PRIMARY KEY, v VARCHAR(40)) DEFAULT CHARSET=utf8mb4")
    sql("BEGIN")
    sql(f"INSERT INTO {t} VALUES (1, 'a', 1.50, NULL), (2, 'é', -2.25, 'x'), (3, NULL, 0, '')")
    sql(f"INSERT INTO {u} VALUES (1, 'other'), (2, 'table')")
    sql(f"UPDATE {t} SET id = 10 WHERE id = 1")
    sql(f"UPDATE {u} SET v = 'still other'")
    sql(f"DELETE FROM {t} WHERE id = 3")
    sql("COMMIT")
    sql(f"INSERT INTO {t} SELECT 1000 + seq, REPEAT('w', 30), seq / 100, REPEAT('b', 40) "
        "FROM seq_1_to_3000")  # several rows events under one TableMap
    sql(f"ALTER TABLE {t} ADD COLUMN extra INT")
    sql(f"INSERT INTO {t} VALUES (20, 'after alter', 9.99, NULL, 7)")
    sql(f"INSERT INTO {t} VALUES (21, 'big', 0, REPEAT('z', {BIG}), NULL)")
    sql(f"UPDATE {t} SET v = 'small again', b = 'q' WHERE id = 21")
    expected = 6 + 3000 + 3  # the key change is a delete and a create

    def run(fast_decode: bool) -> tuple[list[ChangeEvent], int]:
        src = make_source(include=[f"cdc_source.{t}"], fast_decode=fast_decode)
        events = drain(src.stream(start), lambda ev: len(ev) >= expected, timeout=120)
        return events, src.reader.metrics.raw_events

    native, raw_events = run(True)
    library, library_raw = run(False)
    assert raw_events > 0 and library_raw == 0
    assert len(native) == len(library) == expected
    for a, b in zip(native, library, strict=True):
        assert _view(a) == _view(b)
    assert native[-2].after is not None and len(native[-2].after["b"]) == BIG
    assert [e.op.value for e in native[:6]] == ["c", "c", "c", "d", "c", "d"]
    assert native[-1].before is not None and native[-1].before["b"] == native[-2].after["b"]
