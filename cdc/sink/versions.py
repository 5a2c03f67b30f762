"""Row versions for master-master sinks: what a write is, and what a node last saw per row.

A write's :class:`Version` is ``(origin commit time in ms, node name, position
sort key)``: a total order over every write of every node (two writes of one
node in the same millisecond are told apart by their source positions). Each
node's sink keeps one :class:`Entry` per (replica table, row key): the version
of the last write it let stand for that row, whether that write was a delete,
and the after-image as canonical JSON with its hash. Detection compares an
incoming write's *before*-image hash with the entry's hash (see
:mod:`cdc.sink.conflicts`), so the hash must not depend on which database
captured the row: :func:`canonical_image` spells each value by its meaning
(decimals without trailing zeros, timestamps in ISO form, bytes as hex).

Pure values and functions; the table holding entries is :mod:`cdc.sink.versionstore`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from cdc.events import Kind


@dataclass(frozen=True, slots=True)
class Version:
    """A write's place in the total order: ``(ts_ms, node, position sort key)``.

    ``position`` is the source position's sort key (comparable within one node);
    ``position_text`` its stored form, for the tables (not compared).
    """

    ts_ms: int
    node: str
    position: tuple[Any, ...] = ()
    position_text: str = ""

    @property
    def order(self) -> tuple[int, str, tuple[Any, ...]]:
        """What versions are compared by."""
        return (self.ts_ms, self.node, self.position)


@dataclass(frozen=True, slots=True)
class Entry:
    """What a node last saw for one row: the winning write's version, whether it
    deleted the row, and its after-image (canonical JSON, None for a delete) and hash."""

    version: Version
    deleted: bool
    image: str | None
    hash: str | None


_PLAIN: Final = frozenset((type(None), bool, str, int))


def _canon(v: Any) -> Any:
    """One value as JSON, the same whichever database captured it (where types agree)."""
    if type(v) in _PLAIN or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, float):
        return repr(v) if v != v or v in (float("inf"), float("-inf")) else v
    if isinstance(v, Decimal):
        if not v.is_finite():
            return str(v)
        return format(v.normalize(), "f")
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC)
        return v.isoformat()
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return f"{v.days}d{v.seconds}s{v.microseconds}us"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "b64:" + base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, Mapping):
        return {str(k): _canon(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    return str(v)


def canonical_image(row: Mapping[str, Any] | None) -> str | None:
    """A row image (column -> Avro-decoded value) as canonical JSON; None stays None."""
    if row is None:
        return None
    plain = _PLAIN
    return _DUMPS({k: v if type(v) in plain else _canon(v) for k, v in row.items()})


_DUMPS: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def image_hash(image: str | None) -> str | None:
    """The hash detection compares (of :func:`canonical_image`'s text)."""
    if image is None:
        return None
    return hashlib.sha256(image.encode()).hexdigest()[:32]


def row_key_text(key: tuple[Any, ...]) -> str:
    """A row key (replica key values) as text, for the tables and the conflict log."""
    return json.dumps([_canon(v) for v in key], separators=(",", ":"), ensure_ascii=False)


def entry_id(table: str, key_text: str) -> str:
    """The version table's primary key for one row: a hash of its table and key."""
    return hashlib.sha256(f"{table}\x1f{key_text}".encode()).hexdigest()


_SAME: Final = frozenset((Kind.BOOLEAN, Kind.INT16, Kind.INT32, Kind.INT64, Kind.UINT64,
                          Kind.STRING, Kind.ENUM, Kind.JSON))


def _back(kind: Kind, v: Any) -> Any:
    if v is None or kind in _SAME:
        return v
    if kind in (Kind.FLOAT32, Kind.FLOAT64):
        return float(v)
    if kind is Kind.DECIMAL:
        return Decimal(v)
    if kind is Kind.DATE:
        return dt.date.fromisoformat(v)
    if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        return dt.datetime.fromisoformat(v)
    if kind is Kind.BYTES and isinstance(v, str) and v.startswith("b64:"):
        return base64.b64decode(v[4:])
    raise ValueError(f"no way back for {kind.value}")


def from_canonical(image: str, kinds: Mapping[str, Kind]) -> dict[str, Any] | None:
    """The row a :func:`canonical_image` text was made from (column -> canonical value),
    or None when a column's kind has no way back or the result would not canonicalise to
    the same text (then the caller must not write it)."""
    try:
        stored = json.loads(image)
        row = {name: _back(kinds[name], v) for name, v in stored.items()}
    except (KeyError, ValueError, TypeError, ArithmeticError):
        return None
    return row if canonical_image(row) == image else None


#: kinds whose values read back from a replica compare reliably with a canonical image
#: (:func:`loose_value`); other columns are left out of :func:`same_row`
COMPARABLE: Final = frozenset((
    Kind.BOOLEAN, Kind.INT16, Kind.INT32, Kind.INT64, Kind.UINT64, Kind.FLOAT32, Kind.FLOAT64,
    Kind.DECIMAL, Kind.STRING, Kind.ENUM, Kind.DATE, Kind.TIMESTAMP, Kind.TIMESTAMPTZ, Kind.BYTES,
))


def loose_value(v: Any) -> str | None:
    """A value (canonical, or as a replica driver returns it) as text that is equal for
    equal data whichever side it comes from: booleans as 0/1, numbers without trailing
    zeros, floats to 6 significant digits (a 4-byte float and its text differ beyond),
    timestamps as naive UTC. Coarse on purpose: two values it calls equal may differ
    (then :func:`same_row` says "same", the safe answer for its caller)."""
    if v is None:
        return None
    if type(v) not in _PLAIN:
        v = _canon(v)
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return format(v, ".6g")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        if v[:1].isdigit() or v[:1] in "-+.":
            try:
                d = Decimal(v)
            except ArithmeticError:
                d = None
            if d is not None and d.is_finite():
                return format(d.normalize(), "f")
            try:
                t = dt.datetime.fromisoformat(v)
            except ValueError:
                return v
            if t.tzinfo is not None:
                t = t.astimezone(dt.UTC).replace(tzinfo=None)
            return t.isoformat()
        return v
    return str(v)


def same_row(image: str, row: Mapping[str, Any], kinds: Mapping[str, Kind]) -> bool:
    """Whether replica ``row`` (column -> driver value) holds canonical ``image``, on the
    columns of a :data:`COMPARABLE` kind that both have. Errs towards True."""
    stored = json.loads(image)
    for name, v in row.items():
        if (name in stored and kinds.get(name) in COMPARABLE
                and loose_value(v) != loose_value(stored[name])):
            return False
    return True
