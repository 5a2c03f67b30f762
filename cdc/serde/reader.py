"""Generated Avro binary readers: one straight-line Python function per schema.

fastavro's ``schemaless_reader`` spends ~20 us on a 10-column row and ~25 us
on a Debezium source block here (it interprets the schema dict on every
call), which would cap a sink's decoding near 15k changes/s. For each writer
schema this module generates Python source that reads exactly that schema
(a function per named record, unions as branch tests, one-byte varints
inline) and compiles it once; decoding is then 3-4x faster. It reads any
Avro schema, not only ours, and returns what fastavro returns with logical
types ignored (dicts, ints, bytes, str, lists); the unit tests compare the
two on generated data.

The optional C extension ``cdc.serde._cdecode`` (built from ``_cdecode.c``)
walks a compact description of the same schema instead (:func:`describe`,
:func:`compile_native`): a flat tuple of nodes, one per Avro type, with
records as dicts or tuples and, for a change record's row, each column's
logical conversion applied in C for the common cases (dates, timestamps,
decimals) and by the Python converter otherwise. The generated Python reader
stays the reference: the tests check the two agree on every type family and
raise the same error class on malformed input.

Callers: the sink-side ``EnvelopeReader`` and ``KeyReader`` (decoding consumed
records), the array decoding of the type codecs, and the fuzz targets. This
module knows nothing of the Debezium envelope or of the registry: it gets a
parsed writer schema and returns plain values; what a change record means is
the envelope reader's business.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Final

from cdc import native
from cdc.errors import SchemaError, SerializationError
from cdc.serde.envelope import full_name
from cdc.serde.limits import DEFAULT_LIMITS, DecodeLimits

# reader(body) or reader(body, limits): the value of one Avro body.
Reader = Callable[..., Any]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_float = struct.Struct("<f").unpack_from
_double = struct.Struct("<d").unpack_from
# A block of items that take bytes may claim no more items than bytes remain; every
# item and map entry of a record, zero-width or not, counts against
# DecodeLimits.max_items (both readers refuse bigger counts before allocating).


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``pos`` that fits 64 bits; (value, next position).

    Stricter than :func:`cdc.serde.binary.read_long`: an 11th byte, or a 10th
    carrying bits beyond the 64th, is malformed (ValueError), as in the C reader.
    """
    b = buf[pos]
    z = b & 0x7F
    shift = 7
    pos += 1
    while b & 0x80:
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
        b = buf[pos]
        pos += 1
        if shift == 63 and b & 0x7E:
            raise ValueError("varint overflows 64 bits")
        z |= (b & 0x7F) << shift
        shift += 7
    return (z >> 1) ^ -(z & 1), pos


def resolve_type(named: Mapping[str, Any], t: Any, ns: str | None) -> tuple[Any, str | None]:
    """Named references -> their definitions, with the namespace they live in."""
    if isinstance(t, str) and t not in _PRIMITIVES:
        # Avro: a name without a dot is looked up in the enclosing namespace first.
        for candidate in (f"{ns}.{t}" if ns and "." not in t else t, t):
            if candidate in named:
                d = named[candidate]
                return d, candidate.rpartition(".")[0] or None
        raise SchemaError(f"writer schema references unknown type {t!r}")
    if isinstance(t, dict) and isinstance(t.get("type"), dict | list):
        return resolve_type(named, t["type"], ns)
    if (
        isinstance(t, dict)
        and isinstance(t.get("type"), str)
        and t["type"] not in _PRIMITIVES
        and t["type"] not in ("record", "error", "enum", "fixed", "array", "map")
    ):
        return resolve_type(named, t["type"], ns)
    return t, ns


def zero_width(named: Mapping[str, Any], t: Any, ns: str | None, seen: frozenset[str] = frozenset()) -> bool:
    """Whether a value of type ``t`` may take no bytes at all (null, empty records...)."""
    t, ns = resolve_type(named, t, ns)
    if isinstance(t, list):
        return False  # the branch index takes a byte
    kind = t if isinstance(t, str) else t.get("type")
    if kind == "null":
        return True
    if kind == "fixed":
        return int(t["size"]) == 0
    if kind in ("record", "error"):
        full = full_name(t, ns)
        if full in seen:
            return False
        inner = full.rpartition(".")[0] or None
        return all(zero_width(named, f["type"], inner, seen | {full}) for f in t.get("fields", ()))
    return False


def has_blocks(schema: Any) -> bool:
    """Whether ``schema``, walked as written (not through names), has an array or a map."""
    if isinstance(schema, list):
        return any(has_blocks(x) for x in schema)
    if not isinstance(schema, dict):
        return False
    if schema.get("type") in ("array", "map"):
        return True
    return any(
        has_blocks(v) for k, v in schema.items() if k in ("type", "items", "values")
    ) or any(has_blocks(f.get("type")) for f in schema.get("fields", ()) if isinstance(f, dict))


def too_many_items(limit: int) -> str:
    """The error text of a record over ``DecodeLimits.max_items``."""
    return (
        f"more than {limit} array items and map entries in one record (decoding.max_items): "
        "a malformed or hostile record; raise the sink's decoding.max_items if such "
        "records are legitimate"
    )


class _Generator:
    def __init__(self, named: Mapping[str, Any], counted: bool = False) -> None:
        self.named = named
        # Schemas with arrays or maps thread an item budget ``st`` (a list: remaining,
        # limit) through every record function; others pay nothing for it.
        self.counted = counted
        self.st = ", st" if counted else ""
        self.functions: dict[str, str] = {}  # full name -> function name
        self.sources: list[str] = []
        self.constants: dict[str, Any] = {}
        self._counter = 0

    def var(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}{self._counter}"

    def constant(self, value: Any) -> str:
        name = self.var("K")
        self.constants[name] = value
        return name

    def resolve(self, t: Any, ns: str | None) -> tuple[Any, str | None]:
        return resolve_type(self.named, t, ns)

    def record_function(self, t: Mapping[str, Any], ns: str | None) -> str:
        full = full_name(t, ns)
        fn = self.functions.get(full)
        if fn is not None:
            return fn
        fn = self.var("read_record")
        self.functions[full] = fn
        inner_ns = full.rpartition(".")[0] or None
        body: list[str] = []
        names: list[tuple[str, str]] = []
        for field in t.get("fields", ()):
            v = self.var("f")
            body += self.read(field["type"], v, inner_ns)
            names.append((str(field["name"]), v))
        items = ", ".join(f"{n!r}: {v}" for n, v in names)
        lines = [f"def {fn}(buf, pos{self.st}):"]
        lines += ["    " + line for line in body]
        lines.append(f"    return {{{items}}}, pos")
        self.sources.append("\n".join(lines))
        return fn

    def read(self, t: Any, out: str, ns: str | None) -> list[str]:
        """Statements that read a value of type ``t`` at ``pos`` into ``out``."""
        t, ns = self.resolve(t, ns)
        if isinstance(t, list):
            return self.union(t, out, ns)
        kind = t if isinstance(t, str) else t.get("type")
        if kind == "null":
            return [f"{out} = None"]
        if kind == "boolean":
            return [f"{out} = buf[pos] == 1", "pos += 1"]
        if kind in ("int", "long"):
            return self.long(out)
        if kind == "float":
            return [f"{out} = uf(buf, pos)[0]", "pos += 4"]
        if kind == "double":
            return [f"{out} = ud(buf, pos)[0]", "pos += 8"]
        if kind in ("string", "bytes"):
            n = self.var("n")
            lines = [
                *self.long(n),
                f"if {n} < 0:",
                f"    raise Bad('negative length ' + str({n}))",
                f"if {n} > len(buf) - pos:",
                "    raise Bad('truncated')",
            ]
            if kind == "string":
                lines.append(f"{out} = buf[pos:pos + {n}].decode()")
            else:
                lines.append(f"{out} = buf[pos:pos + {n}]")
            lines.append(f"pos += {n}")
            return lines
        if kind == "fixed":
            size = int(t["size"])
            return [f"{out} = buf[pos:pos + {size}]", f"pos += {size}"]
        if kind == "enum":
            symbols = self.constant(tuple(t["symbols"]))
            i = self.var("i")
            return [
                *self.long(i),
                f"if not 0 <= {i} < {len(t['symbols'])}:",
                f"    raise Bad('enum index ' + str({i}))",
                f"{out} = {symbols}[{i}]",
            ]
        if kind in ("record", "error"):
            return [f"{out}, pos = {self.record_function(t, ns)}(buf, pos{self.st})"]
        if kind == "array":
            return self.blocks(out, ns, item=t["items"], is_map=False)
        if kind == "map":
            return self.blocks(out, ns, item=t["values"], is_map=True)
        raise SchemaError(f"writer schema has an unknown Avro type {kind!r}")

    def long(self, out: str) -> list[str]:
        # One- and two-byte varints (-8192..8191) are most ints, lengths and
        # union indexes: read them inline, longer ones through read_long.
        b, c = self.var("b"), self.var("c")
        return [
            f"{b} = buf[pos]",
            f"if {b} < 128:",
            f"    {out} = ({b} >> 1) ^ -({b} & 1)",
            "    pos += 1",
            "else:",
            f"    {c} = buf[pos + 1]",
            f"    if {c} < 128:",
            f"        {c} = ({b} & 127) | ({c} << 7)",
            f"        {out} = ({c} >> 1) ^ -({c} & 1)",
            "        pos += 2",
            "    else:",
            f"        {out}, pos = rl(buf, pos)",
        ]

    def union(self, branches: list[Any], out: str, ns: str | None) -> list[str]:
        if len(branches) > 63:  # the branch index may take more than one byte
            i = self.var("u")
            lines = self.long(i)
            for idx, branch in enumerate(branches):
                lines.append(f"{'if' if idx == 0 else 'elif'} {i} == {idx}:")
                lines += ["    " + line for line in self.read(branch, out, ns)]
            lines += ["else:", f"    raise Bad('union branch ' + str({i}))"]
            return lines
        # Indexes 0..63 are one byte, zig-zag encoded: 0x00, 0x02, 0x04...
        u = self.var("u")
        lines = [f"{u} = buf[pos]", "pos += 1"]
        for idx, branch in enumerate(branches):
            lines.append(f"{'if' if idx == 0 else 'elif'} {u} == {2 * idx}:")
            lines += ["    " + line for line in self.read(branch, out, ns)]
        lines += [
            "else:",
            f"    raise Bad('union branch byte ' + str({u}) + ' of {len(branches)} branches')",
        ]
        return lines

    def blocks(self, out: str, ns: str | None, *, item: Any, is_map: bool) -> list[str]:
        n, v, k, skip = self.var("n"), self.var("v"), self.var("k"), self.var("s")
        lines = [f"{out} = {{}}" if is_map else f"{out} = []", "while True:"]
        inner = self.long(n)
        inner += [
            f"if {n} == 0:",
            "    break",
            f"if {n} < 0:",  # a block with its byte size: check and skip the size
            f"    {n} = -{n}",
            *["    " + line for line in self.long(skip)],
            f"    if {skip} < 0 or {skip} > len(buf) - pos:",
            f"        raise Bad('block byte size ' + str({skip}))",
        ]
        if not zero_width(self.named, item, ns):  # each item takes at least a byte
            inner += [
                f"if {n} > len(buf) - pos:",
                f"    raise Bad('block of ' + str({n}) + ' items')",
            ]
        inner += [
            f"st[0] -= {n}",
            "if st[0] < 0:",
            "    raise Bad(tmi(st[1]))",
            f"for _ in range({n}):",
        ]
        body: list[str] = []
        if is_map:
            body += self.read("string", k, ns)
        body += self.read(item, v, ns)
        body.append(f"{out}[{k}] = {v}" if is_map else f"{out}.append({v})")
        inner += ["    " + line for line in body]
        lines += ["    " + line for line in inner]
        return lines


def compile_reader(schema: Any, named: Mapping[str, Any]) -> tuple[Reader, str]:
    """A function ``read(body, limits=DEFAULT_LIMITS)`` reading one complete value of
    ``schema`` from bytes, and its source."""
    counted = has_blocks(schema) or any(has_blocks(d) for d in named.values())
    gen = _Generator(named, counted)
    top = gen.read(schema, "value", None)
    entry = [
        "def read(buf, max_items):",
        "    pos = 0",
        *(["    st = [max_items, max_items]"] if counted else []),
        *["    " + line for line in top],
        "    if pos != len(buf):",
        "        raise Bad(f'{len(buf) - pos} bytes left over' if pos < len(buf) else 'truncated')",
        "    return value",
    ]
    source = "\n\n".join([*gen.sources, "\n".join(entry)]) + "\n"
    namespace: dict[str, Any] = {
        "rl": read_long, "uf": _float, "ud": _double, "Bad": _Malformed, "tmi": too_many_items,
    }  # fmt: skip
    namespace.update(gen.constants)
    exec(compile(source, "<avro reader>", "exec"), namespace)
    read: Callable[[bytes, int], Any] = namespace["read"]

    def checked(buf: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        if len(buf) > limits.max_record_bytes:
            raise SerializationError(record_too_long(len(buf), limits.max_record_bytes))
        try:
            return read(buf, limits.max_items)
        except (_Malformed, IndexError, ValueError, struct.error, RecursionError) as e:
            # ValueError covers invalid UTF-8 and over-long varints.
            raise SerializationError(f"Avro body does not match its writer schema: {e}") from e

    return checked, source


def record_too_long(size: int, limit: int) -> str:
    """The error text of a body over ``DecodeLimits.max_record_bytes``."""
    return (
        f"an Avro body of {size} bytes is longer than decoding.max_record_bytes ({limit}); "
        "raise the sink's decoding.max_record_bytes if such records are legitimate"
    )


class _Malformed(Exception):
    """The bytes do not follow the schema (bad union index, wrong length)."""


def without_logical_types(t: Any) -> Any:
    """``t`` with every logicalType removed: what these readers return, for fastavro.

    fastavro applies logical types when reading; comparing its output with a
    generated reader's (in tests) needs the raw form.
    """
    if isinstance(t, list):
        return [without_logical_types(x) for x in t]
    if not isinstance(t, dict):
        return t
    out = {k: v for k, v in t.items() if k != "logicalType"}
    if "fields" in out:
        out["fields"] = [dict(f, type=without_logical_types(f["type"])) for f in out["fields"]]
    for k in ("items", "values"):
        if k in out:
            out[k] = without_logical_types(out[k])
    if isinstance(out.get("type"), dict | list):
        out["type"] = without_logical_types(out["type"])
    return out


# --------------------------------------------------------------------------- native reader

_cdecode = native.load("cdc.serde._cdecode")

# Opcodes and conversions of cdc/serde/_cdecode.c (mirrored so describe() runs without it).
OP_NULL, OP_BOOL, OP_LONG, OP_FLOAT, OP_DOUBLE, OP_STRING, OP_BYTES = range(7)
OP_FIXED, OP_ENUM, OP_UNION, OP_RECORD, OP_ARRAY, OP_MAP, OP_CONV = range(7, 14)
CV_CALL, CV_DATE, CV_TS, CV_TIME, CV_DECIMAL = range(5)
_OPS: Final = {
    "null": OP_NULL,
    "boolean": OP_BOOL,
    "int": OP_LONG,
    "long": OP_LONG,
    "float": OP_FLOAT,
    "double": OP_DOUBLE,
    "string": OP_STRING,
    "bytes": OP_BYTES,
}

# A column conversion for a native row: (CV_* code, argument, the Python converter).
Conversion = tuple[int, int, Callable[[Any], Any]]
# A record read as a row: per field, in schema order, (key in the result, conversion or None).
RowSpec = Sequence[tuple[str, Conversion | None]]


class _Describer:
    """Flattens a writer schema into the node table ``_cdecode.Program`` takes."""

    def __init__(
        self,
        named: Mapping[str, Any],
        tuples: Collection[str],
        rows: Mapping[str, RowSpec],
    ) -> None:
        self.named = named
        self.tuples = tuples
        self.rows = rows
        self.nodes: list[tuple[Any, ...]] = []
        self.records: dict[str, int] = {}
        self.simple: dict[tuple[Any, ...], int] = {}

    def add(self, node: tuple[Any, ...]) -> int:
        if node[0] < OP_UNION:  # leaves are shared
            hit = self.simple.get(node)
            if hit is not None:
                return hit
            self.simple[node] = len(self.nodes)
        self.nodes.append(node)
        return len(self.nodes) - 1

    def node(self, t: Any, ns: str | None) -> int:
        t, ns = resolve_type(self.named, t, ns)
        if isinstance(t, list):
            if not t:
                raise SchemaError("writer schema has an empty union")
            return self.add((OP_UNION, tuple(self.node(b, ns) for b in t)))
        kind = t if isinstance(t, str) else t.get("type")
        op = _OPS.get(kind) if isinstance(kind, str) else None
        if op is not None:
            return self.add((op,))
        if kind == "fixed":
            return self.add((OP_FIXED, int(t["size"])))
        if kind == "enum":
            return self.add((OP_ENUM, tuple(str(x) for x in t["symbols"])))
        if kind in ("record", "error"):
            return self.record(t, ns)
        if kind in ("array", "map"):
            item = t["items"] if kind == "array" else t["values"]
            index = len(self.nodes)
            self.nodes.append(())  # placeholder: the item may refer to enclosing records
            self.nodes[index] = (
                OP_ARRAY if kind == "array" else OP_MAP,
                self.node(item, ns),
                zero_width(self.named, item, ns),
            )
            return index
        raise SchemaError(f"writer schema has an unknown Avro type {kind!r}")

    def record(self, t: Mapping[str, Any], ns: str | None) -> int:
        full = full_name(t, ns)
        hit = self.records.get(full)
        if hit is not None:
            return hit
        index = len(self.nodes)
        self.nodes.append(())  # placeholder, so recursive references find it
        self.records[full] = index
        inner_ns = full.rpartition(".")[0] or None
        fields = list(t.get("fields", ()))
        spec = self.rows.get(full)
        if spec is not None and len(spec) != len(fields):
            raise SchemaError(f"row spec of {full} has {len(spec)} fields, the schema {len(fields)}")
        names: list[str] = []
        kids: list[int] = []
        for i, f in enumerate(fields):
            kid = self.node(f["type"], inner_ns)
            name = str(f["name"])
            if spec is not None:
                name, conv = spec[i]
                if conv is not None:
                    code, arg, fallback = conv
                    kid = self.add((OP_CONV, kid, code, arg, fallback))
            names.append(name)
            kids.append(kid)
        self.nodes[index] = (OP_RECORD, tuple(names), tuple(kids), full in self.tuples)
        return index


def describe(
    schema: Any,
    named: Mapping[str, Any],
    *,
    tuples: Collection[str] = (),
    rows: Mapping[str, RowSpec] | None = None,
) -> tuple[tuple[tuple[Any, ...], ...], int]:
    """(node table, root index) of ``schema`` for ``_cdecode.Program``.

    Records are read as dicts keyed by field name, except those named in
    ``tuples`` (tuples in field order) and those in ``rows`` (dicts keyed and
    converted as the row spec says).
    """
    d = _Describer(named, tuples, rows or {})
    root = d.node(schema, None)
    return tuple(d.nodes), root


def compile_native(
    schema: Any,
    named: Mapping[str, Any],
    *,
    tuples: Collection[str] = (),
    rows: Mapping[str, RowSpec] | None = None,
) -> Any:
    """A ``_cdecode.Program`` for ``schema``, or None when the extension is unavailable."""
    if _cdecode is None:
        return None
    nodes, root = describe(schema, named, tuples=tuples, rows=rows)
    return _cdecode.Program(nodes, root, SerializationError)


def native_module() -> Any:
    """The loaded ``_cdecode`` module, or None (not built, or CDC_NATIVE=0)."""
    return _cdecode


def native_reader(program: Any, reference: Reader) -> Reader:
    """A Reader running ``program`` in C. Malformed bytes (SerializationError, the
    only error the C reader raises for the data) are handed to the ``reference``
    reader, which raises the canonical error naming the problem; any other error
    (MemoryError, SystemError from a bug, KeyboardInterrupt) propagates."""
    read = _cdecode.read  # type: ignore[union-attr]

    def fast(buf: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        try:
            return read(program, buf, 0, limits.max_items, limits.max_record_bytes)
        except SerializationError:
            return reference(buf, limits)

    return fast
