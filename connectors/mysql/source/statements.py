"""Query events of the binlog, classified by their SQL text.

A binlog ``Query`` event carries transaction control (``BEGIN``, ``COMMIT``,
``ROLLBACK``, savepoints, XA markers), DDL, or - when a session logs by
statement - DML whose rows are not in the binlog. The binlog reader
(:mod:`connectors.mysql.source.binlog`) asks :func:`query_kind` what a query
does to the transaction, and matches :data:`DML` and :data:`TRUNCATE` to find
the table a statement names (:func:`table_of`). Nothing here parses SQL beyond
these prefixes, and nothing here decides what to do about a match.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["DML", "TRUNCATE", "query_kind", "table_of"]

_IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_TABLE_REF = rf"(?P<first>{_IDENT})(?:\s*\.\s*(?P<second>{_IDENT}))?"
#: ``TRUNCATE [TABLE] [db.]table``
TRUNCATE: Final = re.compile(rf"^\s*TRUNCATE\s+(?:TABLE\s+)?{_TABLE_REF}", re.IGNORECASE)
#: statement-logged DML, each naming its table as ``first``/``second``
DML: Final = tuple(
    re.compile(p + _TABLE_REF, re.IGNORECASE | re.DOTALL)
    for p in (
        r"^\s*(?:INSERT|REPLACE)(?:\s+(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE))*\s+(?:INTO\s+)?",
        r"^\s*UPDATE(?:\s+(?:LOW_PRIORITY|IGNORE))*\s+",
        r"^\s*DELETE(?:\s+(?:LOW_PRIORITY|QUICK|IGNORE))*\s+FROM\s+",
        r"^\s*LOAD\s+DATA\b.*?\bINTO\s+TABLE\s+",
    )
)
_ROLLBACK_TO = re.compile(r"ROLLBACK\s+(?:WORK\s+)?TO\b")


def query_kind(query: str) -> str:
    """begin | commit | ignore (savepoints, XA markers) | statement (DDL or DML)."""
    head = query.lstrip()[:40].upper()
    if head.startswith("BEGIN"):
        return "begin"
    if head.startswith("COMMIT"):
        return "commit"
    if head.startswith("ROLLBACK"):
        # A ROLLBACK ending a group keeps its non-transactional changes: a commit here.
        return "ignore" if _ROLLBACK_TO.match(head) else "commit"
    if head.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "XA ")):
        return "ignore"
    return "statement"


def _unquote(ident: str | None) -> str | None:
    if ident is None:
        return None
    if ident.startswith("`"):
        return ident[1:-1].replace("``", "`")
    return ident


def table_of(m: re.Match[str], default_db: str) -> tuple[str, str]:
    """(database, table) a :data:`DML`/:data:`TRUNCATE` match names."""
    first, second = _unquote(m.group("first")) or "", _unquote(m.group("second"))
    return (default_db, first) if second is None else (first, second)
