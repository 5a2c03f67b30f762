"""Conflict detection and resolution for master-master sinks (pure: no I/O).

For every incoming write of a row -- a remote node's, or one of the node's own
writes learnt from its own topic -- :func:`decide` compares it with the row's
:class:`~cdc.sink.versions.Entry` (what this node last let stand):

* **Detection** does not use clocks. A write is *causal* when it was made on
  top of the entry: an insert where there is no row (no entry, or a deleted
  one), an update or delete whose before-image hash equals the entry's
  after-image hash. Otherwise it is *concurrent*, a conflict named with
  PostgreSQL 18's vocabulary: ``insert_exists``, ``update_origin_differs``,
  ``update_missing``, ``delete_origin_differs``, ``delete_missing``. A write
  without a before-image (a table without full row images) is causal when it
  comes from the node that wrote the entry.
* **Resolution**. A causal write with a higher version applies. Anything else
  is decided by the table's policy: ``last_writer_wins`` (higher version),
  ``priority`` (the node listed first; equal ranks by version) or
  ``keep_local`` (the node's own write wins, a remote one is only logged). A
  causal write with a *lower* version than the entry (its node's clock is
  behind) is logged as ``clock_skew`` and resolved by the same policy.
* **Clock-skew bound**: a write stamped more than ``max_clock_skew_ms`` in the
  future is logged as ``clock_skew``; with ``reject`` it is not applied.

An own write that wins is re-applied (a remote write may have overwritten it
in the replica meanwhile); one that loses changes nothing. Every node applies
the same rule to the same writes, so under last_writer_wins each row ends as
the write with the highest version whatever the arrival order (the model in
tests/unit/sink/test_conflict_model.py checks it with hypothesis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cdc.sink.versions import Entry, Version

WriteKind = Literal["insert", "update", "delete"]
ConflictType = Literal[
    "insert_exists",
    "update_origin_differs",
    "update_missing",
    "delete_origin_differs",
    "delete_missing",
    "update_exists",
    "clock_skew",
]
Resolution = Literal["last_writer_wins", "priority", "keep_local"]


@dataclass(frozen=True, slots=True)
class Write:
    """One incoming write of a row, as detection sees it.

    ``before_hash`` is the hash of its before-image (None: no before-image was
    captured); ``image``/``hash`` its after-image (None for a delete)."""

    kind: WriteKind
    version: Version
    before_hash: str | None
    image: str | None
    hash: str | None
    own: bool = False

    def entry(self) -> Entry:
        """The entry this write leaves when it wins."""
        return Entry(self.version, self.kind == "delete", self.image, self.hash)


@dataclass(frozen=True, slots=True)
class Rules:
    """The resolution settings for one table on one node."""

    node: str
    resolution: Resolution = "last_writer_wins"
    priority: Sequence[str] = ()
    max_clock_skew_ms: int = 60_000
    reject_skew: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a write: apply it (a remote write, or re-apply an own one),
    the entry to store (None: unchanged), the conflicts to log, and the decision."""

    apply: bool
    entry: Entry | None
    conflicts: tuple[ConflictType, ...]
    decision: str


def detect(entry: Entry | None, w: Write) -> ConflictType | None:
    """The conflict type of ``w`` against ``entry``, None when ``w`` is causal."""
    if entry is None:
        return None
    if w.kind == "insert":
        return None if entry.deleted else "insert_exists"
    if entry.deleted:
        return "update_missing" if w.kind == "update" else "delete_missing"
    if w.before_hash is None:
        if entry.version.node == w.version.node:
            return None
    elif w.before_hash == entry.hash:
        return None
    return "update_origin_differs" if w.kind == "update" else "delete_origin_differs"


def _rank(node: str, priority: Sequence[str]) -> int:
    """Higher for nodes listed earlier; unlisted nodes rank lowest."""
    try:
        return len(priority) - priority.index(node)
    except ValueError:
        return 0


def beats(w: Version, e: Version, rules: Rules) -> bool:
    """Whether a conflicting write of version ``w`` wins over the entry's ``e``."""
    if rules.resolution == "priority":
        rw, re_ = _rank(w.node, rules.priority), _rank(e.node, rules.priority)
        if rw != re_:
            return rw > re_
    elif rules.resolution == "keep_local":
        mine_w, mine_e = w.node == rules.node, e.node == rules.node
        if mine_w != mine_e:
            return mine_w
    return w.order > e.order


def decide(entry: Entry | None, w: Write, rules: Rules, now_ms: int) -> Outcome:
    """The outcome of write ``w`` on a row whose entry is ``entry``."""
    flagged: tuple[ConflictType, ...] = ()
    if w.version.ts_ms > now_ms + rules.max_clock_skew_ms and not w.own:
        if rules.reject_skew:
            return Outcome(False, None, ("clock_skew",), "rejected")
        flagged = ("clock_skew",)
    found = detect(entry, w)
    if entry is None:
        return Outcome(True, w.entry(), flagged, "apply")
    newer = w.version.order > entry.version.order
    if found is None and newer:
        return Outcome(True, w.entry(), flagged, "apply")
    if found is None:  # made on top of the entry, yet an older version: a clock behind
        if "clock_skew" not in flagged:
            flagged = (*flagged, "clock_skew")
        conflicts = flagged
    else:
        conflicts = (found, *flagged)
    if beats(w.version, entry.version, rules):
        return Outcome(True, w.entry(), conflicts, "reapply_local" if w.own else "apply_remote")
    return Outcome(False, None, conflicts, "keep_local" if not w.own else "keep_remote")
