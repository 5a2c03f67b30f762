"""Reading a table's columns and primary key from the server's information_schema.

The snapshot (:mod:`connectors.mysql.source.snapshot`) and the schema resolver
(:mod:`connectors.mysql.source.schema`) ask the server what a table looks like
now; this module holds those queries and turns their rows into
:class:`~connectors.mysql.types.CatalogColumn`. What a column's type means is
:mod:`connectors.mysql.types`; nothing here decides it.
"""

from __future__ import annotations

import re
from typing import Any, Final

from connectors.mysql.types import CatalogColumn

__all__ = ["catalog_columns", "catalog_primary_key"]

# --------------------------------------------------------------------------- catalog queries

_COLUMNS_SQL: Final = """
SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT,
       CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE,
       DATETIME_PRECISION, CHARACTER_SET_NAME
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s
ORDER BY ORDINAL_POSITION
"""
_JSON_CHECKS_SQL: Final = """
SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s
"""
_PK_SQL: Final = """
SELECT COLUMN_NAME FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY'
ORDER BY SEQ_IN_INDEX
"""
_JSON_VALID: Final = re.compile(r"json_valid\(`((?:[^`]|``)+)`\)", re.IGNORECASE)


def _s(v: Any) -> str | None:
    if v is None:
        return None
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)


def _i(v: Any) -> int | None:
    return None if v is None else int(v)


def catalog_columns(
    cursor: Any, database: str, table: str, *, mariadb: bool
) -> list[CatalogColumn]:
    """A table's columns from information_schema (empty if the table is gone).

    ``cursor`` is a PyMySQL cursor of any connection (text or decoded values).
    On MariaDB, JSON is an alias of LONGTEXT recognisable only by its
    ``json_valid()`` CHECK constraint, read from CHECK_CONSTRAINTS.
    """
    json_columns: set[str] = set()
    if mariadb:
        cursor.execute(_JSON_CHECKS_SQL, (database, table))
        for (clause,) in cursor.fetchall():
            for m in _JSON_VALID.finditer(_s(clause) or ""):
                json_columns.add(m.group(1).replace("``", "`"))
    cursor.execute(_COLUMNS_SQL, (database, table))
    out: list[CatalogColumn] = []
    for row in cursor.fetchall():
        name = _s(row[0]) or ""
        data_type = (_s(row[1]) or "").lower()
        out.append(
            CatalogColumn(
                name=name,
                data_type=data_type,
                column_type=(_s(row[2]) or "").lower(),
                nullable=_s(row[3]) == "YES",
                default=_s(row[4]),
                char_length=_i(row[5]),
                octet_length=_i(row[6]),
                precision=_i(row[7]),
                scale=_i(row[8]),
                fsp=_i(row[9]),
                charset=_s(row[10]),
                json=name in json_columns and data_type == "longtext",
            )
        )
    return out


def catalog_primary_key(cursor: Any, database: str, table: str) -> tuple[str, ...]:
    cursor.execute(_PK_SQL, (database, table))
    return tuple(_s(r[0]) or "" for r in cursor.fetchall())
