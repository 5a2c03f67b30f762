"""Run programs: cdc change envelopes (Avro) -> rows in a replica's bulk format.

The engine's half of the applier's batch-level fast path (:class:`cdc.spi.CopiesRuns`):
consecutive records of one topic partition that are source inserts or snapshot
reads of full rows (an *insert* program), or same-key updates with a full after
image (an *update* program: no before image, or one whose key equals the after
image's), written by cdc with one value schema, become one payload of rows in the
replica's own bulk format with no Python object per row but its position text.
A program is compiled once per (value schema, replica table plan, kind) from the
envelope's writer schema; it walks the envelopes and stops, without raising, at
the first record that does not qualify (another op, a before image or a key
change, unchanged or absent columns, special values, the sink's own origin, a key
already in the run, a value that does not fit its column exactly), which then
takes the general path: that path decides every other case and names every problem.

This module knows no database: a connector supplies a :class:`RunFormat` (how a
row column maps to a converter, how a value and a row are written, and its C
extension built on ``cdc/sink/runwalk.h``, the native walker). :func:`encode_py`
here is the reference the native walker is tested against byte for byte
(``CDC_NATIVE=0`` runs it).
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from cdc.events import Column
from cdc.serde.temporal import days_from_civil
from cdc.spi import ReplicaColumn, ReplicaTable

# Instruction kinds and skip-node kinds: the numbers of runwalk.h.
I_SKIP, I_OP, I_NULL, I_BRANCH, I_POSITION, I_ORIGIN, I_EMPTY, I_COL, I_BEFORE, I_BKEY = range(10)
N_NULL, N_BOOL, N_INT, N_FLOAT, N_DOUBLE, N_BYTES, N_FIXED, N_UNION, N_RECORD, N_ARRAY, N_MAP = (
    range(11)
)

Node = tuple[int, int, tuple[int, ...]]
Instr = tuple[int, int, int, int, int, int, int, int]
Encoded = tuple[int, bytes, list[str]]
Converter = tuple[int, int, int, int, bool]  # (converter, p1, p2, p3, avro int)
DAY_US: Final = 86_400_000_000

_PRIMITIVE: Final = {
    "null": N_NULL, "boolean": N_BOOL, "int": N_INT, "long": N_INT, "float": N_FLOAT,
    "double": N_DOUBLE, "bytes": N_BYTES, "string": N_BYTES,
}  # fmt: skip
_EMPTY_FLAGS: Final = ("cdc_unchanged", "cdc_before_absent", "cdc_special_values")


class Unsupported(Exception):
    """The schema or a column type has no run encoding: the general path for all."""


class Refuse(Exception):
    """A value that does not qualify: the run ends before its record."""


class RunFormat(Protocol):
    """A replica's bulk row format (one per connector that copies runs)."""

    @property
    def module(self) -> Any:
        """The C extension of the format (``Program`` and ``encode``), or None."""
        ...

    @property
    def max_bytes(self) -> int:
        """A run ends once its payload holds this many bytes (0: no limit)."""
        ...

    def converter(self, col: Column, avro: Any, rc: ReplicaColumn) -> Converter:
        """The converter of row column ``col`` (Avro type ``avro``, named types
        resolved) into replica column ``rc``; raises :class:`Unsupported`."""
        ...

    def value(self, ins: Instr, c: Cursor) -> bytes:
        """One column's bytes in the payload (its null too); raises :class:`Refuse`."""
        ...

    def row(self, index: int, fields: list[bytes]) -> bytes:
        """Row ``index`` of a run, framed."""
        ...


@dataclass(frozen=True, slots=True)
class RunProgram:
    """A compiled program (a :class:`cdc.spi.RunEncoder`): ``columns`` is the payload's
    column list (the row's Avro order); ``updates``: it takes same-key updates (op u),
    else inserts and snapshot reads."""

    columns: tuple[str, ...]
    nodes: tuple[Node, ...]
    instructions: tuple[Instr, ...]
    program: Any  # the format's native Program, or None (pure Python)
    fmt: RunFormat
    updates: bool = False

    def encode(
        self, values: Sequence[bytes | None], start: int, stop: int, origin: str | None, header: int
    ) -> Encoded:
        """``(rows, payload, position texts)`` of the longest qualifying run of
        ``values[start:stop]`` (see the module docstring)."""
        if self.program is not None:
            got: Encoded = self.fmt.module.encode(
                self.program,
                values if type(values) is list else list(values),
                start,
                stop,
                None if origin is None else origin.encode(),
                header,
            )
            return got
        return encode_py(self, values, start, stop, origin, header)


# -- compiling --------------------------------------------------------------------------


class _Nodes:
    """Skip nodes of an Avro schema (named types resolved, recursion allowed)."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.nodes: list[Node] = []
        self._by_name: dict[str, int] = {}

    def resolve(self, t: Any, ns: str | None) -> tuple[Any, str | None]:
        """A type with named references replaced by their schema (and its namespace)."""
        while isinstance(t, str) and t not in _PRIMITIVE:
            full = t if "." in t or ns is None else f"{ns}.{t}"
            found = self.named.get(full, self.named.get(t))
            if found is None:
                raise Unsupported(f"unknown type {t}")
            t = found
            ns = _namespace(t, ns)
        return t, ns

    def node(self, t: Any, ns: str | None) -> int:
        if isinstance(t, str) and t not in _PRIMITIVE:
            full = t if "." in t or ns is None else f"{ns}.{t}"
            if full in self._by_name:
                return self._by_name[full]
            if t in self._by_name:
                return self._by_name[t]
        t, ns = self.resolve(t, ns)
        if isinstance(t, str):
            return self._add((_PRIMITIVE[t], 0, ()))
        if isinstance(t, list):
            kids = tuple(self.node(b, ns) for b in t)
            return self._add((N_UNION, 0, kids))
        kind = t.get("type")
        if kind in _PRIMITIVE:
            return self._add((_PRIMITIVE[kind], 0, ()))
        if kind == "enum":
            return self._add((N_INT, 0, ()))
        if kind == "fixed":
            return self._remember(t, ns, self._add((N_FIXED, int(t["size"]), ())))
        if kind in ("array", "map"):
            i = self._add((N_ARRAY if kind == "array" else N_MAP, 0, (0,)))
            kid = self.node(t["items"] if kind == "array" else t["values"], ns)
            self.nodes[i] = (self.nodes[i][0], 0, (kid,))
            return i
        if kind == "record":
            inner = _namespace(t, ns)
            i = self._remember(t, ns, self._add((N_RECORD, 0, ())))
            kids = tuple(self.node(f["type"], inner) for f in t.get("fields", ()))
            self.nodes[i] = (N_RECORD, 0, kids)
            return i
        if isinstance(kind, (str, list, dict)):
            return self.node(kind, ns)
        raise Unsupported(f"type {kind!r}")

    def _add(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def _remember(self, t: Mapping[str, Any], ns: str | None, i: int) -> int:
        name = str(t.get("name", ""))
        if name:
            full = name if "." in name or ns is None else f"{ns}.{name}"
            self._by_name[full] = i
            self._by_name.setdefault(name, i)
        return i


def _namespace(t: Any, ns: str | None) -> str | None:
    if not isinstance(t, dict):
        return ns
    name = str(t.get("name", ""))
    if "." in name:
        return name.rpartition(".")[0]
    return t.get("namespace") or ns


def _null_branch(t: Any) -> tuple[int, Any]:
    """(index of the null branch or -1, the other type) of ``t`` or ``["null", T]``."""
    if isinstance(t, list):
        if len(t) != 2 or "null" not in t:
            raise Unsupported("a union other than [null, T]")
        i = t.index("null")
        return i, t[1 - i]
    return -1, t


def primitive(t: Any) -> str:
    if isinstance(t, dict):
        inner = t.get("type")
        return inner if isinstance(inner, str) else ""
    return t if isinstance(t, str) else ""


def _row_column(
    fmt: RunFormat,
    nodes: _Nodes,
    field: Mapping[str, Any],
    ns: str | None,
    col: Column,
    replica: ReplicaTable,
) -> tuple[int, int, int, int, int, bool]:
    """(converter, null branch, p1, p2, p3, avro int) of row ``field`` into its replica column."""
    rc = replica.column(col.name)
    if rc is None:
        raise Unsupported(f"no replica column {col.name}")
    null_i, avro = _null_branch(field["type"])
    avro, _ = nodes.resolve(avro, ns)
    conv, p1, p2, p3, avro_int = fmt.converter(col, avro, rc)
    return conv, null_i, p1, p2, p3, avro_int


def compile_program(
    fmt: RunFormat,
    envelope: Mapping[str, Any],
    named: Mapping[str, Any],
    row_columns: Sequence[Column],
    columns: Sequence[str],
    key: Sequence[str],
    replica: ReplicaTable,
    *,
    use_native: bool = True,
    updates: bool = False,
) -> RunProgram | None:
    """The run program, in format ``fmt``, of envelopes of writer schema ``envelope``
    whose ``after`` row has ``row_columns`` (in Avro field order) into the ``columns``
    (and primary ``key``) of ``replica``; None when a column type or the schema has no
    run form. ``updates``: of same-key updates (see the module docstring), else of inserts."""
    try:
        return _compile(
            fmt, envelope, named, row_columns, columns, key, replica, use_native, updates
        )
    except (Unsupported, KeyError, TypeError, ValueError):
        return None


def _compile(
    fmt: RunFormat,
    envelope: Mapping[str, Any],
    named: Mapping[str, Any],
    row_columns: Sequence[Column],
    columns: Sequence[str],
    key: Sequence[str],
    replica: ReplicaTable,
    use_native: bool,
    updates: bool,
) -> RunProgram | None:
    nodes = _Nodes(named)
    ns = _namespace(envelope, None)
    instr: list[Instr] = []
    wanted = set(columns)
    copy_columns: list[str] = []
    seen = set()
    for f in envelope["fields"]:
        name, t = f["name"], f["type"]
        if name == "before":
            i, before_t = _null_branch(t)
            if i < 0:
                raise Unsupported("before is not nullable")
            if not updates:
                instr.append((I_NULL, i, 0, 0, 0, 0, 0, 0))
                continue
            # An update may carry a before image: its key columns must equal the after's.
            row, row_ns = nodes.resolve(before_t, ns)
            fields = row["fields"]
            if len(fields) != len(row_columns):
                raise Unsupported("before row columns")
            body: list[Instr] = []
            for rf, col in zip(fields, row_columns, strict=True):
                if col.name not in key:
                    body.append((I_SKIP, nodes.node(rf["type"], row_ns), 0, 0, 0, 0, 0, 0))
                    continue
                conv, null_i, p1, p2, p3, avro_int = _row_column(
                    fmt, nodes, rf, row_ns, col, replica
                )
                body.append((I_BKEY, conv, null_i, p1, p2, p3, 1, int(avro_int)))
            instr.append((I_BEFORE, i, len(body), 0, 0, 0, 0, 0))
            instr.extend(body)
        elif name == "after":
            i, row_t = _null_branch(t)
            if i < 0:
                raise Unsupported("after is not nullable")
            instr.append((I_BRANCH, 1 - i, 0, 0, 0, 0, 0, 0))
            row, row_ns = nodes.resolve(row_t, ns)
            fields = row["fields"]
            if len(fields) != len(row_columns):
                raise Unsupported("row columns")
            for rf, col in zip(fields, row_columns, strict=True):
                if col.name not in wanted:
                    instr.append((I_SKIP, nodes.node(rf["type"], row_ns), 0, 0, 0, 0, 0, 0))
                    continue
                conv, null_i, p1, p2, p3, avro_int = _row_column(
                    fmt, nodes, rf, row_ns, col, replica
                )
                instr.append((I_COL, conv, null_i, p1, p2, p3, int(col.name in key), int(avro_int)))
                copy_columns.append(col.name)
                seen.add(col.name)
        elif name == "source":
            src, src_ns = nodes.resolve(t, ns)
            if not isinstance(src, dict) or src.get("type") != "record":
                raise Unsupported("source is not a record")
            found = set()
            for sf in src["fields"]:
                if sf["name"] in ("cdc_position", "cdc_origin"):
                    null_i, inner = _null_branch(sf["type"])
                    if primitive(nodes.resolve(inner, src_ns)[0]) != "string":
                        raise Unsupported(f"source.{sf['name']} is not a string")
                    kind = I_POSITION if sf["name"] == "cdc_position" else I_ORIGIN
                    instr.append((kind, null_i, 0, 0, 0, 0, 0, 0))
                    found.add(sf["name"])
                else:
                    instr.append((I_SKIP, nodes.node(sf["type"], src_ns), 0, 0, 0, 0, 0, 0))
            if "cdc_position" not in found:
                raise Unsupported("no cdc_position")
        elif name == "op":
            if primitive(t) != "string":
                raise Unsupported("op is not a string")
            instr.append((I_OP, int(updates), 0, 0, 0, 0, 0, 0))
        elif name in _EMPTY_FLAGS:
            n = nodes.node(t, ns)
            if nodes.nodes[n][0] != N_UNION:
                raise Unsupported(f"{name} is not a union")
            instr.append((I_EMPTY, n, 0, 0, 0, 0, 0, 0))
        else:
            instr.append((I_SKIP, nodes.node(t, ns), 0, 0, 0, 0, 0, 0))
    kinds = {i[0] for i in instr}
    first = I_BEFORE if updates else I_NULL
    if seen != wanted or not key or not set(key) <= seen or not {I_OP, first, I_BRANCH} <= kinds:
        raise Unsupported("envelope shape")
    if any(n[0] == N_FIXED and n[1] < 0 for n in nodes.nodes):
        raise Unsupported("fixed size")
    program = None
    if use_native and fmt.module is not None:
        program = fmt.module.Program(tuple(nodes.nodes), tuple(instr), fmt.max_bytes)
    return RunProgram(tuple(copy_columns), tuple(nodes.nodes), tuple(instr), program, fmt, updates)


# -- the pure-Python reference ------------------------------------------------------------


class Cursor:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos

    def long(self) -> int:
        v = shift = 0
        while True:
            if self.pos >= len(self.buf) or shift > 63:
                raise Refuse
            b = self.buf[self.pos]
            self.pos += 1
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        v &= (1 << 64) - 1
        return (v >> 1) ^ -(v & 1)

    def take(self, n: int) -> bytes:
        if n < 0 or n > len(self.buf) - self.pos:
            raise Refuse
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def sized(self) -> bytes:
        return self.take(self.long())


def _skip(enc: RunProgram, c: Cursor, i: int, depth: int = 0) -> None:
    if depth > 64:
        raise Refuse
    kind, size, kids = enc.nodes[i]
    if kind == N_NULL:
        return
    if kind == N_BOOL:
        c.take(1)
    elif kind == N_INT:
        c.long()
    elif kind in (N_FLOAT, N_DOUBLE):
        c.take(4 if kind == N_FLOAT else 8)
    elif kind == N_BYTES:
        c.sized()
    elif kind == N_FIXED:
        c.take(size)
    elif kind == N_UNION:
        b = c.long()
        if not 0 <= b < len(kids):
            raise Refuse
        _skip(enc, c, kids[b], depth + 1)
    elif kind == N_RECORD:
        for k in kids:
            _skip(enc, c, k, depth + 1)
    else:
        while True:
            count = c.long()
            if count == 0:
                return
            if count < 0:
                c.sized()
                continue
            if count > len(c.buf) - c.pos:
                raise Refuse
            for _ in range(count):
                if kind == N_MAP:
                    c.sized()
                _skip(enc, c, kids[0], depth + 1)


def text(s: bytes) -> str:
    if b"\x00" in s:
        raise Refuse
    try:
        return s.decode("utf-8")
    except UnicodeDecodeError:
        raise Refuse from None


def tstz_micros(s: bytes) -> int:
    """µs since 1970 of a TIMESTAMPTZ as cdc writes it (ISO 8601 in UTC ending in Z, a
    fraction of six digits only when not zero); raises :class:`Refuse` otherwise."""

    if len(s) not in (20, 27) or s[-1:] != b"Z":
        raise Refuse
    t = s.decode("latin-1")
    if t[4] != "-" or t[7] != "-" or t[10] != "T" or t[13] != ":" or t[16] != ":":
        raise Refuse
    parts = (t[0:4], t[5:7], t[8:10], t[11:13], t[14:16], t[17:19])
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise Refuse
    y, mo, d, h, mi, se = (int(p) for p in parts)
    f = 0
    if len(s) == 27:
        frac = t[20:26]
        if t[19] != "." or not (frac.isascii() and frac.isdigit()) or int(frac) == 0:
            raise Refuse
        f = int(frac)
    if not (
        y >= 1
        and 1 <= mo <= 12
        and 1 <= d <= calendar.monthrange(y, mo)[1]
        and h <= 23
        and mi <= 59
        and se <= 59
    ):
        raise Refuse
    return days_from_civil(y, mo, d) * DAY_US + ((h * 60 + mi) * 60 + se) * 1_000_000 + f


def _envelope(
    enc: RunProgram, c: Cursor, origin: bytes | None, keys: set[tuple[bytes, ...]], out: list[bytes]
) -> str:
    """One envelope's row appended to ``out``; its position text."""
    fmt = enc.fmt
    fields: list[bytes] = []
    key: list[bytes] = []
    before_key: list[bytes] | None = None
    position = None
    op_ok = False
    program = enc.instructions
    i = -1
    while i + 1 < len(program):
        i += 1
        ins = program[i]
        kind, a = ins[0], ins[1]
        if kind == I_SKIP:
            _skip(enc, c, a)
        elif kind == I_OP:
            op_ok = c.sized() in ((b"u",) if a else (b"c", b"r"))
            if not op_ok:
                raise Refuse
        elif kind == I_BEFORE:
            b = c.long()
            if b not in (0, 1):
                raise Refuse
            if b == a:
                i += ins[2]  # no before image
            else:
                before_key = []
        elif kind == I_BKEY:
            assert before_key is not None
            before_key.append(fmt.value(ins, c))
        elif kind in (I_NULL, I_BRANCH):
            if c.long() != a:
                raise Refuse
        elif kind in (I_POSITION, I_ORIGIN):
            s: bytes | None = None
            if a >= 0:
                b = c.long()
                if b not in (0, 1):
                    raise Refuse
                if b != a:
                    s = c.sized()
            else:
                s = c.sized()
            if kind == I_POSITION:
                if not s:
                    raise Refuse
                position = s
            elif s is not None and origin is not None and s == origin:
                raise Refuse
        elif kind == I_EMPTY:
            _, _, kids = enc.nodes[a]
            b = c.long()
            if not 0 <= b < len(kids):
                raise Refuse
            k = enc.nodes[kids[b]][0]
            if k == N_NULL:
                continue
            if k not in (N_ARRAY, N_MAP) or c.long() != 0:
                raise Refuse
        else:
            f = fmt.value(ins, c)
            fields.append(f)
            if ins[6]:
                key.append(f)
    if c.pos != len(c.buf) or not op_ok or position is None:
        raise Refuse
    position_text = text(position)
    joined = tuple(key)
    if before_key is not None and tuple(before_key) != joined:
        raise Refuse  # a key change: the general path moves the row
    if joined in keys:
        raise Refuse
    keys.add(joined)
    out.append(fmt.row(len(out), fields))
    return position_text


def encode_py(
    enc: RunProgram,
    values: Sequence[bytes | None],
    start: int,
    stop: int,
    origin: str | None,
    header: int,
) -> Encoded:
    """The reference of the native ``encode`` (same arguments, same result)."""
    out: list[bytes] = []
    positions: list[str] = []
    keys: set[tuple[bytes, ...]] = set()
    frame = None
    o = None if origin is None else origin.encode()
    size, limit = 0, enc.fmt.max_bytes
    for i in range(max(0, start), min(stop, len(values))):
        v = values[i]
        if type(v) is not bytes or len(v) < header:
            break
        if frame is None:
            frame = v[:header]
        elif v[:header] != frame:
            break
        try:
            positions.append(_envelope(enc, Cursor(v, header), o, keys, out))
        except Refuse:
            break
        size += len(out[-1])
        if limit and size >= limit:
            break  # the payload is full: the next run starts here
    return len(out), b"".join(out), positions
