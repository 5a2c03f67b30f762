"""Preflight problems, idle heartbeats, table filters and lag metrics."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cdc.spi import Heartbeat
from connectors.mysql.position import GtidSet, MySqlPosition
from connectors.mysql.source import MySqlSource
from tests.integration.mysql.conftest import drain

pytestmark = pytest.mark.integration


def test_check_passes_for_a_keyed_table(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    unique_name: str,
) -> None:
    sql(f"CREATE TABLE {unique_name} (id INT PRIMARY KEY)")
    assert make_source(include=[f"cdc_source.{unique_name}"]).check() == []


def test_check_accepts_keyless_tables_and_reports_server_id_clash(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    unique_name: str,
) -> None:
    sql(f"CREATE TABLE {unique_name} (v INT)")
    problems = make_source(include=[f"cdc_source.{unique_name}"], server_id=1).check()
    text = "\n".join(map(str, problems))
    assert "primary key" not in text  # keyless tables are replicated by full-row match
    assert "server_id 1" in text
    assert all(p.fatal for p in problems)


def test_check_reports_missing_privileges(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    unique_name: str,
    source_kwargs: dict[str, Any],
) -> None:
    sql(f"CREATE TABLE {unique_name} (id INT PRIMARY KEY)")
    user, password = f"cdc_lim_{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex[:8]
    sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    try:
        sql(f"GRANT SELECT ON cdc_source.{unique_name} TO '{user}'@'%'")
        src = MySqlSource(
            {**source_kwargs, "user": user, "password": password},
            name="lim",
            server_id=987654,
            include=[f"cdc_source.{unique_name}"],
        )
        problems = src.check()
        text = "\n".join(map(str, problems))
        assert "REPLICATION SLAVE" in text and "BINLOG MONITOR" in text
        assert "GRANT" in text
    finally:
        sql(f"DROP USER '{user}'@'%'")


def test_unreachable_server_is_one_problem(source_kwargs: dict[str, Any]) -> None:
    src = MySqlSource({**source_kwargs, "port": 1, "connect_timeout": 1}, name="x", server_id=5)
    (problem,) = src.check()
    assert "cannot connect" in problem.what


def test_idle_heartbeats_filters_and_lag(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    unique_name: str,
) -> None:
    t_in, t_out = f"{unique_name}_in", f"{unique_name}_out"
    sql(f"CREATE TABLE {t_in} (id INT PRIMARY KEY)")
    sql(f"CREATE TABLE {t_out} (id INT PRIMARY KEY)")
    src = make_source(
        include=[f"cdc_source.{unique_name}_*"],
        exclude=[f"cdc_source.{unique_name}_out"],
        heartbeat_s=1.0,
    )
    start = src.reader.current_position()
    sql(f"INSERT INTO {t_out} VALUES (1)")
    stream = src.stream(start)
    beats: list[Heartbeat] = []
    stamps: list[float] = []
    t0 = time.monotonic()
    for item in stream:
        assert isinstance(item, Heartbeat), f"an excluded table's row was emitted: {item}"
        beats.append(item)
        stamps.append(time.monotonic())
        if time.monotonic() - t0 > 3.5:
            break
    assert len(beats) >= 2
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) <= 2.0, gaps
    last = beats[-1].position
    assert isinstance(last, MySqlPosition) and last.last_in_tx and not last.snapshot
    assert last.gtid_set.contains(start.gtid_set) and last.gtid_set != start.gtid_set
    assert src.seconds_behind == 0.0
    behind = src.bytes_behind()
    assert behind is not None and 0 <= behind < 10_000_000

    sql(f"INSERT INTO {t_in} VALUES (7)")
    (event,) = drain(stream, lambda ev: len(ev) >= 1)
    assert event.key == {"id": 7} and event.table.table == t_in
    assert isinstance(event.position, MySqlPosition)
    assert event.position.gtid_set.contains(GtidSet.parse(str(last.gtid_set)))
