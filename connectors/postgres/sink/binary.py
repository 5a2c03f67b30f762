"""Binary COPY for the PostgreSQL replica: which columns may take it, and strict dumpers.

:mod:`.session` writes large batches with ``COPY``. The binary format saves
the server parsing text (numeric, timestamps) and the client formatting it:
measured on this machine about 1.5x the rows per second of text COPY and half
the client CPU per row. But a binary value is read by the column type's
receive function as raw bytes, so psycopg picks the dumper by the column's
type, not by the Python value, and some of its dumpers wrap or coerce where a
text COPY would refuse (an int past int4's range is cut to 32 bits, a str is
"true" for boolean). This module says which column types go binary
(:func:`binary_types`) and installs, on the session's connection, dumpers for
the lossy ones that refuse such values instead (:func:`install_strict_dumpers`).
A refused value raises in the client; the session then undoes the attempt and
writes the batch as text, which reports a bad value as before.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from cdc.spi import ReplicaTable

# Column types (pg_type.typname) whose binary dumper, chosen by type, either writes
# the value a text COPY would store or raises (checked for each by
# tests/integration/sink/test_pg_binary_copy.py); the four marked * only with the
# strict dumpers below. bpchar has no binary dumper; arrays, json, enums and
# the rest stay text.
BINARY_TYPES: Final = frozenset((
    "int2", "int4", "int8", "float4", "float8", "numeric", "bool",  # int2, int4, float4, bool: *
    "text", "varchar", "date", "timestamp", "timestamptz", "bytea", "uuid",
))

# What a client-side refusal of a value raises inside a binary COPY.
REFUSALS: Final = (TypeError, ValueError, OverflowError, AttributeError, struct.error)


def binary_types(table: ReplicaTable, columns: Sequence[str]) -> list[str] | None:
    """The type names to give ``Copy.set_types`` for ``columns`` of ``table``, or
    None when one of them must stay text."""
    out = []
    for name in columns:
        col = table.column(name)
        if col is None or col.data_type not in BINARY_TYPES:
            return None
        out.append(col.data_type)
    return out


_I2: Final = struct.Struct("!h").pack
_I4: Final = struct.Struct("!i").pack
_F4: Final = struct.Struct("!f").pack


class _StrictInt2(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        if type(obj) is not int:  # (struct takes bools and __index__ objects)
            raise TypeError(f"smallint takes an int, not {type(obj).__name__}")
        return _I2(obj)  # struct.error out of range


class _StrictInt4(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        if type(obj) is not int:
            raise TypeError(f"integer takes an int, not {type(obj).__name__}")
        return _I4(obj)


class _StrictFloat4(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return _F4(obj)  # OverflowError past real's range, as text COPY refuses it


class _StrictBool(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        if obj is True:
            return b"\x01"
        if obj is False:
            return b"\x00"
        raise TypeError(f"boolean takes a bool, not {type(obj).__name__}")


def install_strict_dumpers(conn: psycopg.Connection[Any]) -> None:
    """Make ``conn``'s binary COPY of int2, int4, float4 and boolean columns refuse
    values that psycopg's own dumpers would wrap or coerce."""
    types = conn.adapters.types
    for name, cls in (
        ("int2", _StrictInt2), ("int4", _StrictInt4), ("float4", _StrictFloat4), ("bool", _StrictBool),
    ):
        info = types.get(name)
        assert info is not None, name
        dumper = type(cls.__name__, (cls,), {"oid": info.oid})
        conn.adapters.register_dumper(None, dumper)
