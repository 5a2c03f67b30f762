"""MySQL/MariaDB positions: binlog coordinates, GTIDs and GTID sets.

The connector's offset context (cdc/spi.py PositionCodec): :class:`MySqlPosition`
is what the binlog source yields, the offsets topic and replica checkpoints
store (as ``to_dict()``), and sinks compare. Its stored form never changes:
existing deployments resume from it.

Sinks read one position per record, so :class:`MySqlPositionCodec` parses the
``cdc_position`` text with one regular expression instead of JSON, reuses the
GTID set of the previous texts (one or two per transaction), and reads a sort
key without building the position. Both fast forms are used only if they agree
with the generic JSON path on probe positions (checked at import).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, total_ordering
from typing import Any, ClassVar, Final

from cdc import native
from cdc.errors import PositionError
from cdc.positions import POSITION_FORMAT, Position, position_json


@lru_cache(maxsize=256)
def _file_sequence(name: str) -> int:
    """The sequence suffix of a binlog file name (sort keys ask for it per record)."""
    m = re.search(r"\.(\d+)$", name)
    if not m:
        raise PositionError(f"binlog file name without a sequence suffix: {name!r}")
    return int(m.group(1))


@total_ordering
@dataclass(frozen=True, slots=True)
class BinlogFile:
    """A binlog file name with its sequence number, ordered by that number."""

    name: str

    @property
    def sequence(self) -> int:
        return _file_sequence(self.name)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, BinlogFile):
            return NotImplemented
        return (self.sequence, self.name) < (other.sequence, other.name)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, order=True)
class MariaGtid:
    """One MariaDB GTID ``domain-server-sequence``."""

    domain: int
    server_id: int
    sequence: int

    @classmethod
    def parse(cls, text: str) -> MariaGtid:
        parts = text.strip().split("-")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise PositionError(f"not a MariaDB GTID: {text!r} (expected e.g. '0-1-42')")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]))

    def __str__(self) -> str:
        return f"{self.domain}-{self.server_id}-{self.sequence}"


@dataclass(frozen=True, slots=True)
class GtidSet:
    """A GTID set in MariaDB (``0-1-8,1-2-5``) or MySQL (``uuid:1-5:7``) form.

    Kept as a normalised value; ``contains`` gives the partial order GTID sets
    have (a set is "after" another when it includes it).
    """

    mariadb: tuple[MariaGtid, ...] = ()
    mysql: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()

    @classmethod
    def parse(cls, text: str) -> GtidSet:
        text = text.strip().replace("\n", "")
        if not text:
            return cls()
        items = [p.strip() for p in text.split(",") if p.strip()]
        if all(re.fullmatch(r"\d+-\d+-\d+", p) for p in items):
            by_domain = {g.domain: g for g in (MariaGtid.parse(p) for p in items)}
            return cls(mariadb=tuple(sorted(by_domain.values())))
        mysql: list[tuple[str, tuple[tuple[int, int], ...]]] = []
        for item in items:
            uuid, *ranges = item.split(":")
            if not re.fullmatch(r"[0-9a-fA-F-]{36}", uuid) or not ranges:
                raise PositionError(f"not a GTID set: {text!r}")
            spans = []
            for r in ranges:
                lo, _, hi = r.partition("-")
                spans.append((int(lo), int(hi or lo)))
            mysql.append((uuid.lower(), tuple(sorted(spans))))
        return cls(mysql=tuple(sorted(mysql)))

    def with_mariadb(self, gtid: MariaGtid) -> GtidSet:
        """The set after ``gtid`` committed (MariaDB keeps the last per domain)."""
        kept = [g for g in self.mariadb if g.domain != gtid.domain]
        return GtidSet(mariadb=tuple(sorted([*kept, gtid])), mysql=self.mysql)

    def contains(self, other: GtidSet) -> bool:
        mine = {g.domain: g.sequence for g in self.mariadb}
        for g in other.mariadb:
            if mine.get(g.domain, -1) < g.sequence:
                return False
        spans = dict(self.mysql)
        for uuid, theirs in other.mysql:
            for lo, hi in theirs:
                if not any(a <= lo and hi <= b for a, b in spans.get(uuid, ())):
                    return False
        return True

    def __str__(self) -> str:
        if self.mariadb:
            return ",".join(str(g) for g in self.mariadb)
        return ",".join(
            uuid + "".join(f":{lo}" if lo == hi else f":{lo}-{hi}" for lo, hi in spans)
            for uuid, spans in self.mysql
        )

    def __bool__(self) -> bool:
        return bool(self.mariadb or self.mysql)


@dataclass(frozen=True, slots=True, eq=True)
class MySqlPosition(Position):
    """Where an event sits in a MySQL/MariaDB binlog.

    ``file``/``pos`` locate the transaction's start (its GTID or BEGIN event),
    which is where a resumed reader must restart to see the whole transaction;
    ``index`` orders row changes inside it. ``gtid_set`` is the executed set
    *including* this transaction when ``last_in_tx`` (else before it), used to
    resume by GTID. Ordering uses file/pos/index, which is exact for one server.

    ``vts`` (0: none) is the master-master version time in ms of the event's
    transaction (a hybrid logical clock, see the reader's module docstring); on a
    position between transactions, the least version time the next local
    transaction may take. It is carried in ``cdc_position`` so sinks order writes
    by it (:attr:`version_ts_ms`) and a restarted reader resumes its clock.
    """

    kind: ClassVar[str] = "mysql"
    file: BinlogFile
    pos: int
    index: int = 0
    gtid_set: GtidSet = field(default_factory=GtidSet, compare=False)
    gtid: str | None = field(default=None, compare=False)
    server_id: int = field(default=0, compare=False)
    snapshot: bool = False
    last_in_tx: bool = field(default=True, compare=False)
    vts: int = field(default=0, compare=False)

    @property
    def version_ts_ms(self) -> int | None:
        """The write's master-master version time (None: order by ``source.ts_ms``)."""
        return self.vts or None

    def sort_key(self) -> tuple[int, int, int]:
        idx = self.index if self.snapshot else (1 << 62) + self.index
        return (self.file.sequence, self.pos, idx)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "v": POSITION_FORMAT,
            "kind": self.kind,
            "file": self.file.name,
            "pos": self.pos,
            "index": self.index,
            "gtid_set": str(self.gtid_set),
            "gtid": self.gtid,
            "server_id": self.server_id,
            "snapshot": self.snapshot,
        }
        if self.vts:  # (only master-master sources stamp it: other texts stay as they were)
            d["vts"] = self.vts
        d["last_in_tx"] = self.last_in_tx  # (last: the source writer splices it per event)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MySqlPosition:
        return cls(
            file=BinlogFile(d["file"]),
            pos=int(d["pos"]),
            index=int(d.get("index", 0)),
            gtid_set=_gtid_set(d.get("gtid_set") or ""),
            gtid=d.get("gtid"),
            server_id=int(d.get("server_id", 0)),
            snapshot=bool(d.get("snapshot", False)),
            last_in_tx=bool(d.get("last_in_tx", True)),
            vts=int(d.get("vts") or 0),
        )

    def __hash__(self) -> int:
        return hash((self.file, self.pos, self.index, self.snapshot))




@lru_cache(maxsize=64)
def _gtid_set(text: str) -> GtidSet:
    """GtidSet.parse, remembered: a transaction's events share one or two sets, and a
    GtidSet is immutable."""
    return GtidSet.parse(text)


# The compact JSON of MySqlPosition.to_dict() (cdc.positions.position_json), field by
# field; texts with JSON escapes or in any other form take the generic path.
_TEXT: Final = re.compile(
    r'\{"v":1,"kind":"mysql","file":"([^"\\]*\.\d+)","pos":(\d+),"index":(\d+),'
    r'"gtid_set":"([^"\\]*)","gtid":(?:null|"([^"\\]*)"),"server_id":(\d+),'
    r'"snapshot":(true|false)(?:,"vts":(\d+))?,"last_in_tx":(true|false)\}\Z'
)
_SNAPSHOT_AFTER: Final = 1 << 62  # MySqlPosition.sort_key: streamed events after snapshot reads

_PROBES: Final = (
    MySqlPosition(BinlogFile("mysql-bin.000001"), 4),
    MySqlPosition(BinlogFile("mariadb-bin.000123"), 2**40, index=7, gtid_set=GtidSet.parse("0-1-8,1-2-5"),
                  gtid="1-2-5", server_id=2, snapshot=True, last_in_tx=False, vts=1_765_000_000_000),
    MySqlPosition(BinlogFile("binlog.999999"), 157, index=2**40,
                  gtid_set=GtidSet.parse("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7"),
                  gtid="3e11fa47-71ca-11e1-9e33-c80aa9429562:7", server_id=2**32 - 1),
)


def _fast_parse(text: str) -> MySqlPosition | None:
    m = _TEXT.match(text)
    if m is None:
        return None
    file, pos, index, gtids, gtid, server_id, snapshot, vts, last = m.groups()
    return MySqlPosition(
        file=BinlogFile(file), pos=int(pos), index=int(index), gtid_set=_gtid_set(gtids),
        gtid=gtid, server_id=int(server_id), snapshot=snapshot == "true",
        last_in_tx=last == "true", vts=int(vts or 0),
    )


#: (text up to its index digits, text after them) of texts _fast_key matched -> their
#: file sequence, pos and snapshot flag: the same for every event of a transaction.
_KEYS: dict[tuple[str, str], tuple[int, int, bool]] = {}
_KEYS_MAX: Final = 4096
_INDEX: Final = '"index":'


_C: Final = native.load("connectors.mysql._cposition")
_C_KEY: Final[Callable[[str], tuple[int, int, int] | None] | None] = (
    None if _C is None else _C.text_sort_key
)


def _fast_key(text: str) -> tuple[int, int, int] | None:
    # The C reader first: it takes the exact form of ASCII texts (numbers up to 18
    # digits) and gives the key the code below gives (tested); the rest come here.
    if _C_KEY is not None:
        key = _C_KEY(text)
        if key is not None:
            return key
    return _py_fast_key(text)


def _py_fast_key(text: str) -> tuple[int, int, int] | None:
    # A transaction's events differ only in index and last_in_tx, and reach a sink
    # spread over partitions: a text whose pieces around the index (its first
    # '"index":', the field itself in a matched text: a file name holds no '"') were
    # those of a matched text, with ASCII digits between, is that text with another
    # index: no regular expression (sinks call this per record).
    i = text.find(_INDEX) + 8
    if i > 7:
        j = text.find(",", i)
        if j > i:
            hit = _KEYS.get((text[:i], text[j:]))
            if hit is not None:
                digits = text[i:j]
                if digits.isdigit() and digits.isascii():
                    seq, pos, snapshot = hit
                    n = int(digits)
                    return (seq, pos, n if snapshot else _SNAPSHOT_AFTER + n)
    m = _TEXT.match(text)
    if m is None:
        return None
    n = int(m.group(3))
    seq, pos, snapshot = _file_sequence(m.group(1)), int(m.group(2)), m.group(7) == "true"
    if len(_KEYS) >= _KEYS_MAX:
        _KEYS.clear()
    _KEYS[(text[: m.start(3)], text[m.end(3) :])] = (seq, pos, snapshot)
    return (seq, pos, n if snapshot else _SNAPSHOT_AFTER + n)


def _fast_forms_agree() -> bool:
    """Whether the fast forms give what the generic path gives for the probes (a change
    to to_dict or to position_json then falls back to JSON, not to a wrong position)."""
    for p in _PROBES:
        text = position_json(p.to_dict())
        fast, generic = _fast_parse(text), MySqlPosition.from_dict(json.loads(text))
        if fast is None or fast != generic or fast.to_dict() != generic.to_dict():
            return False
        if _fast_key(text) != generic.sort_key():
            return False
    return True


_FAST: Final = _fast_forms_agree()


class MySqlPositionCodec:
    """The MySQL connector's :class:`cdc.spi.PositionCodec`."""

    kind = MySqlPosition.kind

    def from_dict(self, stored: Mapping[str, Any]) -> MySqlPosition:
        return MySqlPosition.from_dict(stored)

    def parse_text(self, text: str) -> MySqlPosition | None:
        return _fast_parse(text) if _FAST else None

    def text_sort_key(self, text: str) -> tuple[int, int, int] | None:
        return _fast_key(text) if _FAST else None


CODEC = MySqlPositionCodec()
