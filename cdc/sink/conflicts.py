"""Conflict detection and resolution for master-master sinks (pure: no I/O).

For every incoming write of a row -- a remote node's, or one of the node's own
writes learnt from its own topic -- :func:`decide` compares it with the row's
:class:`~cdc.sink.versions.Entry` (what this node last let stand):

* **Detection** does not use clocks. A write is *causal* when it was made on
  top of the entry: an insert where there is no row (no entry, or a row the
  same node deleted), an update or delete whose before-image hash equals the entry's
  after-image hash; or any write leaving exactly the row the entry has (two
  nodes that start with the same rows, or make the same change, do not
  conflict). Otherwise it is *concurrent*, a conflict named with
  PostgreSQL 18's vocabulary: ``insert_exists``, ``update_origin_differs``,
  ``update_missing``, ``delete_origin_differs``, ``delete_missing``. A write
  without a before-image (a table without full row images) is causal when it
  comes from the node that wrote the entry; any write is causal over a delete
  by its own node (one node's writes are never concurrent with each other).
* **Resolution** follows a total order of writes, the same on every node:
  ``last_writer_wins`` orders by version; ``priority`` by version with each
  rank step of a node (listed earlier in ``priority``) worth
  ``priority_window_ms`` of time, so a higher-ranked node's write beats a
  lower-ranked one made up to that much later, and later writes win as usual.
  A causal write applies when it comes later in that order; a conflicting
  write applies when it wins. ``keep_local`` is no order: the node's own
  write wins a conflict, a remote one is only logged (nodes may then differ).
  A causal write that comes earlier in the order is logged as ``clock_skew``
  (its version is older: its node's clock is behind) or ``superseded`` (the
  priority window placed it before the entry) and does not apply.
* **Clock-skew bound**: a write stamped more than ``max_clock_skew_ms`` in the
  future is logged as ``clock_skew``; with ``reject`` it is not applied.

An own write that wins is re-applied (a remote write may have overwritten it
in the replica meanwhile; the planner does it only when the row still holds
the entry, :mod:`cdc.sink.conflictplan`); when one loses, the entry's image (or its delete) is
written back, since the replica may still hold the losing local write. Every node applies
the same total order to the same writes, so under last_writer_wins and
priority each row ends as the write that comes last in that order, whatever
the arrival order (the model in tests/unit/sink/test_conflict_model.py checks
it with hypothesis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

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
    "superseded",
    "insert_after_delete",
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
    priority_window_ms: int = 10_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a write: apply it (a remote write, or re-apply an own one),
    the entry to store (None: unchanged), the conflicts to log, and the decision."""

    apply: bool
    entry: Entry | None
    conflicts: tuple[ConflictType, ...]
    decision: str
    restore: bool = False  # write the entry's image (or delete) back: an own write lost


def detect(entry: Entry | None, w: Write) -> ConflictType | None:
    """The conflict type of ``w`` against ``entry``, None when ``w`` is causal."""
    if entry is None:
        return None
    if w.hash is not None and w.hash == entry.hash:
        return None  # it leaves the row the node has (the same row written on two nodes)
    if entry.deleted and entry.version.node == w.version.node:
        # A write of a key its own node deleted last: one node's writes follow one another,
        # so it was made after that delete, never concurrently with it (an insert re-inserts;
        # a second delete or an update found the key filled again by a write this node has
        # not got, and that write is the concurrent one). A PostgreSQL key change whose
        # re-read finds the row gone is such a pair: the delete of the new key, then the
        # later delete that removed it (connectors/postgres/SOURCE.md).
        return None
    if w.kind == "insert":
        if not entry.deleted:
            return "insert_exists"
        # Over another node's delete: a re-insert, or an insert that never saw the delete
        # (two nodes inserting and deleting one key at once); hashes cannot tell, so it is
        # logged (the order decides it either way).
        return "insert_after_delete"
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


def rank_key(v: Version, rules: Rules) -> tuple[Any, ...]:
    """The total order a policy resolves by: the version, or under ``priority`` the version
    with each rank step worth ``priority_window_ms`` of time."""
    if rules.resolution == "priority":
        boost = _rank(v.node, rules.priority) * rules.priority_window_ms
        return (v.ts_ms + boost, v.node, v.position)
    return v.order


def beats(w: Version, e: Version, rules: Rules) -> bool:
    """Whether write version ``w`` wins over the entry's ``e`` under the table's policy."""
    if rules.resolution == "keep_local":
        mine_w, mine_e = w.node == rules.node, e.node == rules.node
        if mine_w != mine_e:
            return mine_w
    return rank_key(w, rules) > rank_key(e, rules)


def decide(entry: Entry | None, w: Write, rules: Rules, now_ms: int) -> Outcome:
    """The outcome of write ``w`` on a row whose entry is ``entry``."""
    flagged: tuple[ConflictType, ...] = ()
    if w.version.ts_ms > now_ms + rules.max_clock_skew_ms and not w.own:
        if rules.reject_skew:
            return Outcome(False, None, ("clock_skew",), "rejected")
        flagged = ("clock_skew",)
    if entry is None:
        return Outcome(True, w.entry(), flagged, "apply")
    found = detect(entry, w)
    if found is None:
        if rank_key(w.version, rules) > rank_key(entry.version, rules):
            return Outcome(True, w.entry(), flagged, "apply")
        # Made on top of the entry, yet ordered before it: its node's clock is behind
        # (or, under priority, it came within the window of a higher-ranked write).
        older = w.version.order < entry.version.order
        extra: ConflictType = "clock_skew" if older else "superseded"
        conflicts = flagged if extra in flagged else (*flagged, extra)
    else:
        conflicts = (found, *flagged)
    if beats(w.version, entry.version, rules):
        return Outcome(True, w.entry(), conflicts, "reapply_local" if w.own else "apply_remote")
    if w.own:  # the replica holds the losing local write: put the winner back
        return Outcome(False, None, conflicts, "restore", restore=True)
    return Outcome(False, None, conflicts, "keep_local")
