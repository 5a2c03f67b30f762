"""Run records: their JSON forms read back, and the run log's answers."""

from __future__ import annotations

from cdc.snapshot.runs import ReplicaRecord, RunLog, RunRecord, TableRun, new_run_id


def _run(run_id: str, state: str = "published") -> RunRecord:
    return RunRecord("pg_snap", run_id, state, 1_000, 3_500,  # type: ignore[arg-type]
                     {"kind": "postgres", "lsn": "0/1C36758", "v": 1},
                     (TableRun("snap.items", "pg_snap.snap.items", 5, {0: (10, 13), 1: (4, 6)}),
                      TableRun("snap.empty", "pg_snap.snap.empty", 0)),
                     trigger="manual")


def test_run_record_round_trip() -> None:
    log = RunLog()
    run = _run("20261206T221500.123Z-1a2b")
    log.add(run.to_json())
    (back,) = log.runs.values()
    assert back == run
    assert back.rows == 5 and back.duration_s == 2.5
    assert back.key == "run/pg_snap/20261206T221500.123Z-1a2b"


def test_replica_record_round_trip_and_lookup() -> None:
    log = RunLog()
    rec = ReplicaRecord("pg_snap", "r1", "to_pg", "switched", 10, 20, rows=5)
    log.add(rec.to_json())
    assert log.replicas_of("pg_snap", "r1") == {"to_pg": rec}
    assert rec.key == "replica/pg_snap/r1/to_pg"


def test_latest_published_skips_running_and_failed() -> None:
    log = RunLog()
    for run_id, state in (("a", "published"), ("b", "published"), ("c", "failed"),
                          ("d", "running")):
        log.add(_run(run_id, state).to_json())
    # A later record of one key replaces the earlier (as compaction would).
    log.add(_run("a", "published").to_json())
    latest = log.latest_published("pg_snap")
    assert latest is not None and latest.run_id == "b"
    assert [r.run_id for r in log.runs_of("pg_snap")] == ["a", "b", "c", "d"]
    assert log.latest_published("other") is None


def test_run_ids_sort_by_start_time() -> None:
    from datetime import UTC, datetime

    a = new_run_id(datetime(2026, 12, 6, 9, 59, 59, 999000, tzinfo=UTC))
    b = new_run_id(datetime(2026, 12, 6, 10, 0, 0, 1000, tzinfo=UTC))
    assert a < b and a.startswith("20261206T095959.999Z-")
