"""``cdc verify``: compare source tables with their replicas, row by row, cheaply.

For each table of a source (filtered by the source's ``tables`` and the
command's ``--table``) and each sink that subscribes to its topic, the
replica table the sink writes (``tables.name_map``) is compared on the
columns the sink writes (``tables.columns``):

1. row counts;
2. chunked checksums. With a single integer primary key, chunks are key
   ranges ``[lo, hi)`` read with ``WHERE k >= lo AND k < hi`` on both sides;
   otherwise rows are bucketed by a hash of their key (collations differ
   between databases, so key *ranges* of strings would not select the same
   rows on both sides). A chunk's checksum is the count and the sum of a
   64-bit hash of each row;
3. drill-down: only chunks whose checksums differ are read again, keeping
   per-key hashes, which gives the missing, extra and different keys.

Tables without a primary key are compared as multisets of whole rows (the
compared columns): rows are bucketed by the hash of their normalised image,
a bucket's checksum (count, sum of row hashes) counts every duplicate, and
the drill-down counts each distinct row on both sides, reporting the rows
the replica holds fewer times (missing) or more times (extra) than the source.

Values are normalised to one canonical text per neutral kind before hashing
(numbers without trailing zeros, timestamps in UTC, JSON re-serialised with
sorted keys, bit strings as integers, arrays as JSON lists...), so a
PostgreSQL table and its MariaDB replica compare equal when they hold the
same data. Verification reads live tables: rows changing while it runs show
up as differences; run it when the pipeline has caught up (or run it twice).

Exit status: 0 all equal, 1 divergence found, 2 error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import click

from cdc.config import load_config
from cdc.errors import CdcError, ConfigError
from cdc.events import Kind
from cdc.observability.logging import setup_logging
from cdc.registry import get_connector
from cdc.sink.schema import ColumnSelection, ReplicaSchemas, table_settings
from cdc.spi import KeyRange, ReplicaColumn, TableName, TableReader

log = logging.getLogger(__name__)

Normalizer = Callable[[Any], str | None]

_INTEGER_KINDS = {Kind.INT16, Kind.INT32, Kind.INT64, Kind.UINT64}
_MASK = (1 << 64) - 1


# --------------------------------------------------------------------------- normalisation


def _text(v: Any) -> str:
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).decode("utf-8", "surrogateescape")
    return str(v)


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return repr(v)
        v = Decimal(repr(v))
    try:
        d = v if isinstance(v, Decimal) else Decimal(_text(v).strip())
    except InvalidOperation:
        return _text(v)
    if not d.is_finite():
        return str(d)
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def _float(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _text(v)
    if f == 0.0:
        f = 0.0  # -0.0
    return repr(f)


def _json(v: Any) -> str:
    if isinstance(v, str | bytes | bytearray | memoryview):
        try:
            v = json.loads(_text(v))
        except ValueError:
            return _text(v)
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _bytes(v: Any) -> str:
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()
    s = _text(v)
    if s.startswith("\\x"):
        return s[2:].lower()
    try:
        return base64.b64decode(s, validate=True).hex()  # inside JSON arrays (values.json_value)
    except ValueError:
        return s


def _bits(v: Any) -> str:
    if isinstance(v, bytes | bytearray | memoryview):
        return str(int.from_bytes(bytes(v), "big"))
    if isinstance(v, int):
        return str(v)
    s = _text(v)
    return str(int(s, 2)) if s and set(s) <= {"0", "1"} else s


def _uuid(v: Any) -> str:
    try:
        return str(v if isinstance(v, uuid.UUID) else uuid.UUID(_text(v)))
    except ValueError:
        return _text(v)


def _date(v: Any) -> str:
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    s = _text(v)
    try:
        return date.fromisoformat(s).isoformat()
    except ValueError:
        return s  # infinity, -infinity, 0000-00-00, BC dates


def _micros(td: timedelta) -> str:
    return str(td // timedelta(microseconds=1))


def _time(v: Any) -> str:
    if isinstance(v, timedelta):
        return _micros(v)
    if isinstance(v, time):
        return _micros(timedelta(hours=v.hour, minutes=v.minute, seconds=v.second,
                                 microseconds=v.microsecond))
    s = _text(v)
    if s.startswith(("P", "-P")):  # a PostgreSQL interval column holding a MySQL TIME
        parts = _interval(s).split(",")
        if len(parts) != 3 or parts[0] != "0":
            return s
        return str(int(parts[1]) * 86_400_000_000 + int(parts[2]))
    # MySQL TIME text, or an interval in IntervalStyle postgres (a day part only when
    # a person wrote it so: the sink writes [-]H:MM:SS).
    m = _TIME_TEXT.fullmatch(s)
    if m is None or not (m.group(1) or m.group(3)):
        return s
    days, sign, h, mi, se, frac = m.groups()
    us = ((int(h or 0) * 60 + int(mi or 0)) * 60 + int(se or 0)) * 1_000_000
    us += int((frac or "0").ljust(6, "0"))
    return str(int(days or 0) * 86_400_000_000 + (-us if sign == "-" else us))


_TIME_TEXT = re.compile(r"(?:([+-]?\d+) days?)? ?(?:([+-]?)(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?")


_TZ_SHORT = re.compile(r"([+-]\d\d)$")


def _timetz(v: Any) -> str:
    if isinstance(v, time):
        return v.isoformat()
    s = _TZ_SHORT.sub(r"\1:00", _text(v))
    try:
        return time.fromisoformat(s).isoformat()
    except ValueError:
        return s


def _datetime(v: Any) -> str:
    if isinstance(v, datetime):
        dt = v
    else:
        s = _text(v)
        try:
            dt = datetime.fromisoformat(_TZ_SHORT.sub(r"\1:00", s))
        except ValueError:
            return s  # infinity, zero dates
    if dt.tzinfo is not None:  # naive values of a zoned column are UTC (the sink's convention)
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.isoformat(sep=" ")


_ISO_DURATION = re.compile(
    r"(?P<sign>-)?P(?:(?P<y>-?\d+)Y)?(?:(?P<mo>-?\d+)M)?(?:(?P<w>-?\d+)W)?(?:(?P<d>-?\d+)D)?"
    r"(?:T(?:(?P<h>-?\d+)H)?(?:(?P<mi>-?\d+)M)?(?:(?P<s>-?\d+(?:\.\d+)?)S)?)?"
)


def _interval(v: Any) -> str:
    if isinstance(v, timedelta):
        return f"0,{v.days},{_micros(timedelta(seconds=v.seconds, microseconds=v.microseconds))}"
    s = _text(v).strip()
    m = _ISO_DURATION.fullmatch(s)
    if m is None or s in ("P", "PT"):
        return s
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    months = int(g.get("y", 0)) * 12 + int(g.get("mo", 0))
    days = int(g.get("w", 0)) * 7 + int(g.get("d", 0))
    us = (int(g.get("h", 0)) * 3600 + int(g.get("mi", 0)) * 60) * 1_000_000
    us += int(Decimal(g.get("s", "0")) * 1_000_000)
    if g.get("sign"):
        months, days, us = -months, -days, -us
    return f"{months},{days},{us}"


def _string(v: Any) -> str:
    return _text(v)


_BY_KIND: dict[Kind, Normalizer] = {
    Kind.BOOLEAN: _num,
    Kind.INT16: _num,
    Kind.INT32: _num,
    Kind.INT64: _num,
    Kind.UINT64: _num,
    Kind.DECIMAL: _num,
    Kind.FLOAT32: _float,
    Kind.FLOAT64: _float,
    Kind.JSON: _json,
    Kind.BYTES: _bytes,
    Kind.GEOMETRY: _bytes,
    Kind.BITS: _bits,
    Kind.UUID: _uuid,
    Kind.DATE: _date,
    Kind.TIME: _time,
    Kind.TIMETZ: _timetz,
    Kind.TIMESTAMP: _datetime,
    Kind.TIMESTAMPTZ: _datetime,
    Kind.INTERVAL: _interval,
}


def normalizer(kind: Kind | None, element: Kind | None = None) -> Normalizer:
    """The canonical text of a value of ``kind`` (None stays None)."""
    if kind is Kind.ARRAY:
        inner = normalizer(element)

        def array(v: Any) -> str | None:
            if isinstance(v, str | bytes | bytearray | memoryview):
                try:
                    v = json.loads(_text(v))
                except ValueError:
                    return _text(v)
            if not isinstance(v, list):
                return _text(v)
            return json.dumps(_nested(v, inner), separators=(",", ":"), ensure_ascii=False)

        return array
    base = _BY_KIND.get(kind, _string) if kind is not None else _string

    def norm(v: Any) -> str | None:
        return None if v is None else base(v)

    return norm


def _nested(v: list[Any], inner: Normalizer) -> list[Any]:
    return [_nested(x, inner) if isinstance(x, list) else inner(x) for x in v]


def pair_kind(source: ReplicaColumn, replica: ReplicaColumn | None) -> tuple[Kind | None, Kind | None]:
    """The kind (and array element kind) both sides of a column are compared as."""
    kinds = {source.kind, None if replica is None else replica.kind}
    if Kind.ARRAY in kinds:
        element = source.element or (replica.element if replica is not None else None)
        return Kind.ARRAY, element
    if Kind.JSON in kinds:
        return Kind.JSON, None
    if source.kind is Kind.STRING and replica is not None and replica.kind not in (None, Kind.STRING):
        return replica.kind, replica.element  # e.g. a MariaDB source's text stored as uuid
    return source.kind, None


# --------------------------------------------------------------------------- comparison


@dataclass(slots=True)
class TableReport:
    source: str
    replica: str
    source_rows: int = 0
    replica_rows: int = 0
    chunks: int = 0
    differing_chunks: int = 0
    missing: list[tuple[str | None, ...]] = field(default_factory=list)
    extra: list[tuple[str | None, ...]] = field(default_factory=list)
    different: list[tuple[str | None, ...]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.different or self.problems) and (
            self.source_rows == self.replica_rows
        )


class _Side:
    def __init__(self, reader: TableReader, table: TableName, columns: Sequence[str],
                 norms: Sequence[Normalizer], key_count: int) -> None:
        self.reader = reader
        self.table = table
        self.columns = list(columns)
        self.norms = list(norms)
        self.key_count = key_count

    def rows(self, key_range: KeyRange | None = None) -> Iterator[tuple[tuple[str | None, ...], int]]:
        """(normalised key, row hash) of every row (in a key range)."""
        norms = self.norms
        k = self.key_count
        for row in self.reader.scan(self.table, self.columns, key_range=key_range):
            values = tuple(n(v) for n, v in zip(norms, row, strict=True))
            data = "\x1e".join("\x00" if v is None else v for v in values).encode(
                "utf-8", "surrogatepass"
            )
            yield values[:k], int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _bucket(key: tuple[str | None, ...], buckets: int) -> int:
    data = "\x1e".join("\x00" if v is None else v for v in key).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") % buckets


def _diff(report: TableReport, src: dict[Any, int], dst: dict[Any, int], max_keys: int) -> None:
    for key, h in src.items():
        other = dst.get(key)
        if other is None:
            if len(report.missing) < max_keys:
                report.missing.append(key)
        elif other != h and len(report.different) < max_keys:
            report.different.append(key)
    for key in dst:
        if key not in src and len(report.extra) < max_keys:
            report.extra.append(key)


def verify_table(
    source: TableReader,
    source_table: TableName,
    replica: TableReader,
    replica_table: TableName,
    *,
    columns: ColumnSelection | None = None,
    chunk_rows: int = 10_000,
    max_keys: int = 100,
) -> TableReport:
    """Compare one source table with one replica table (see the module docstring)."""
    report = TableReport(str(source_table), str(replica_table))
    sdesc = source.describe(source_table)
    if sdesc is None:
        report.problems.append(f"source table {source_table} does not exist")
        return report
    report.source_rows = source.count(source_table)
    rdesc = replica.describe(replica_table)
    if rdesc is None:
        report.problems.append(f"replica table {replica_table} does not exist")
        return report
    report.replica_rows = replica.count(replica_table)
    key = list(sdesc.primary_key)  # empty: a table without one, compared as a multiset
    selection = columns or ColumnSelection()
    compared = [c for c in sdesc.columns if selection.keeps(c.name, key)]
    lacking = [c.name for c in compared if rdesc.column(c.name) is None]
    if lacking:
        report.problems.append(f"replica table lacks columns {lacking}")
        compared = [c for c in compared if c.name not in lacking]
    ordered = [sdesc.column(k) for k in key] + [c for c in compared if c.name not in key]
    names = [c.name for c in ordered if c is not None]
    norms = []
    for name in names:
        sc = sdesc.column(name)
        assert sc is not None
        kind, element = pair_kind(sc, rdesc.column(name))
        norms.append(normalizer(kind, element))
    # A keyless table's "key" is its whole row: equal rows are indistinguishable.
    s_side = _Side(source, source_table, names, norms, len(key) or len(names))
    r_side = _Side(replica, replica_table, names, norms, len(key) or len(names))
    total = max(report.source_rows, report.replica_rows, 1)
    n_chunks = max(1, math.ceil(total / chunk_rows))
    if not key:
        _multiset(report, s_side, r_side, n_chunks, max_keys)
        return report
    k0 = sdesc.column(key[0])
    r0 = rdesc.column(key[0])
    if len(key) == 1 and k0 is not None and k0.kind in _INTEGER_KINDS and r0 is not None and (
        r0.kind in _INTEGER_KINDS or r0.kind is Kind.DECIMAL
    ):
        _by_ranges(report, s_side, r_side, source_table, replica_table, key[0], n_chunks, max_keys)
    else:
        _by_buckets(report, s_side, r_side, n_chunks, max_keys)
    return report


def _by_ranges(report: TableReport, s: _Side, r: _Side, st: TableName, rt: TableName, key: str,
               n_chunks: int, max_keys: int) -> None:
    bounds = [b for b in (*s.reader.key_bounds(st, key), *r.reader.key_bounds(rt, key))
              if b is not None]
    if not bounds:
        return
    lo, hi = int(min(bounds)), int(max(bounds)) + 1
    width = max(1, math.ceil((hi - lo) / n_chunks))
    for a in range(lo, hi, width):
        rng: KeyRange = (key, a, a + width)
        report.chunks += 1
        sums = []
        for side in (s, r):
            count = total = 0
            for _, h in side.rows(rng):
                count += 1
                total = (total + h) & _MASK
            sums.append((count, total))
        if sums[0] == sums[1]:
            continue
        report.differing_chunks += 1
        _diff(report, dict(s.rows(rng)), dict(r.rows(rng)), max_keys)


def _by_buckets(report: TableReport, s: _Side, r: _Side, n_chunks: int, max_keys: int) -> None:
    sums: list[list[list[int]]] = []
    for side in (s, r):
        acc = [[0, 0] for _ in range(n_chunks)]
        for k, h in side.rows():
            b = acc[_bucket(k, n_chunks)]
            b[0] += 1
            b[1] = (b[1] + h) & _MASK
        sums.append(acc)
    report.chunks = n_chunks
    bad = {i for i in range(n_chunks) if sums[0][i] != sums[1][i]}
    report.differing_chunks = len(bad)
    if not bad:
        return

    def pick(side: _Side) -> dict[Any, int]:
        return {k: h for k, h in side.rows() if _bucket(k, n_chunks) in bad}

    _diff(report, pick(s), pick(r), max_keys)


def _multiset(report: TableReport, s: _Side, r: _Side, n_chunks: int, max_rows: int) -> None:
    """Compare two tables without a primary key as multisets of (normalised) rows."""
    sums: list[list[list[int]]] = []
    for side in (s, r):
        acc = [[0, 0] for _ in range(n_chunks)]
        for _, h in side.rows():
            b = acc[h % n_chunks]
            b[0] += 1
            b[1] = (b[1] + h) & _MASK
        sums.append(acc)
    report.chunks = n_chunks
    bad = {i for i in range(n_chunks) if sums[0][i] != sums[1][i]}
    report.differing_chunks = len(bad)
    if not bad:
        return

    def count(side: _Side) -> Counter[tuple[str | None, ...]]:
        return Counter(row for row, h in side.rows() if h % n_chunks in bad)

    src, dst = count(s), count(r)
    for rows, more, fewer in ((report.missing, src, dst), (report.extra, dst, src)):
        for row, n in more.items():
            for _ in range(n - fewer.get(row, 0)):
                if len(rows) < max_rows:
                    rows.append(row)


# --------------------------------------------------------------------------- the command


def _key_text(key: Iterable[str | None]) -> str:
    return "(" + ", ".join("NULL" if v is None else v for v in key) + ")"


def print_report(report: TableReport, label: str, echo: Callable[[str], None] = click.echo) -> None:
    status = "OK  " if report.ok else "DIFF"
    echo(f"{status} {label}: source {report.source_rows} rows, replica {report.replica_rows} rows"
         f" ({report.chunks} chunks, {report.differing_chunks} differing)")
    for p in report.problems:
        echo(f"     problem: {p}")
    for what, keys in (("missing on replica", report.missing), ("extra on replica", report.extra),
                       ("different", report.different)):
        if keys:
            echo(f"     {what}: {', '.join(_key_text(k) for k in keys)}")


@click.command("verify")
@click.argument("config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", "source_name", required=True, help="Source whose tables to compare.")
@click.option("--sink", "sink_names", multiple=True, help="Replicas to compare (default: every "
              "sink subscribed to the source's topics).")
@click.option("--table", "tables", multiple=True,
              help="Only these tables (schema.table or database.table, * wildcards).")
@click.option("--chunk-rows", type=click.IntRange(1), default=10_000, show_default=True,
              help="Rows per checksum chunk.")
@click.option("--max-keys", type=click.IntRange(1), default=100, show_default=True,
              help="Divergent keys printed per table and kind.")
def verify_command(config_path: Path, source_name: str, sink_names: tuple[str, ...],
                   tables: tuple[str, ...], chunk_rows: int, max_keys: int) -> None:
    """Compare a source's tables with each replica; exit 1 on divergence (docs/SINK.md)."""
    try:
        config = load_config(config_path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    setup_logging(config.log.level, config.log.format)
    try:
        source: Any = config.source(source_name)
        sinks: list[Any] = [config.sink(n) for n in sink_names] if sink_names else list(config.sinks)
    except KeyError as e:
        raise click.ClickException(str(e.args[0])) from None
    divergent = False
    try:
        src_reader = get_connector(source.kind).create_dialect().open_reader(source.connection)
        try:
            names = [t for t in src_reader.list_tables()
                     if source.tables.matches(f"{t.schema}.{t.name}")
                     # The signal table is never published (cdc.runtime.incremental).
                     and not (source.signal is not None
                              and f"{t.schema}.{t.name}" == source.signal.table)
                     and (not tables or any(fnmatchcase(f"{t.schema}.{t.name}", p) for p in tables))]
            compared = 0
            for sink in sinks:
                n, bad = _verify_sink(source, sink, src_reader, names, chunk_rows, max_keys)
                compared += n
                divergent |= bad
        finally:
            src_reader.close()
    except CdcError as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(2) from None
    if compared == 0:
        # Comparing nothing must never read as "equal".
        click.echo(f"error: no table of source {source_name} was compared with any replica "
                   f"({len(names)} source tables matched its filters)", err=True)
        raise SystemExit(2)
    raise SystemExit(1 if divergent else 0)


def _verify_sink(source: Any, sink: Any, src_reader: TableReader, names: list[TableName],
                 chunk_rows: int, max_keys: int) -> tuple[int, bool]:
    """How many tables were compared with this sink's replica, and whether any differs."""
    dialect = get_connector(sink.kind).create_dialect()
    schemas = ReplicaSchemas(table_settings(sink, dialect.default_schema(sink)))
    selections = schemas.settings.columns or {}
    divergent = False
    pairs = []
    source_connector = get_connector(source.kind)
    for t in names:
        table_id = source_connector.table_id(t)
        topic = source.topic_for(table_id)
        own = sink.conflicts is not None and sink.conflicts.owns(topic)
        if sink.subscribes(topic) and not own:  # a master-master node is not its own replica
            pairs.append((t, topic, schemas.target(topic, table_id)))
    if not pairs:
        click.echo(f"sink {sink.name}: subscribes to none of the compared tables")
        return 0, False
    reader = dialect.open_reader(sink.target)
    try:
        for t, topic, target in pairs:
            report = verify_table(src_reader, t, reader, target, columns=selections.get(topic),
                                  chunk_rows=chunk_rows, max_keys=max_keys)
            print_report(report, f"{topic} -> {sink.name} {target}")
            divergent |= not report.ok
    finally:
        reader.close()
    return len(pairs), divergent


__all__ = [
    "TableReport",
    "normalizer",
    "print_report",
    "verify_command",
    "verify_table",
]
