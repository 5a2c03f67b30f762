"""``cdc.native.positional_constructor``: the C ``Maker`` and the Python path build equal objects.

The two paths are chosen by whether ``cdc._cslots`` loads; ``CDC_NATIVE=0``
forces the Python one. Both must give objects equal to the class's own
constructor, with every field set (including ``None`` and falsy values),
still frozen, and a class with ``__post_init__`` must get its real
constructor so its checks run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cdc import native
from cdc.events import ChangeEvent, Op, SourceInfo, TransactionInfo
from connectors.postgres.position import Lsn, PgPosition

cslots = native.load("cdc._cslots")


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("negative")


@dataclasses.dataclass(frozen=True)
class Unslotted:
    n: int


def _samples() -> list[tuple[type[Any], tuple[Any, ...]]]:
    position = PgPosition(Lsn(0x1_0000_00A0), 3, False, True)
    source = SourceInfo("postgresql", "src", "1.0", "18.1", position, 1_700_000_000_000, "742",
                        "false", None)
    tx = TransactionInfo("742", 4, 2)
    event = ChangeEvent(Op.UPDATE, None, {"id": 1}, {"id": 1, "v": None}, {"id": 1, "v": ""},
                        source, 1_700_000_000_001, tx, frozenset({"blob"}))
    return [
        (PgPosition, (Lsn(0), 0, False, False)),
        (PgPosition, (Lsn(0xFFFF_FFFF_FFFF_FFFF), 2**31, True, True)),
        (SourceInfo, tuple(getattr(source, f.name) for f in dataclasses.fields(SourceInfo))),
        (TransactionInfo, tuple(getattr(tx, f.name) for f in dataclasses.fields(TransactionInfo))),
        (ChangeEvent, tuple(getattr(event, f.name) for f in dataclasses.fields(ChangeEvent))),
    ]


def _check(make: Any, cls: type[Any], args: tuple[Any, ...]) -> Any:
    built = make(*args)
    assert type(built) is cls
    assert built == cls(*args)
    for f, value in zip(dataclasses.fields(cls), args, strict=True):
        assert getattr(built, f.name) is value
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, dataclasses.fields(cls)[0].name, args[0])
    return built


@pytest.mark.parametrize("cls,args", _samples(), ids=lambda v: getattr(v, "__name__", ""))
def test_python_path_builds_what_the_class_builds(
    cls: type[Any], args: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDC_NATIVE", "0")
    make = native.positional_constructor(cls)
    assert make is not cls and not isinstance(make, type)
    _check(make, cls, args)


@pytest.mark.skipif(cslots is None, reason="C extension not built (make native)")
@pytest.mark.parametrize("cls,args", _samples(), ids=lambda v: getattr(v, "__name__", ""))
def test_c_and_python_paths_build_equal_objects(
    cls: type[Any], args: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    c_make = native.positional_constructor(cls)
    assert isinstance(c_make, cslots.Maker)  # type: ignore[union-attr]
    monkeypatch.setenv("CDC_NATIVE", "0")
    py_make = native.positional_constructor(cls)
    assert not isinstance(py_make, cslots.Maker)  # type: ignore[union-attr]
    assert _check(c_make, cls, args) == _check(py_make, cls, args)


@pytest.mark.parametrize("disabled", [False, True])
def test_a_class_with_post_init_or_without_slots_keeps_its_constructor(
    disabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if disabled:
        monkeypatch.setenv("CDC_NATIVE", "0")
    assert native.positional_constructor(Checked) is Checked
    assert native.positional_constructor(Unslotted) is Unslotted
    with pytest.raises(ValueError, match="negative"):
        native.positional_constructor(Checked)(-1)
