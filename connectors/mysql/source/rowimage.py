"""A fast decoder of binlog row images straight to canonical values.

Why: mysql-replication parses a row image column by column through several
layers of Python calls (~6 us per column here), which capped the source near
10k row changes/s on this machine. The row image format is simple and fixed by
the TableMap, so for the column types below this module decodes a whole rows
event from its bytes with one precompiled function per column and produces the
canonical values of :mod:`cdc.events` directly (the same values
:class:`~connectors.mysql.values.BinlogRowDecoder` makes of the library's
output; the integration tests run both paths against the same rows).

Images without NULLs (the common case) go through a function generated per
table version: runs of fixed-width numbers read with one ``unpack_from``,
CHAR/VARCHAR text sliced and decoded in place, other columns through their
decoder; images with NULLs take the per-column loop.

When the optional C extension ``_crowimage`` is built (``make native``; off
with ``CDC_NATIVE=0``), a whole rows-event body is decoded in one call by a
per-table-version program compiled from the same column facts
(:func:`_native_spec`); columns it has no code for (binary JSON) call their
Python decoder from C. This module's Python decoders stay the reference: the
tests compare both on the same bytes.

Tables with a column type not listed (the pre-5.6 temporal formats, old
DECIMAL) or events this does not handle (partial JSON updates, MINIMAL row
images) fall back to the library.

One concern, a little over 600 lines: decoding row images. The per-column
Python decoders, the per-table generated function built from them and the spec
of the C program compiled from the same column facts belong together - the
tests compare all three on the same bytes. Column types and value codecs are
:mod:`connectors.mysql.types` / :mod:`connectors.mysql.values`, MySQL's latin1
codec :mod:`connectors.mysql.latin1`.

Row image layout (MySQL ``log_event.cc``, ``Field::pack``): per row a null
bitmap over the present columns, then each non-null column packed:
integers little-endian; FLOAT/DOUBLE IEEE little-endian; DECIMAL in MySQL's
binary decimal format; CHAR/VARCHAR a 1- or 2-byte length (2 when the column
can exceed 255 bytes) and the bytes; BLOB/TEXT/JSON/GEOMETRY a 1..4-byte
length and the bytes; ENUM/SET a 1..8-byte index/bitmask; BIT big-endian;
DATE 3 bytes; TIME2/DATETIME2/TIMESTAMP2 big-endian with fractional bytes.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from struct import Struct
from typing import Any, Final

from pymysqlreplication.json_binary import parse_json

from cdc import native
from cdc.events import Kind
from cdc.serde.value_codecs import shortest_float32
from connectors.mysql import types as t
from connectors.mysql import values
from connectors.mysql.latin1 import MYSQL_LATIN1, MYSQL_LATIN1_TABLE
from connectors.mysql.types import BinlogColumn
from connectors.mysql.values import ColumnCodec, _json_text

__all__ = ["FastRowDecoder", "build_fast_decoder", "native_available"]

_native: Any = native.load("connectors.mysql.source._crowimage")


def native_available() -> bool:
    """Whether the C row-image decoder is built and enabled."""
    return _native is not None

ColumnDecoder = Callable[[bytes, int], tuple[Any, int]]
# A row image takes at least its null bitmap; with no columns it takes no bytes, and a
# body of such images would never end (a malformed TableMap): refused by both decoders.
_NO_COLUMNS: Final = (
    "malformed rows event: its TableMap has no columns, so a row image takes no bytes "
    "and the event body cannot be split into rows"
)
Image = dict[str, Any]

_DIG2BYTES: Final = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_EPOCH_TSTZ: Final = datetime(1970, 1, 1, tzinfo=UTC)




_PY_CODEC: Final = {
    "utf8mb4": "utf-8",
    "utf8mb3": "utf-8",
    "utf8": "utf-8",
    "latin1": MYSQL_LATIN1,
    "ascii": "ascii",
    "binary": "",
}
_STRUCTS: Final = {  # (type code, unsigned) -> (struct, size)
    (t.T_TINY, False): Struct("<b"),
    (t.T_TINY, True): Struct("<B"),
    (t.T_SHORT, False): Struct("<h"),
    (t.T_SHORT, True): Struct("<H"),
    (t.T_LONG, False): Struct("<i"),
    (t.T_LONG, True): Struct("<I"),
    (t.T_LONGLONG, False): Struct("<q"),
    (t.T_LONGLONG, True): Struct("<Q"),
    (t.T_DOUBLE, False): Struct("<d"),
    (t.T_DOUBLE, True): Struct("<d"),
}
_FLOAT: Final = Struct("<f")


def _fixed(s: Struct) -> ColumnDecoder:
    unpack, size = s.unpack_from, s.size

    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        return unpack(buf, off)[0], off + size

    return dec


def _float(buf: bytes, off: int) -> tuple[Any, int]:
    return shortest_float32(_FLOAT.unpack_from(buf, off)[0]), off + 4


def _int24(unsigned: bool) -> ColumnDecoder:
    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        return int.from_bytes(buf[off : off + 3], "little", signed=not unsigned), off + 3

    return dec


def _decimal(precision: int, scale: int) -> ColumnDecoder:
    """MySQL's binary DECIMAL: 9 digits per 4 bytes, leftovers in 1..4 bytes,
    big-endian, sign in the top bit (negative values stored inverted)."""
    intg = precision - scale
    intg0, intg0x = divmod(intg, 9)
    frac0, frac0x = divmod(scale, 9)
    lead, tail = _DIG2BYTES[intg0x], _DIG2BYTES[frac0x]
    size = lead + intg0 * 4 + frac0 * 4 + tail
    groups = intg0 + frac0
    exp = f"E-{scale}" if scale else ""

    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        raw = bytearray(buf[off : off + size])
        negative = not raw[0] & 0x80
        raw[0] ^= 0x80
        if negative:
            raw = bytearray(b ^ 0xFF for b in raw)
        pos = lead
        value = int.from_bytes(raw[:lead], "big") if lead else 0
        for _ in range(groups):
            value = value * 1_000_000_000 + int.from_bytes(raw[pos : pos + 4], "big")
            pos += 4
        if tail:
            value = value * 10**frac0x + int.from_bytes(raw[pos : pos + tail], "big")
        return Decimal(f"{'-' if negative else ''}{value}{exp}"), off + size

    return dec


def _string(prefix: int, encoding: str, pad: int | None) -> ColumnDecoder:
    if prefix == 1:
        if encoding:

            def dec1(buf: bytes, off: int) -> tuple[Any, int]:
                end = off + 1 + buf[off]
                return buf[off + 1 : end].decode(encoding), end

            return dec1
        if pad:

            def dec1p(buf: bytes, off: int) -> tuple[Any, int]:
                end = off + 1 + buf[off]
                return buf[off + 1 : end].ljust(pad, b"\x00"), end

            return dec1p

        def dec1b(buf: bytes, off: int) -> tuple[Any, int]:
            end = off + 1 + buf[off]
            return buf[off + 1 : end], end

        return dec1b

    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        start = off + prefix
        end = start + int.from_bytes(buf[off:start], "little")
        v = buf[start:end]
        if encoding:
            return v.decode(encoding), end
        return (v.ljust(pad, b"\x00") if pad else v), end

    return dec


def _then(inner: ColumnDecoder, conv: Callable[[Any], Any]) -> ColumnDecoder:
    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        v, off = inner(buf, off)
        return conv(v), off

    return dec


def _enum(size: int, labels: Sequence[str]) -> ColumnDecoder:
    table = ("", *labels)

    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        i = int.from_bytes(buf[off : off + size], "little")
        return (table[i] if i < len(table) else ""), off + size

    return dec


def _set(size: int, labels: Sequence[str]) -> ColumnDecoder:
    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        mask = int.from_bytes(buf[off : off + size], "little")
        return ",".join(v for i, v in enumerate(labels) if mask >> i & 1), off + size

    return dec


def _bits(nbytes: int) -> ColumnDecoder:
    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        return buf[off : off + nbytes], off + nbytes

    return dec


def _fsp_size(fsp: int) -> int:
    return (fsp + 1) // 2


def _frac(fsp: int) -> Callable[[bytes, int], int]:
    """Microseconds from the fractional bytes of TIME2/DATETIME2/TIMESTAMP2."""
    n = _fsp_size(fsp)
    mult = {0: 0, 1: 10000, 2: 100, 3: 1}[n]

    def frac(buf: bytes, off: int) -> int:
        return int.from_bytes(buf[off : off + n], "big") * mult if n else 0

    return frac


def _date(zero: Callable[[], Any]) -> ColumnDecoder:
    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        v = buf[off] | buf[off + 1] << 8 | buf[off + 2] << 16
        day, month, year = v & 31, v >> 5 & 15, v >> 9
        if not (day and month and year):
            return zero(), off + 3
        return date(year, month, day), off + 3

    return dec


def _datetime2(fsp: int, zero: Callable[[], Any]) -> ColumnDecoder:
    frac, size = _frac(fsp), 5 + _fsp_size(fsp)

    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        v = int.from_bytes(buf[off : off + 5], "big") - 0x8000000000
        ymd, hms = v >> 17, v & 0x1FFFF
        ym = ymd >> 5
        year, month, day = ym // 13, ym % 13, ymd & 31
        if not (day and month and year):
            return zero(), off + size
        return datetime(
            year, month, day, hms >> 12, hms >> 6 & 63, hms & 63, frac(buf, off + 5)
        ), off + size

    return dec


def _timestamp2(fsp: int, zero: Callable[[], Any]) -> ColumnDecoder:
    frac, size = _frac(fsp), 4 + _fsp_size(fsp)

    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        secs = int.from_bytes(buf[off : off + 4], "big")
        micros = frac(buf, off + 4)
        if not secs and not micros:
            return zero(), off + size
        return _EPOCH_TSTZ + timedelta(seconds=secs, microseconds=micros), off + size

    return dec


def _time2(fsp: int) -> ColumnDecoder:
    size = 3 + _fsp_size(fsp)

    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        return values.decode_time2(buf[off : off + size], fsp), off + size

    return dec


def _year(buf: bytes, off: int) -> tuple[Any, int]:
    v = buf[off]
    return (v + 1900 if v else 0), off + 1


def _json_binary(prefix: int) -> ColumnDecoder:
    inner = _string(prefix, "", None)

    def dec(buf: bytes, off: int) -> tuple[Any, int]:
        raw, off = inner(buf, off)
        if not raw:
            return None, off
        return _json_text(parse_json(raw[0], raw[1:])), off

    return dec


def _column_decoder(b: BinlogColumn, codec: ColumnCodec) -> ColumnDecoder | None:
    """The decoder of one column, or None when this module does not handle its type."""
    code = b.type_code
    if (code, b.unsigned) in _STRUCTS:
        return _fixed(_STRUCTS[code, b.unsigned])
    if code == t.T_INT24:
        return _int24(b.unsigned)
    if code == t.T_FLOAT:
        return _float
    if code == t.T_NEWDECIMAL and b.precision is not None and b.scale is not None:
        return _decimal(b.precision, b.scale)
    if code in (t.T_STRING, t.T_VARCHAR, t.T_VAR_STRING):
        if b.max_length is None:
            return None
        prefix = 1 if b.max_length <= 255 else 2
        return _text_or_bytes(b, codec, prefix)
    if code in (t.T_BLOB, t.T_TINY_BLOB, t.T_MEDIUM_BLOB, t.T_LONG_BLOB):
        if not b.length_size:
            return None
        return _text_or_bytes(b, codec, b.length_size)
    if code == t.T_GEOMETRY and b.length_size:
        return _then(_string(b.length_size, "", None), values._strip_srid)
    if code == t.T_JSON and b.length_size:
        return _json_binary(b.length_size)
    if code == t.T_ENUM:
        return _enum(b.pack_size or (1 if len(b.enum_values) < 256 else 2), b.enum_values)
    if code == t.T_SET:
        size = (len(b.set_values) + 7) // 8 or 1
        return _set(b.pack_size or (8 if size > 4 else size), b.set_values)
    if code == t.T_BIT and b.bits:
        return _bits((b.bits + 7) // 8)
    if code in (t.T_DATE, t.T_NEWDATE) and codec.zero is not None:
        return _date(codec.zero)
    if code == t.T_DATETIME2 and codec.zero is not None:
        return _datetime2(b.fsp or 0, codec.zero)
    if code == t.T_TIMESTAMP2 and codec.zero is not None:
        return _timestamp2(b.fsp or 0, codec.zero)
    if code == t.T_TIME2:
        return _time2(b.fsp or 0)
    if code == t.T_YEAR:
        return _year
    return None


def _text_or_bytes(b: BinlogColumn, codec: ColumnCodec, prefix: int) -> ColumnDecoder | None:
    special = codec.type.kind is Kind.UUID or codec.type.native.startswith("inet")
    if b.binary or special:
        pad = b.max_length if b.type_code == t.T_STRING else None
        raw = _string(prefix, "", pad)
        if special:
            assert codec.from_binlog is not None
            return _then(raw, codec.from_binlog)
        return raw
    encoding = _PY_CODEC.get(b.charset or "")
    if not encoding:
        return None  # other charsets: the library path (it knows pymysql's codec names)
    return _string(prefix, encoding, None)


_ENCODING_CODES: Final = {"utf-8": 0, MYSQL_LATIN1: 1, "ascii": 2}
NativeSpec = tuple[int, int, int, Any, Any]


def _native_spec(b: BinlogColumn, codec: ColumnCodec, dec: ColumnDecoder) -> NativeSpec:
    """The C program's ``(op, first, second, obj, conv)`` for a column whose Python decoder
    (from :func:`_column_decoder`) is ``dec``; mirrors that function case by case.
    Anything without C code (or with facts out of the C code's range) calls ``dec``.
    """
    n = _native
    py: NativeSpec = (n.OP_PY, 0, 0, dec, None)
    code = b.type_code
    fixed = _STRUCTS.get((code, b.unsigned))
    if fixed is not None:
        if code == t.T_DOUBLE:
            return (n.OP_DOUBLE, 0, 0, None, None)
        return (n.OP_INT, fixed.size, int(b.unsigned), None, None)
    if code == t.T_INT24:
        return (n.OP_INT, 3, int(b.unsigned), None, None)
    if code == t.T_FLOAT:
        return (n.OP_FLOAT, 0, 0, None, None)
    if code == t.T_NEWDECIMAL:
        p, s = b.precision or 0, b.scale or 0
        if 1 <= p <= 65 and 0 <= s <= min(30, p):
            return (n.OP_DECIMAL, p, s, dec, None)
        return py
    if code in (t.T_STRING, t.T_VARCHAR, t.T_VAR_STRING):
        assert b.max_length is not None
        return _native_text(b, codec, 1 if b.max_length <= 255 else 2, dec)
    if code in (t.T_BLOB, t.T_TINY_BLOB, t.T_MEDIUM_BLOB, t.T_LONG_BLOB):
        assert b.length_size is not None
        return _native_text(b, codec, b.length_size, dec)
    if code == t.T_GEOMETRY and b.length_size and 1 <= b.length_size <= 4:
        return (n.OP_BYTES, b.length_size, 0, None, values._strip_srid)
    if code == t.T_ENUM:
        size = b.pack_size or (1 if len(b.enum_values) < 256 else 2)
        if 1 <= size <= 8:
            return (n.OP_ENUM, size, 0, ("", *b.enum_values), None)
        return py
    if code == t.T_SET:
        size = (len(b.set_values) + 7) // 8 or 1
        size = b.pack_size or (8 if size > 4 else size)
        if 1 <= size <= 8:
            return (n.OP_SET, size, 0, tuple(b.set_values), None)
        return py
    if code == t.T_BIT and b.bits:
        nbytes = (b.bits + 7) // 8
        return (n.OP_BIT, nbytes, 0, None, None) if nbytes <= 8 else py
    fsp = b.fsp or 0
    if code in (t.T_DATE, t.T_NEWDATE):
        return (n.OP_DATE, 0, 0, codec.zero, None)
    if code == t.T_DATETIME2 and 0 <= fsp <= 6:
        return (n.OP_DATETIME2, fsp, 0, codec.zero, None)
    if code == t.T_TIMESTAMP2 and 0 <= fsp <= 6:
        return (n.OP_TIMESTAMP2, fsp, 0, codec.zero, None)
    if code == t.T_TIME2 and 0 <= fsp <= 6:
        return (n.OP_TIME2, fsp, 0, None, None)
    if code == t.T_YEAR:
        return (n.OP_YEAR, 0, 0, None, None)
    return py  # binary JSON, and facts out of the C code's range


def _native_text(
    b: BinlogColumn, codec: ColumnCodec, prefix: int, dec: ColumnDecoder
) -> NativeSpec:
    """Mirrors :func:`_text_or_bytes`."""
    n = _native
    if not 1 <= prefix <= 4:
        return (n.OP_PY, 0, 0, dec, None)
    special = codec.type.kind is Kind.UUID or codec.type.native.startswith("inet")
    if b.binary or special:
        pad = b.max_length if b.type_code == t.T_STRING else None
        return (n.OP_BYTES, prefix, pad or 0, None, codec.from_binlog if special else None)
    encoding = _PY_CODEC[b.charset or ""]
    code = _ENCODING_CODES[encoding]
    return (n.OP_STR, prefix, code, MYSQL_LATIN1_TABLE if code == 1 else None, None)


# How a column can be decoded inline by generated code (see _generate):
# ("struct", Struct) for fixed-width numbers, ("str1" | "str2", encoding) for CHAR/VARCHAR
# text with a 1- or 2-byte length.
Inline = tuple[str, Any]


def _inline_spec(b: BinlogColumn, codec: ColumnCodec) -> Inline | None:
    """The inline form of a column whose ``_column_decoder`` is plain, else None.

    Mirrors the first cases of ``_column_decoder``: a fixed-width number is
    ``_fixed(struct)``; a text CHAR/VARCHAR is ``_string(prefix, encoding, None)``
    with a 1-byte length up to 255 bytes, else 2.
    """
    code = b.type_code
    fixed = _STRUCTS.get((code, b.unsigned))
    if fixed is not None:
        return ("struct", fixed)
    if code in (t.T_STRING, t.T_VARCHAR, t.T_VAR_STRING) and b.max_length is not None:
        special = codec.type.kind is Kind.UUID or codec.type.native.startswith("inet")
        encoding = _PY_CODEC.get(b.charset or "")
        if not b.binary and not special and encoding:
            return ("str1" if b.max_length <= 255 else "str2", encoding)
    return None


def _generate(
    names: Sequence[str], decoders: Sequence[ColumnDecoder], inline: Sequence[Inline | None]
) -> Callable[[bytes, int], tuple[Image, int]]:
    """A function decoding one image without NULLs: runs of fixed-width numbers
    read by one ``unpack_from``, short strings sliced in place, other columns
    through their decoder; returns the row dict (in column order) and the offset."""
    env: dict[str, Any] = {}
    lines = ["def image(buf, off):"]
    run: list[tuple[int, Struct]] = []

    def flush_run() -> None:
        if not run:
            return
        packed = Struct("<" + "".join(st.format.lstrip("<") for _, st in run))
        unpack = f"u{run[0][0]}"
        env[unpack] = packed.unpack_from
        targets = "".join(f"v{i}, " for i, _ in run)
        lines.append(f"    {targets}= {unpack}(buf, off)")
        lines.append(f"    off += {packed.size}")
        run.clear()

    for i, (dec, spec) in enumerate(zip(decoders, inline, strict=True)):
        if spec is not None and spec[0] == "struct":
            run.append((i, spec[1]))
            continue
        flush_run()
        if spec is not None and spec[0] == "str1":
            lines += [
                "    end = off + 1 + buf[off]",
                f"    v{i} = buf[off + 1 : end].decode({spec[1]!r})",
                "    off = end",
            ]
        elif spec is not None and spec[0] == "str2":
            lines += [
                "    end = off + 2 + (buf[off] | buf[off + 1] << 8)",
                f"    v{i} = buf[off + 2 : end].decode({spec[1]!r})",
                "    off = end",
            ]
        else:
            env[f"d{i}"] = dec
            lines.append(f"    v{i}, off = d{i}(buf, off)")
    flush_run()
    fields = ", ".join(f"{name!r}: v{i}" for i, name in enumerate(names))
    lines.append(f"    return {{{fields}}}, off")
    code = compile("\n".join(lines) + "\n", "<row image decoder>", "exec")
    exec(code, env)
    image: Callable[[bytes, int], tuple[Image, int]] = env["image"]
    return image


class FastRowDecoder:
    """Decodes a rows event of one table version into canonical images."""

    __slots__ = ("_all", "_columns", "_dense", "_ncols", "_null_bytes", "program")

    @property
    def ncols(self) -> int:
        return self._ncols

    @property
    def all_columns(self) -> int:
        """The columns-present bitmap of a full image, as an int."""
        return self._all

    def __init__(
        self,
        names: Sequence[str],
        decoders: Sequence[ColumnDecoder],
        inline: Sequence[Inline | None] | None = None,
        program: Any = None,
    ) -> None:
        #: the C program (``_crowimage.Program``) decoding whole bodies, if built
        self.program = program
        self._columns = tuple(zip(names, decoders, strict=True))
        n = self._ncols = len(names)
        self._null_bytes = (n + 7) // 8
        self._all = (1 << n) - 1
        # Images without NULLs (the common case) take a generated, straight-line path.
        self._dense = _generate(names, decoders, inline or [None] * n)

    def handles(self, ev: Any) -> bool:
        """Full row images of all columns (else the library path takes the event)."""
        if ev.number_of_columns != self._ncols:
            return False
        everything = self._all
        for bitmap in (ev.columns_present_bitmap, getattr(ev, "columns_present_bitmap2", None)):
            # padding bits past the last column are ignored, whatever the server put there
            if bitmap is not None and int.from_bytes(bitmap, "little") & everything != everything:
                return False
        return True

    def images(self, ev: Any, pairs: bool) -> list[Any]:
        """All row images of ``ev``: dicts, or (before, after) pairs for updates."""
        packet = ev.packet
        buf: bytes = packet.read(ev.event_size - packet.read_bytes)
        return self.decode(buf, 0, len(buf), pairs)

    def decode(self, buf: bytes, off: int, end: int, pairs: bool) -> list[Any]:
        """The row images in ``buf[off:end]`` (a rows event's body after its header)."""
        if self.program is not None:
            images: list[Any] = self.program.decode(buf, off, end, pairs)
            return images
        out: list[Any] = []
        image = self._image
        if off < end and self._ncols == 0:
            raise ValueError(_NO_COLUMNS)
        try:
            while off < end:
                if pairs:
                    before, off = image(buf, off)
                    after, off = image(buf, off)
                    out.append((before, after))
                else:
                    row, off = image(buf, off)
                    out.append(row)
        except (struct.error, IndexError) as e:  # a fixed-width read ran past the bytes
            raise ValueError(f"truncated row image at offset {off}: {e}") from None
        if off > end:
            raise ValueError(
                f"truncated row image: the last image ends at offset {off}, "
                f"the event body at {end}"
            )
        return out

    def _image(self, buf: bytes, off: int) -> tuple[Image, int]:
        nb = self._null_bytes
        # Bits past the last column are padding (MariaDB sets them).
        nulls = int.from_bytes(buf[off : off + nb], "little") & self._all
        off += nb
        if not nulls:
            return self._dense(buf, off)
        row: Image = {}
        for i, (name, dec) in enumerate(self._columns):
            if nulls >> i & 1:
                row[name] = None
            else:
                row[name], off = dec(buf, off)
        return row, off


def build_fast_decoder(
    columns: Sequence[BinlogColumn],
    codecs: Sequence[ColumnCodec],
    *,
    use_native: bool | None = None,
) -> FastRowDecoder | None:
    """A decoder for this TableMap, or None if a column needs the library.

    ``use_native`` None: the C program when it is built (and not disabled by
    ``CDC_NATIVE=0``); False: the Python decoders only.
    """
    decoders = []
    for b, codec in zip(columns, codecs, strict=True):
        dec = _column_decoder(b, codec)
        if dec is None:
            return None
        decoders.append(dec)
    inline = [_inline_spec(b, codec) for b, codec in zip(columns, codecs, strict=True)]
    names = [b.name for b in columns]
    program = None
    if _native is not None and use_native is not False:
        specs = tuple(
            _native_spec(b, codec, dec)
            for b, codec, dec in zip(columns, codecs, decoders, strict=True)
        )
        program = _native.Program(tuple(sys.intern(n) for n in names), specs)
    elif use_native:
        raise RuntimeError("the native row-image decoder is not available")
    return FastRowDecoder(names, decoders, inline, program)
