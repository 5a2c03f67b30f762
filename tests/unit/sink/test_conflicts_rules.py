"""Conflict detection and resolution rules (cdc.sink.conflicts), versions and the config keys."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pydantic import ValidationError

from cdc.sink.conflicts import Rules, Write, decide, detect
from cdc.sink.versions import Entry, Version, canonical_image, image_hash
from connectors.postgres.config import PostgresSinkConfig

A = canonical_image({"id": 1, "v": 1})
B = canonical_image({"id": 1, "v": 2})
NOW = 10_000_000


def entry(ts: int, node: str, image: str | None = A) -> Entry:
    return Entry(Version(ts, node, (1,), "p"), image is None, image, image_hash(image))


def write(kind: str, ts: int, node: str, before: str | None, after: str | None,
          own: bool = False) -> Write:
    return Write(kind, Version(ts, node, (2,), "q"), image_hash(before), after,  # type: ignore[arg-type]
                 image_hash(after), own)


@pytest.mark.parametrize(("e", "w", "expected"), [
    (None, write("insert", 5, "b", None, A), None),
    (entry(1, "a"), write("insert", 5, "b", None, B), "insert_exists"),
    (entry(1, "a", None), write("insert", 5, "b", None, A), "insert_after_delete"),
    (entry(1, "b", None), write("insert", 5, "b", None, A), None),
    (entry(1, "a"), write("update", 5, "b", A, B), None),
    (entry(1, "a"), write("update", 5, "b", B, B), "update_origin_differs"),
    (entry(1, "a", None), write("update", 5, "b", A, B), "update_missing"),
    (entry(1, "a"), write("delete", 5, "b", A, None), None),
    (entry(1, "a"), write("delete", 5, "b", B, None), "delete_origin_differs"),
    (entry(1, "a", None), write("delete", 5, "b", A, None), "delete_missing"),
    # over a delete by the write's own node: made after it, never concurrent
    (entry(1, "b", None), write("update", 5, "b", A, B), None),
    (entry(1, "b", None), write("delete", 5, "b", A, None), None),
])
def test_detection_uses_postgresql_names(e: Entry | None, w: Write, expected: str | None) -> None:
    assert detect(e, w) == expected


def test_the_same_row_on_two_nodes_is_no_conflict() -> None:
    assert detect(entry(1, "a"), write("insert", 5, "b", None, A)) is None
    assert detect(entry(1, "a"), write("update", 5, "b", B, A)) is None


def test_without_a_before_image_only_the_same_node_is_causal() -> None:
    w = Write("update", Version(5, "a", (2,), "q"), None, B, image_hash(B))
    assert detect(entry(1, "a"), w) is None
    assert detect(entry(1, "c"), w) == "update_origin_differs"


def test_a_second_delete_by_the_same_node_is_no_conflict() -> None:
    """A PostgreSQL key change re-read after its row was deleted: the new key's delete,
    then the delete that removed the row, both by one node, neither with a full before-image
    (REPLICA IDENTITY DEFAULT). The second lands on the first's entry: applied, not logged,
    on another node and on its own (read back from its own topic)."""
    first = Write("delete", Version(5, "a", (2,), "q"), None, None, None)
    for own, node in ((False, "b"), (True, "a")):
        second = Write("delete", Version(6, "a", (3,), "r"), None, None, None, own)
        out = decide(first.entry(), second, Rules(node), NOW)
        assert (out.apply, out.conflicts, out.decision) == (True, (), "apply")
    assert detect(entry(1, "b", None), first) == "delete_missing"  # another node's: logged


def test_last_writer_wins_ties_break_on_node_name() -> None:
    rules = Rules("a")
    e = entry(5, "a")
    assert decide(e, write("insert", 5, "b", None, B), rules, NOW).apply  # "b" > "a"
    assert not decide(entry(5, "c"), write("insert", 5, "b", None, B), rules, NOW).apply


def test_priority_wins_within_its_window() -> None:
    rules = Rules("a", "priority", ("a", "b"), priority_window_ms=1000)
    assert not decide(entry(1, "a"), write("insert", 900, "b", None, B), rules, NOW).apply
    assert decide(entry(1, "a"), write("insert", 1100, "b", None, B), rules, NOW).apply
    late = decide(entry(1, "a"), write("update", 1100, "b", A, B), rules, NOW)
    assert late.apply and late.conflicts == ()
    soon = decide(entry(1, "a"), write("update", 900, "b", A, B), rules, NOW)
    assert not soon.apply and soon.conflicts == ("superseded",)


def test_keep_local_keeps_the_row_and_logs() -> None:
    out = decide(entry(1, "a"), write("update", 9, "b", B, B), Rules("a", "keep_local"), NOW)
    assert (out.apply, out.entry, out.conflicts, out.decision) == (
        False, None, ("update_origin_differs",), "keep_local")


def test_an_own_write_that_wins_is_reapplied_and_one_that_loses_is_not() -> None:
    rules = Rules("a")
    won = decide(entry(5, "b", B), write("update", 9, "a", A, A, own=True), rules, NOW)
    assert won.apply and won.decision == "reapply_local"
    lost = decide(entry(9, "b", B), write("update", 5, "a", A, A, own=True), rules, NOW)
    assert not lost.apply and lost.restore and lost.decision == "restore"


def test_clock_skew_is_flagged_or_rejected() -> None:
    w = write("insert", NOW + 70_000, "b", None, A)
    flagged = decide(None, w, Rules("a", max_clock_skew_ms=60_000), NOW)
    assert flagged.apply and flagged.conflicts == ("clock_skew",)
    rejected = decide(None, w, Rules("a", max_clock_skew_ms=60_000, reject_skew=True), NOW)
    assert not rejected.apply and rejected.entry is None and rejected.decision == "rejected"


def test_a_causal_write_with_an_older_clock_is_logged_as_skew() -> None:
    out = decide(entry(9, "a"), write("update", 5, "b", A, B), Rules("a"), NOW)
    assert not out.apply and out.conflicts == ("clock_skew",)


def test_images_hash_alike_across_databases() -> None:
    pg = {"id": 1, "price": Decimal("1.50"), "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}
    my = {"at": dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
          "price": Decimal("1.5"), "id": 1}
    assert image_hash(canonical_image(pg)) == image_hash(canonical_image(my))
    assert image_hash(canonical_image({"id": 1, "b": b"x"})) != image_hash(
        canonical_image({"id": 1, "b": "x"}))


def _sink(**extra: object) -> PostgresSinkConfig:
    return PostgresSinkConfig(name="node_a", kind="postgres", topics=("node_b.mm.*",),
                              target={"dsn": "postgresql://x@127.0.0.1/db"}, **extra)  # type: ignore[arg-type]


def test_conflicts_config_subscribes_own_topics_and_needs_origin() -> None:
    s = _sink(origin="node_a", conflicts={"own_topics": ["node_a.mm.*"],
                                          "tables": {"mm.t": {"resolution": "priority"}}})
    assert s.subscription() == [r"^node_b\.mm\..*$", r"^node_a\.mm\..*$"]
    assert s.subscribes("node_a.mm.t") and s.conflicts is not None
    assert s.conflicts.resolution_of("mm.t") == "priority"
    assert s.conflicts.resolution_of("mm.u") == "last_writer_wins"
    with pytest.raises(ValidationError, match="origin"):
        _sink(conflicts={})
    with pytest.raises(ValidationError, match="resolution"):
        _sink(origin="node_a", conflicts={"resolution": "newest"})


def test_one_way_sinks_have_no_conflicts() -> None:
    assert _sink().conflicts is None and _sink().subscription() == [r"^node_b\.mm\..*$"]
