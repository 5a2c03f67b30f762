"""Source positions as the engine sees them: ordered, stored, read back by kind.

A position says where in a database's change log an event sits. Sources resume
from one, the offsets store persists one, and sinks compare them to skip
replays. Each connector owns its position type (a frozen subclass of
:class:`Position`, e.g. ``connectors/<db>/position.py``) and its
:class:`cdc.spi.PositionCodec`; the engine only orders positions of one kind,
stores ``to_dict()`` (versioned JSON-able dicts, whose ``kind`` names the
connector) and reads them back through the codec of that kind, found in the
connector registry.

Ordering is ``(log position, index within the transaction)``: a source that
replays a transaction re-emits the same positions, so "at or below the last
applied position" identifies a duplicate exactly.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

from cdc.errors import PositionError

if TYPE_CHECKING:  # cdc.spi imports this module
    from cdc.spi import PositionCodec

POSITION_FORMAT: Final = 1  # the "v" of every stored position dict


class Position:
    """Base of every source position; subclasses are frozen dataclasses.

    ``kind`` is the owning connector's kind. ``sort_key`` orders positions of
    one kind (comparing two kinds is a PositionError); ``to_dict`` is the
    stored form, ``{"v": POSITION_FORMAT, "kind": kind, ...}`` with JSON values.
    ``last_in_tx`` marks the last event of a source transaction: only after it
    may a batch end, the source be acknowledged or a stream resume.
    ``version_ts_ms`` is the write's master-master version time when its source
    stamps one (a hybrid logical clock; docs/MASTER-MASTER.md), else None: master-
    master sinks then order the write by ``source.ts_ms``.
    """

    kind: ClassVar[str]
    last_in_tx: bool

    @property
    def version_ts_ms(self) -> int | None:
        return None

    def sort_key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _check(self, other: object) -> Position:
        if not isinstance(other, Position) or other.kind != self.kind:
            raise PositionError(f"cannot compare a {self.kind} position with {other!r}")
        return other

    def __lt__(self, other: object) -> bool:
        return self.sort_key() < self._check(other).sort_key()

    def __le__(self, other: object) -> bool:
        return self.sort_key() <= self._check(other).sort_key()

    def __gt__(self, other: object) -> bool:
        return self.sort_key() > self._check(other).sort_key()

    def __ge__(self, other: object) -> bool:
        return self.sort_key() >= self._check(other).sort_key()


def position_codec(kind: str) -> PositionCodec:
    """The codec of the installed connector of ``kind``; PositionError naming the
    installed kinds when there is none."""
    from cdc.registry import default_registry  # the registry imports cdc.spi, which imports us

    return default_registry().position_codec(kind)


def position_from_dict(d: Mapping[str, Any]) -> Position:
    """Rebuild a position stored by ``to_dict``; unknown formats are an error."""
    if not isinstance(d, Mapping) or "kind" not in d:
        raise PositionError(f"not a stored position: {d!r}")
    if int(d.get("v", 0)) > POSITION_FORMAT:
        raise PositionError(
            f"stored position format v{d.get('v')} is newer than this cdc understands "
            f"(v{POSITION_FORMAT}); upgrade cdc"
        )
    kind = d["kind"]
    codec = position_codec(str(kind))
    try:
        return codec.from_dict(d)
    except (KeyError, ValueError, TypeError) as e:
        raise PositionError(f"malformed {kind} position {dict(d)!r}: {e}") from e


def _no_default(o: Any) -> Any:
    raise TypeError(f"{type(o).__name__} in a position's to_dict() is not JSON")


def _compact_json_encoder() -> Callable[[Any], str]:
    """Compact ``json.dumps`` without its per-call encoder set-up (~2 us saved).

    Positions are small flat dicts, encoded once per event on the hot path.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the C accelerator
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    chunks = make(
        None, _no_default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )

    def encode(o: Any) -> str:
        return "".join(chunks(o, 0))

    return encode


position_json: Final = _compact_json_encoder()
"""The ``cdc_position`` text of a position's ``to_dict()`` (compact JSON, key order kept)."""

_TEXT_HEAD: Final = '{"v":1,"kind":"'


def text_kind(text: str) -> str | None:
    """The kind of a ``cdc_position`` text as :func:`position_json` writes it (its
    second key), without parsing it; None for any other spelling."""
    if not text.startswith(_TEXT_HEAD):
        return None
    end = text.find('"', 15)
    return None if end < 0 else text[15:end]


def parse_position(text: str) -> Position:
    """A ``cdc_position`` text as a position: the codec's fast parse when it knows
    the exact form, else the JSON through :func:`position_from_dict`."""
    kind = text_kind(text)
    if kind is not None:
        fast = position_codec(kind).parse_text(text)
        if fast is not None:
            return fast
    try:
        stored = json.loads(text)
    except ValueError as e:
        raise PositionError(f"not a stored position: {text!r:.200}: {e}") from e
    return position_from_dict(stored)
