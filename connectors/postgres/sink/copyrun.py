"""Runs of rows as one binary COPY payload, built straight from the Avro values.

The applier's batch-level fast path (:class:`cdc.spi.CopiesRuns`): consecutive
records of one topic partition that are source inserts or snapshot reads of
full rows (an *insert* encoder), or same-key updates with a full after image
(an *update* encoder: no before image, or one whose key equals the after
image's), written by cdc with one value schema, become the tuples of one
binary ``COPY`` with no Python object per row but its position text. A
:class:`RunEncoder` is compiled once per (value schema, replica table plan,
kind) from the envelope's writer schema and the replica's column types; it
walks the envelopes and stops, without raising, at the first record that does
not qualify (another op, a before image or a key change, unchanged or absent
columns, special values, the sink's own origin, a key already in the run, a
value that does not fit its column exactly), which then takes the general
path: that path decides every other case and names every problem.

The encoder runs in C (``_ccopy.c``) when built; :func:`encode_py` here is
the reference it is tested against byte for byte (``CDC_NATIVE=0`` runs it).
Column types it does not convert (arrays, json, enums, time, interval, bits,
variable-scale decimals, cross-type pairs) make :func:`compile_encoder`
return None: that table's records keep the general path.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cdc import native
from cdc.events import Column, Kind
from cdc.spi import ReplicaTable

_ccopy = native.load("connectors.postgres.sink._ccopy")

# Instruction kinds, skip-node kinds and converters: the numbers of _ccopy.c.
I_SKIP, I_OP, I_NULL, I_BRANCH, I_POSITION, I_ORIGIN, I_EMPTY, I_COL, I_BEFORE, I_BKEY = range(10)
N_NULL, N_BOOL, N_INT, N_FLOAT, N_DOUBLE, N_BYTES, N_FIXED, N_UNION, N_RECORD, N_ARRAY, N_MAP = range(11)
(C_BOOL, C_INT2, C_INT4, C_INT8, C_FLOAT4, C_FLOAT8, C_TEXT, C_BYTEA, C_DATE, C_TS, C_TSTZ, C_UUID,
 C_NUMERIC) = range(1, 14)  # fmt: skip

HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER: Final = b"\xff\xff"

Node = tuple[int, int, tuple[int, ...]]
Instr = tuple[int, int, int, int, int, int, int, int]
Encoded = tuple[int, bytes, list[str]]

_PRIMITIVE: Final = {
    "null": N_NULL, "boolean": N_BOOL, "int": N_INT, "long": N_INT, "float": N_FLOAT,
    "double": N_DOUBLE, "bytes": N_BYTES, "string": N_BYTES,
}  # fmt: skip
_EMPTY_FLAGS: Final = ("cdc_unchanged", "cdc_before_absent", "cdc_special_values")


class _Unsupported(Exception):
    """The schema or a column type has no run encoding: the general path for all."""


@dataclass(frozen=True, slots=True)
class RunEncoder:
    """A compiled program: ``columns`` is the COPY column list (the row's Avro order);
    ``updates``: it takes same-key updates (op u), else inserts and snapshot reads."""

    columns: tuple[str, ...]
    nodes: tuple[Node, ...]
    instructions: tuple[Instr, ...]
    program: Any  # the _ccopy.Program, or None (pure Python)
    updates: bool = False

    def encode(
        self, values: Sequence[bytes | None], start: int, stop: int, origin: str | None, header: int
    ) -> Encoded:
        """``(rows, tuples, position texts)`` of the longest qualifying run of
        ``values[start:stop]`` (see the module docstring)."""
        if self.program is not None:
            got: Encoded = _ccopy.encode(  # type: ignore[union-attr]
                self.program, values if type(values) is list else list(values), start, stop,
                None if origin is None else origin.encode(), header,
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
                raise _Unsupported(f"unknown type {t}")
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
        raise _Unsupported(f"type {kind!r}")

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
            raise _Unsupported("a union other than [null, T]")
        i = t.index("null")
        return i, t[1 - i]
    return -1, t


def _primitive(t: Any) -> str:
    if isinstance(t, dict):
        inner = t.get("type")
        return inner if isinstance(inner, str) else ""
    return t if isinstance(t, str) else ""


def _column(col: Column, avro: Any, rc: Any) -> tuple[int, int, int, int, bool]:
    """(converter, p1, p2, p3, avro int) of one row column into replica column ``rc``."""
    k = col.type.kind
    prim = _primitive(avro)
    dt = rc.data_type
    if k is Kind.BOOLEAN and dt == "bool" and prim == "boolean":
        return C_BOOL, 0, 0, 0, False
    if k in (Kind.INT16, Kind.INT32, Kind.INT64) and prim in ("int", "long"):
        conv = {"int2": C_INT2, "int4": C_INT4, "int8": C_INT8}.get(dt)
        if conv is not None:
            return conv, 0, 0, 0, prim == "int"
    if k is Kind.FLOAT32 and dt == "float4" and prim == "float":
        return C_FLOAT4, 0, 0, 0, False
    if k is Kind.FLOAT64 and dt == "float8" and prim == "double":
        return C_FLOAT8, 0, 0, 0, False
    if k is Kind.STRING and dt in ("text", "varchar") and prim == "string":
        limit = rc.length if dt == "varchar" and rc.length is not None else -1
        return C_TEXT, limit, 0, 0, False
    if k is Kind.BYTES and dt == "bytea" and prim == "bytes":
        return C_BYTEA, 0, 0, 0, False
    if k is Kind.DATE and dt == "date" and prim == "int":
        return C_DATE, 0, 0, 0, False
    if k is Kind.TIMESTAMP and dt == "timestamp" and prim == "long":
        return C_TS, 6 if rc.fraction is None else rc.fraction, 0, 0, False
    if k is Kind.TIMESTAMPTZ and dt == "timestamptz" and prim == "string":
        return C_TSTZ, 6 if rc.fraction is None else rc.fraction, 0, 0, False
    if k is Kind.UUID and dt == "uuid" and prim == "string":
        return C_UUID, 0, 0, 0, False
    if (k is Kind.DECIMAL and dt == "numeric" and prim == "bytes" and isinstance(avro, dict)
            and avro.get("logicalType") == "decimal"):
        scale = int(avro.get("scale", 0))
        if 0 <= scale <= 38 and int(avro.get("precision", 0)) <= 38:
            if rc.precision is None:
                return C_NUMERIC, scale, -1, 0, False
            return C_NUMERIC, scale, rc.precision, rc.scale or 0, False
    raise _Unsupported(f"column {col.name} ({k.value} -> {dt})")


def _row_column(
    nodes: _Nodes, field: Mapping[str, Any], ns: str | None, col: Column, replica: ReplicaTable
) -> tuple[int, int, int, int, int, bool]:
    """(converter, null branch, p1, p2, p3, avro int) of row ``field`` into its replica column."""
    rc = replica.column(col.name)
    if rc is None:
        raise _Unsupported(f"no replica column {col.name}")
    null_i, avro = _null_branch(field["type"])
    avro, _ = nodes.resolve(avro, ns)
    conv, p1, p2, p3, avro_int = _column(col, avro, rc)
    return conv, null_i, p1, p2, p3, avro_int


def compile_encoder(
    envelope: Mapping[str, Any],
    named: Mapping[str, Any],
    row_columns: Sequence[Column],
    columns: Sequence[str],
    key: Sequence[str],
    replica: ReplicaTable,
    *,
    use_native: bool = True,
    updates: bool = False,
) -> RunEncoder | None:
    """The run encoder of envelopes of writer schema ``envelope`` whose ``after`` row
    has ``row_columns`` (in Avro field order) into the ``columns`` (and primary
    ``key``) of ``replica``; None when a column type or the schema has no run form.
    ``updates``: of same-key updates (see the module docstring), else of inserts."""
    try:
        return _compile(envelope, named, row_columns, columns, key, replica, use_native, updates)
    except (_Unsupported, KeyError, TypeError, ValueError):
        return None


def _compile(
    envelope: Mapping[str, Any],
    named: Mapping[str, Any],
    row_columns: Sequence[Column],
    columns: Sequence[str],
    key: Sequence[str],
    replica: ReplicaTable,
    use_native: bool,
    updates: bool,
) -> RunEncoder | None:
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
                raise _Unsupported("before is not nullable")
            if not updates:
                instr.append((I_NULL, i, 0, 0, 0, 0, 0, 0))
                continue
            # An update may carry a before image: its key columns must equal the after's.
            row, row_ns = nodes.resolve(before_t, ns)
            fields = row["fields"]
            if len(fields) != len(row_columns):
                raise _Unsupported("before row columns")
            body: list[Instr] = []
            for rf, col in zip(fields, row_columns, strict=True):
                if col.name not in key:
                    body.append((I_SKIP, nodes.node(rf["type"], row_ns), 0, 0, 0, 0, 0, 0))
                    continue
                conv, null_i, p1, p2, p3, avro_int = _row_column(nodes, rf, row_ns, col, replica)
                body.append((I_BKEY, conv, null_i, p1, p2, p3, 1, int(avro_int)))
            instr.append((I_BEFORE, i, len(body), 0, 0, 0, 0, 0))
            instr.extend(body)
        elif name == "after":
            i, row_t = _null_branch(t)
            if i < 0:
                raise _Unsupported("after is not nullable")
            instr.append((I_BRANCH, 1 - i, 0, 0, 0, 0, 0, 0))
            row, row_ns = nodes.resolve(row_t, ns)
            fields = row["fields"]
            if len(fields) != len(row_columns):
                raise _Unsupported("row columns")
            for rf, col in zip(fields, row_columns, strict=True):
                if col.name not in wanted:
                    instr.append((I_SKIP, nodes.node(rf["type"], row_ns), 0, 0, 0, 0, 0, 0))
                    continue
                conv, null_i, p1, p2, p3, avro_int = _row_column(nodes, rf, row_ns, col, replica)
                instr.append((I_COL, conv, null_i, p1, p2, p3, int(col.name in key), int(avro_int)))
                copy_columns.append(col.name)
                seen.add(col.name)
        elif name == "source":
            src, src_ns = nodes.resolve(t, ns)
            if not isinstance(src, dict) or src.get("type") != "record":
                raise _Unsupported("source is not a record")
            found = set()
            for sf in src["fields"]:
                if sf["name"] in ("cdc_position", "cdc_origin"):
                    null_i, inner = _null_branch(sf["type"])
                    if _primitive(nodes.resolve(inner, src_ns)[0]) != "string":
                        raise _Unsupported(f"source.{sf['name']} is not a string")
                    kind = I_POSITION if sf["name"] == "cdc_position" else I_ORIGIN
                    instr.append((kind, null_i, 0, 0, 0, 0, 0, 0))
                    found.add(sf["name"])
                else:
                    instr.append((I_SKIP, nodes.node(sf["type"], src_ns), 0, 0, 0, 0, 0, 0))
            if "cdc_position" not in found:
                raise _Unsupported("no cdc_position")
        elif name == "op":
            if _primitive(t) != "string":
                raise _Unsupported("op is not a string")
            instr.append((I_OP, int(updates), 0, 0, 0, 0, 0, 0))
        elif name in _EMPTY_FLAGS:
            n = nodes.node(t, ns)
            if nodes.nodes[n][0] != N_UNION:
                raise _Unsupported(f"{name} is not a union")
            instr.append((I_EMPTY, n, 0, 0, 0, 0, 0, 0))
        else:
            instr.append((I_SKIP, nodes.node(t, ns), 0, 0, 0, 0, 0, 0))
    kinds = {i[0] for i in instr}
    first = I_BEFORE if updates else I_NULL
    if seen != wanted or not key or not set(key) <= seen or not {I_OP, first, I_BRANCH} <= kinds:
        raise _Unsupported("envelope shape")
    if any(n[0] == N_FIXED and n[1] < 0 for n in nodes.nodes):
        raise _Unsupported("fixed size")
    program = None
    if use_native and _ccopy is not None:
        program = _ccopy.Program(tuple(nodes.nodes), tuple(instr))
    return RunEncoder(tuple(copy_columns), tuple(nodes.nodes), tuple(instr), program, updates)


# -- the pure-Python reference ------------------------------------------------------------


class _Refuse(Exception):
    pass


_PG_EPOCH_DAYS: Final = 10957
_DAY_US: Final = 86_400_000_000
_MIN_DAYS: Final = -719162
_MAX_DAYS: Final = 2932896
_I16: Final = struct.Struct("!h")
_I32: Final = struct.Struct("!i")
_I64: Final = struct.Struct("!q")
_U32: Final = struct.Struct("!I")
_HEX: Final = frozenset(b"0123456789abcdef")


class _Cursor:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos

    def long(self) -> int:
        v = shift = 0
        while True:
            if self.pos >= len(self.buf) or shift > 63:
                raise _Refuse
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
            raise _Refuse
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def sized(self) -> bytes:
        return self.take(self.long())


def _skip(enc: RunEncoder, c: _Cursor, i: int, depth: int = 0) -> None:
    if depth > 64:
        raise _Refuse
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
            raise _Refuse
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
                raise _Refuse
            for _ in range(count):
                if kind == N_MAP:
                    c.sized()
                _skip(enc, c, kids[0], depth + 1)


def _text(s: bytes) -> str:
    if b"\x00" in s:
        raise _Refuse
    try:
        return s.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refuse from None


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _tstz(s: bytes) -> int:
    import calendar

    if len(s) not in (20, 27) or s[-1:] != b"Z":
        raise _Refuse
    t = s.decode("latin-1")
    if t[4] != "-" or t[7] != "-" or t[10] != "T" or t[13] != ":" or t[16] != ":":
        raise _Refuse
    parts = (t[0:4], t[5:7], t[8:10], t[11:13], t[14:16], t[17:19])
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise _Refuse
    y, mo, d, h, mi, se = (int(p) for p in parts)
    f = 0
    if len(s) == 27:
        frac = t[20:26]
        if t[19] != "." or not (frac.isascii() and frac.isdigit()) or int(frac) == 0:
            raise _Refuse
        f = int(frac)
    if not (y >= 1 and 1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]
            and h <= 23 and mi <= 59 and se <= 59):
        raise _Refuse
    return _days_from_civil(y, mo, d) * _DAY_US + ((h * 60 + mi) * 60 + se) * 1_000_000 + f


def _numeric(raw: bytes, scale: int, tprec: int, tscale: int) -> bytes:
    if not 1 <= len(raw) <= 16:
        raise _Refuse
    u = int.from_bytes(raw, "big", signed=True)
    digits = str(abs(u)) if u else ""
    nd = len(digits)
    nz = len(digits.rstrip("0"))
    if tprec >= 0 and nz and (nz - (nd - scale) > tscale or nd - scale > tprec - tscale):
        raise _Refuse
    if nz == 0:
        return _I16.pack(0) * 3 + struct.pack("!H", scale)
    wi = (nd - scale) % 4
    wi = 4 - wi if wi else 0
    padded = "0" * wi + digits
    weight = (nd + wi - scale) // 4 - 1
    groups = (nz + wi + 3) // 4
    padded = padded.ljust(groups * 4, "0")
    out = struct.pack("!HhHH", groups, weight, 0x4000 if u < 0 else 0, scale)
    return out + b"".join(struct.pack("!H", int(padded[g * 4 : g * 4 + 4])) for g in range(groups))


def _value(ins: Instr, c: _Cursor) -> bytes | None:
    """One column's COPY field bytes (None: NULL)."""
    _, conv, null_i, p1, p2, p3, _, avro_int = ins
    if null_i >= 0:
        b = c.long()
        if b not in (0, 1):
            raise _Refuse
        if b == null_i:
            return None
    if conv == C_BOOL:
        v = c.take(1)
        if v[0] > 1:
            raise _Refuse
        return v
    if conv in (C_INT2, C_INT4, C_INT8):
        n = c.long()
        if avro_int and not -(2**31) <= n < 2**31:
            raise _Refuse
        try:
            return (_I16 if conv == C_INT2 else _I32 if conv == C_INT4 else _I64).pack(n)
        except struct.error:
            raise _Refuse from None
    if conv in (C_FLOAT4, C_FLOAT8):
        raw = c.take(4 if conv == C_FLOAT4 else 8)
        (f,) = struct.unpack("<f" if conv == C_FLOAT4 else "<d", raw)
        if f != f:
            raise _Refuse
        return raw[::-1]
    if conv == C_DATE:
        n = c.long()
        if not _MIN_DAYS <= n <= _MAX_DAYS:
            raise _Refuse
        return _I32.pack(n - _PG_EPOCH_DAYS)
    if conv == C_TS:
        n = c.long()
        if not _MIN_DAYS * _DAY_US <= n < (_MAX_DAYS + 1) * _DAY_US or n % 10 ** (6 - p1):
            raise _Refuse
        return _I64.pack(n - _PG_EPOCH_DAYS * _DAY_US)
    s = c.sized()
    if conv == C_TEXT:
        text = _text(s)
        if p1 >= 0 and len(text) > p1:
            raise _Refuse
        return s
    if conv == C_BYTEA:
        return s
    if conv == C_TSTZ:
        us = _tstz(s)
        if us % 10 ** (6 - p1):
            raise _Refuse
        return _I64.pack(us - _PG_EPOCH_DAYS * _DAY_US)
    if conv == C_UUID:
        if len(s) != 36 or any(s[i] != 0x2D for i in (8, 13, 18, 23)):
            raise _Refuse
        h = s.replace(b"-", b"")
        if len(h) != 32 or not set(h) <= _HEX:
            raise _Refuse
        return bytes.fromhex(h.decode())
    if conv == C_NUMERIC:
        return _numeric(s, p1, p2, p3)
    raise _Refuse


def _envelope(
    enc: RunEncoder, c: _Cursor, origin: bytes | None, keys: set[bytes], out: list[bytes]
) -> str:
    """One envelope's COPY tuple appended to ``out``; its position text."""
    fields: list[bytes] = [_I16.pack(len(enc.columns))]
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
                raise _Refuse
        elif kind == I_BEFORE:
            b = c.long()
            if b not in (0, 1):
                raise _Refuse
            if b == a:
                i += ins[2]  # no before image
            else:
                before_key = []
        elif kind == I_BKEY:
            v = _value(ins, c)
            assert before_key is not None
            before_key.append(b"\xff\xff\xff\xff" if v is None else _U32.pack(len(v)) + v)
        elif kind in (I_NULL, I_BRANCH):
            if c.long() != a:
                raise _Refuse
        elif kind in (I_POSITION, I_ORIGIN):
            s: bytes | None = None
            if a >= 0:
                b = c.long()
                if b not in (0, 1):
                    raise _Refuse
                if b != a:
                    s = c.sized()
            else:
                s = c.sized()
            if kind == I_POSITION:
                if not s:
                    raise _Refuse
                position = s
            elif s is not None and origin is not None and s == origin:
                raise _Refuse
        elif kind == I_EMPTY:
            _, _, kids = enc.nodes[a]
            b = c.long()
            if not 0 <= b < len(kids):
                raise _Refuse
            k = enc.nodes[kids[b]][0]
            if k == N_NULL:
                continue
            if k not in (N_ARRAY, N_MAP) or c.long() != 0:
                raise _Refuse
        else:
            v = _value(ins, c)
            f = b"\xff\xff\xff\xff" if v is None else _U32.pack(len(v)) + v
            fields.append(f)
            if ins[6]:
                key.append(f)
    if c.pos != len(c.buf) or not op_ok or position is None:
        raise _Refuse
    text = _text(position)
    joined = b"".join(key)
    if before_key is not None and b"".join(before_key) != joined:
        raise _Refuse  # a key change: the general path moves the row
    if joined in keys:
        raise _Refuse
    keys.add(joined)
    out.append(b"".join(fields))
    return text


def encode_py(
    enc: RunEncoder,
    values: Sequence[bytes | None],
    start: int,
    stop: int,
    origin: str | None,
    header: int,
) -> Encoded:
    """The reference of ``_ccopy.encode`` (same arguments, same result)."""
    out: list[bytes] = []
    positions: list[str] = []
    keys: set[bytes] = set()
    frame = None
    o = None if origin is None else origin.encode()
    for i in range(max(0, start), min(stop, len(values))):
        v = values[i]
        if type(v) is not bytes or len(v) < header:
            break
        if frame is None:
            frame = v[:header]
        elif v[:header] != frame:
            break
        try:
            positions.append(_envelope(enc, _Cursor(v, header), o, keys, out))
        except _Refuse:
            break
    return len(out), b"".join(out), positions


def native_loaded() -> bool:
    return _ccopy is not None


Compiler = Callable[..., RunEncoder | None]
