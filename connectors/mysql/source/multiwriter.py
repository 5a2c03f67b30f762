"""What a MySQL/MariaDB node of a master-master pipeline needs, for ``cdc check``.

The auto-increment columns of the captured tables, as the values each may
still produce: ``auto_increment_increment`` / ``auto_increment_offset`` (the
server's global settings, which new sessions take) and the table's next
``AUTO_INCREMENT`` value, up to the column type's maximum. The engine compares
them between nodes and warns when two can create the same key. Binlog row
images are FULL already (the source's own check), so before-images need no
warning here. Pure queries; nothing is changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cdc.spi import KeyGenerator

_COLUMNS = """
SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, t.AUTO_INCREMENT
FROM information_schema.COLUMNS c
JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
WHERE c.EXTRA LIKE '%auto_increment%'
"""

_MAX = {"tinyint": 2**7 - 1, "smallint": 2**15 - 1, "mediumint": 2**23 - 1, "int": 2**31 - 1,
        "integer": 2**31 - 1, "bigint": 2**63 - 1}


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def key_generators(cur: Any, captured: Callable[[str, str], bool]) -> list[KeyGenerator]:
    """Auto-increment columns of the captured tables, with the server's step and offset."""
    cur.execute("SELECT @@GLOBAL.auto_increment_increment, @@GLOBAL.auto_increment_offset")
    inc, offset = (int(v) for v in cur.fetchone())
    if offset > inc:  # the server ignores such an offset
        offset = 1
    cur.execute(_COLUMNS)
    out: list[KeyGenerator] = []
    for db, table, column, data_type, column_type, next_value in cur.fetchall():
        db, table = _text(db), _text(table)
        if not captured(db, table):
            continue
        dt = _text(data_type).lower()
        high = _MAX.get(dt, 2**63 - 1)
        if "unsigned" in _text(column_type).lower():
            high = high * 2 + 1
        out.append(KeyGenerator(
            table=f"{db}.{table}", column=_text(column), increment=inc, residue=offset % inc,
            low=int(next_value or 1), high=high,
            what=f"AUTO_INCREMENT (auto_increment_increment={inc}, "
            f"auto_increment_offset={offset})"))
    return out
