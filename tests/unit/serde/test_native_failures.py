"""The C speed-ups fail loudly (issue #11, defects 2 and 3).

* ``_cencode.RowProgram`` is immutable once built and GC-tracked: a fallback that
  calls ``__init__`` on it mid-encode frees nothing (before: use-after-free).
* ``_cencode`` takes the slow path only on its own "not handled here" signal
  (SlowPath); an error raised by the row itself (its ``__getitem__``, ``__len__``)
  propagates (before: cleared, whatever it was, and re-encoded in Python).
* The native-read wrappers hand only SerializationError (bad bytes) to the
  reference reader; any other failure of the C reader propagates (before: every
  Exception silently took the slow path).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from cdc import native
from cdc.serde.binary import zigzag
from cdc.serde.decode import EnvelopeReader
from cdc.serde.envelope import named_types
from cdc.serde.reader import compile_native, compile_reader, native_reader
from cdc.serde.rowdecode import KeyReader, WriterSchema
from tests.unit.serde.test_decode_limits import ENVELOPE, bomb

cencode = native.load("cdc.serde._cencode")
cdecode = native.load("cdc.serde._cdecode")


def _int_field(name: str) -> tuple[Any, ...]:
    return (name, False, cencode.OP_INT, -(2**63), 2**63 - 1, bytes, b"")  # type: ignore[union-attr]


@pytest.mark.skipif(cencode is None, reason="C extension not built (make native)")
def test_a_row_program_cannot_be_reinitialised_under_a_running_encode() -> None:
    calls: list[int] = []

    def fallback(v: Any) -> bytes:
        calls.append(1)
        prog.__init__([_int_field("x")] * 50)  # before the fix: freed the fields being walked
        return b"\x07"

    fields = [("a", False, cencode.OP_CALL, 0, 0, fallback, b""), _int_field("b")]  # type: ignore[union-attr]
    prog = cencode.RowProgram(fields)  # type: ignore[union-attr]
    assert prog.encode({"a": object(), "b": 3}) == b"\x07" + zigzag(3)
    assert prog.encode({"a": object(), "b": 4}) == b"\x07" + zigzag(4)  # still the same program
    assert len(calls) == 2


@pytest.mark.skipif(cencode is None, reason="C extension not built (make native)")
def test_a_row_program_is_gc_tracked_and_its_cycles_are_collected() -> None:
    holder: list[Any] = []
    fields = [("a", False, cencode.OP_CALL, 0, 0, lambda v: holder and b"", b"")]  # type: ignore[union-attr]
    prog = cencode.RowProgram(fields)  # type: ignore[union-attr]
    assert gc.is_tracked(prog)
    holder.append(prog)  # prog -> fallback -> closure cell -> holder -> prog
    assert any(callable(r) for r in gc.get_referents(prog))  # tp_traverse sees the fallback


class _Row(Mapping[str, Any]):
    """A mapping whose lookups or length fail with an error that is not 'missing'."""

    def __init__(self, fail_len: bool) -> None:
        self.fail_len = fail_len

    def __getitem__(self, k: str) -> Any:
        raise RuntimeError("lookup failed")

    def __len__(self) -> int:
        if self.fail_len:
            raise RuntimeError("len failed")
        return 1

    def __iter__(self) -> Iterator[str]:
        return iter(["b"])


@pytest.mark.skipif(cencode is None, reason="C extension not built (make native)")
def test_errors_of_the_row_itself_propagate_not_the_slow_path() -> None:
    prog = cencode.RowProgram([_int_field("b")])  # type: ignore[union-attr]
    for fail_len in (False, True):
        with pytest.raises(RuntimeError, match="failed"):
            prog.encode(_Row(fail_len))
    with pytest.raises(cencode.SlowPath):  # type: ignore[union-attr]
        prog.encode({"c": 1})  # a missing column is the one "not handled here" case
    with pytest.raises(KeyboardInterrupt):
        cencode.RowProgram(  # type: ignore[union-attr]
            [("a", False, cencode.OP_CALL, 0, 0, _interrupt, b"")]  # type: ignore[union-attr]
        ).encode({"a": 1})


def _interrupt(v: Any) -> bytes:
    raise KeyboardInterrupt


@pytest.mark.skipif(cdecode is None, reason="C extension not built (make native)")
def test_a_native_reader_failure_that_is_not_bad_bytes_propagates() -> None:
    """A C reader that fails with anything but SerializationError (here TypeError: it
    was handed something that is not a Program, as a bug would) is not answered by the
    reference reader; before the fix the reference path silently returned the value."""
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}
    python, _ = compile_reader(schema, named_types(schema))
    good = native_reader(compile_native(schema, named_types(schema)), python)
    assert good(zigzag(5)) == {"a": 5}
    with pytest.raises(Exception, match="does not match"):
        good(b"\x80")  # bad bytes: the reference names them
    broken = native_reader(object(), python)
    with pytest.raises(TypeError, match="Program"):
        broken(zigzag(5))

    reader = EnvelopeReader(WriterSchema.parse(ENVELOPE))
    body = bomb(2, 1)
    assert reader.decode(body, None, None).after == {"id": 1, "tags": [None, None]}
    reader._native = object()  # a C reader that fails for a reason of its own
    with pytest.raises(TypeError):
        reader.decode(body, None, None)

    key = {"type": "record", "name": "Key", "fields": [{"name": "k", "type": "long"}]}
    kr = KeyReader(WriterSchema.parse(key))
    kr._native = object()
    with pytest.raises(TypeError):
        kr.read(zigzag(1))
