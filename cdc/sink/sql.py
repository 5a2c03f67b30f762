"""SQL spellings shared by the sink dialects (they differ only in identifier quoting)."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def delete_by_keys(table_sql: str, key: Sequence[str], rows: int,
                   quote: Callable[[str], str]) -> str:
    """A multi-row ``DELETE ... WHERE key IN (...)`` with ``%s`` placeholders."""
    if len(key) == 1:
        return f"DELETE FROM {table_sql} WHERE {quote(key[0])} IN ({', '.join(['%s'] * rows)})"
    one = "(" + ", ".join(["%s"] * len(key)) + ")"
    return (f"DELETE FROM {table_sql} WHERE ({', '.join(quote(k) for k in key)}) IN "
            f"({', '.join([one] * rows)})")
