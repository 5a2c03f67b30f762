"""Fixtures for the MySQL source against the local MariaDB (shared with other tests:
every test uses its own tables and its own replica server id)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pymysql
import pytest

from cdc.events import ChangeEvent
from cdc.spi import Heartbeat, StreamItem
from connectors.mysql.source import MySqlSource
from tests.fixtures.services import mysql_kwargs


@pytest.fixture()
def source_kwargs(mysql_source_url: str) -> dict[str, Any]:
    kw = mysql_kwargs(mysql_source_url)
    return {k: v for k, v in kw.items() if k != "autocommit"}


@pytest.fixture()
def db(source_kwargs: dict[str, Any]) -> Iterator[Any]:
    conn = pymysql.connect(**source_kwargs, autocommit=True)
    yield conn
    conn.close()


@pytest.fixture()
def sql(db: Any) -> Callable[..., Any]:
    def run(statement: str, *args: Any) -> Any:
        with db.cursor() as cur:
            cur.execute(statement, args or None)
            return cur.fetchall()

    return run


@pytest.fixture()
def make_source(source_kwargs: dict[str, Any]) -> Iterator[Callable[..., MySqlSource]]:
    made: list[MySqlSource] = []

    def make(**kw: Any) -> MySqlSource:
        kw.setdefault("name", "it_mysql")
        kw.setdefault("server_id", random.randint(100_000, 4_000_000_000))
        kw.setdefault("heartbeat_s", 0.5)
        kw.setdefault("reconnect_timeout_s", 60)
        src = MySqlSource(source_kwargs, **kw)
        made.append(src)
        return src

    yield make
    for src in made:
        src.close()


def drain(
    items: Iterable[StreamItem],
    until: Callable[[list[ChangeEvent]], bool],
    *,
    timeout: float = 20.0,
    heartbeats: list[Heartbeat] | None = None,
) -> list[ChangeEvent]:
    """Consume a stream until ``until(events so far)`` holds (fails on timeout)."""
    out: list[ChangeEvent] = []
    deadline = time.monotonic() + timeout
    for item in items:
        if isinstance(item, ChangeEvent):
            out.append(item)
        elif heartbeats is not None:
            heartbeats.append(item)
        if until(out):
            return out
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s with {len(out)} events: "
                f"{[(e.op, e.key) for e in out[-5:]]}"
            )
    raise AssertionError("the stream ended")
