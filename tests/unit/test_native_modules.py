"""Native module hygiene (issue #11, defect 5).

* ``_crowimage`` keeps its state per module (heap types, constants in module
  state): loading it a second time gives an independent module whose types and
  objects work on their own (before: static types shared by every copy, and
  statics re-initialised on each exec).
* ``cdc._cslots.Maker`` refuses a class with ``__post_init__`` itself (before:
  only its callers checked, and a Maker silently skipped the checks).
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import sys

import pytest

from cdc import native

crowimage = native.load("connectors.mysql.source._crowimage")
cslots = native.load("cdc._cslots")


@pytest.mark.skipif(crowimage is None, reason="C extension not built (make native)")
def test_a_second_copy_of_crowimage_has_its_own_types_and_works() -> None:
    name = "connectors.mysql.source._crowimage"
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert copy is not sys.modules[name]
    assert copy.Program is not crowimage.Program  # type: ignore[union-attr]
    assert copy.EventBuilder is not crowimage.EventBuilder  # type: ignore[union-attr]
    specs = ((copy.OP_INT, 4, 0, None, None), (copy.OP_ENUM, 1, 0, ("", "a"), None))
    prog = copy.Program(("n", "e"), specs)
    body = b"\x00" + (7).to_bytes(4, "little") + b"\x05"  # enum index 5: out of range -> ""
    assert prog.decode(body, 0, len(body), False) == [{"n": 7, "e": ""}]
    builder = copy.EventBuilder(tuple, tuple, tuple, tuple)
    assert callable(builder)
    del copy, prog, builder
    gc.collect()
    # the first copy is untouched by the second one's life and death
    again = crowimage.Program(("n",), ((crowimage.OP_INT, 1, 1, None, None),))  # type: ignore[union-attr]
    assert again.decode(b"\x00\xff", 0, 2, False) == [{"n": 255}]


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("negative")


@dataclasses.dataclass(frozen=True, slots=True)
class Plain:
    n: int


@pytest.mark.skipif(cslots is None, reason="C extension not built (make native)")
def test_maker_refuses_a_class_whose_post_init_it_would_skip() -> None:
    with pytest.raises(TypeError, match="__post_init__"):
        cslots.Maker(Checked, ("n",))  # type: ignore[union-attr]
    assert cslots.Maker(Plain, ("n",))(3) == Plain(3)  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["connectors.postgres.source._cpgoutput",
                                  "connectors.mysql.sink._cliteral"])
def test_stateless_modules_load_again_as_independent_modules(name: str) -> None:
    """Multi-phase init without state: a second load is a new, working module."""
    if native.load(name) is None:
        pytest.skip("C extension not built (make native)")
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert copy is not sys.modules[name]
    if name.endswith("_cpgoutput"):
        assert copy.read_tuple(b"\x00\x01n", 0, None) == ((None,), 3)
    else:
        assert copy.row([1, None, "a'b"], str, False) == "(1,NULL,'a\\'b')"
