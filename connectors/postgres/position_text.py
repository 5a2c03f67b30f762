"""The ``cdc_position`` text of a :class:`PgPosition`, and the codec that reads it.

The text is the compact JSON of ``PgPosition.to_dict()``
(:func:`cdc.positions.position_json`); formatting it directly is ~2 us cheaper
per event than building the dict, and the sinks read its sort key straight from
the text (``_cposition.c``, with this module's regular expression as the
reference) for their per-record duplicate check. Both fast forms are used only
if they reproduce the generic JSON exactly for probe positions (checked at
import), so a change to :mod:`.position` falls back to the generic path, not
to a wrong position. :class:`PgPositionCodec` is the connector's
:class:`cdc.spi.PositionCodec`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from cdc import native
from cdc.positions import position_json
from connectors.postgres.position import Lsn, PgPosition

_SNAPSHOT_AFTER: Final = 1 << 62  # PgPosition.sort_key: streamed events sort after snapshot reads

_PROBES: Final = (
    PgPosition(Lsn(0)),
    PgPosition(Lsn(0x16_B374_D848), index=7, snapshot=True, last_in_tx=False),
    PgPosition(Lsn(2**64 - 1), index=2**40, snapshot=False, last_in_tx=True),
)


def format_position(head: str, lsn_text: str, p: PgPosition) -> str:
    """``position_json(p.to_dict())`` from its pieces (``head``: :data:`JSON_HEAD`)."""
    snapshot = "true" if p.snapshot else "false"
    last = "true" if p.last_in_tx else "false"
    return f'{head}{lsn_text}","index":{p.index},"snapshot":{snapshot},"last_in_tx":{last}}}'


def tail(snapshot: bool, last_in_tx: bool) -> str:
    """What follows the index in the text (see :func:`format_position`)."""
    return f',"snapshot":{"true" if snapshot else "false"},"last_in_tx":{"true" if last_in_tx else "false"}}}'


def _json_head() -> str | None:
    """The constant head of a PgPosition's JSON, if :func:`format_position` reproduces
    ``to_dict``'s JSON exactly for the probe positions."""
    head = '{"v":1,"kind":"' + PgPosition.kind + '","lsn":"'
    for p in _PROBES:
        if format_position(head, str(p.lsn), p) != position_json(p.to_dict()):
            return None
        text = f'{head}{p.lsn}","index":{p.index}{tail(p.snapshot, p.last_in_tx)}'
        if text != position_json(p.to_dict()):
            return None
    return head


JSON_HEAD: Final = _json_head()


def _pattern() -> re.Pattern[str] | None:
    """A parser for the JSON :func:`format_position` writes, used only if it agrees
    with ``PgPosition.from_dict`` on the probe positions (same reasoning as above)."""
    if JSON_HEAD is None:
        return None
    pattern = re.compile(
        re.escape(JSON_HEAD)
        + r'([0-9A-F]{1,8})/([0-9A-F]{1,8})","index":(\d+),'
        + r'"snapshot":(true|false),"last_in_tx":(true|false)\}\Z'
    )
    for p in _PROBES:
        text = format_position(JSON_HEAD, str(p.lsn), p)
        m = pattern.match(text)
        if m is None:
            return None
        hi, lo, index, snapshot, last = m.groups()
        parsed = PgPosition(
            Lsn((int(hi, 16) << 32) | int(lo, 16)), int(index), snapshot == "true", last == "true"
        )
        generic = PgPosition.from_dict(json.loads(text))
        if parsed != generic or parsed.last_in_tx != generic.last_in_tx:
            return None
    return pattern


_PATTERN: Final = _pattern()
_C: Final = native.load("connectors.postgres._cposition")
C_TEXT_SORT_KEY: Final[Callable[[str, str], tuple[int, int] | None] | None] = (
    None if _C is None else _C.text_sort_key
)


def text_key(text: str) -> tuple[tuple[int, int], str] | None:
    """The sort key of a ``cdc_position`` text, without building the position, or
    None when the text is not exactly what :func:`format_position` writes (then
    parse it generically). Also returns the text, so the caller can build the
    position later. Agrees with ``PgPosition.sort_key`` (tested)."""
    if _PATTERN is None:
        return None
    m = _PATTERN.match(text)
    if m is None:
        return None
    hi, lo, index, snapshot, _ = m.groups()
    i = int(index)
    return ((int(hi, 16) << 32) | int(lo, 16), i if snapshot == "true" else _SNAPSHOT_AFTER + i), text


def text_sort_key(text: str) -> tuple[int, int] | None:
    """``text_key(text)[0]`` (None when that is None), read by the C parser when it
    can: it accepts a subset of the same texts (ASCII digits, at most 18 of them)
    and gives the same key (tested); the rest go to the regular expression."""
    if JSON_HEAD is None or _PATTERN is None:
        return None
    if C_TEXT_SORT_KEY is not None:
        key = C_TEXT_SORT_KEY(JSON_HEAD, text)
        if key is not None:
            return key
    got = text_key(text)
    return None if got is None else got[0]


class PgPositionCodec:
    """The PostgreSQL connector's :class:`cdc.spi.PositionCodec`."""

    kind = PgPosition.kind

    def __init__(self) -> None:
        self._lsn: tuple[str, str, Lsn] | None = None  # the last text's LSN: one per transaction

    def from_dict(self, stored: Mapping[str, Any]) -> PgPosition:
        return PgPosition.from_dict(stored)

    def parse_text(self, text: str) -> PgPosition | None:
        if _PATTERN is None:
            return None
        m = _PATTERN.match(text)
        if m is None:
            return None
        hi, lo, index, snapshot, last = m.groups()
        lsn = self._lsn
        if lsn is None or lsn[0] != hi or lsn[1] != lo:
            lsn = self._lsn = (hi, lo, Lsn((int(hi, 16) << 32) | int(lo, 16)))
        return PgPosition(lsn[2], int(index), snapshot == "true", last == "true")

    # The module function itself (no extra call frame: the sinks call it per record).
    text_sort_key = staticmethod(text_sort_key)


CODEC: Final = PgPositionCodec()
