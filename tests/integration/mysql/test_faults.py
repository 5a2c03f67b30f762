"""A server restart in the middle of a stream: the reader reconnects with backoff
from the last transaction it emitted, and no row is lost or repeated."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest

from cdc.events import ChangeEvent
from connectors.mysql.source import MySqlSource
from tests.integration.mysql.conftest import drain

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
N = 300


def _writer(kwargs: dict[str, Any], table: str, done: threading.Event) -> None:
    """Inserts ids 1..N, retrying through the restart (INSERT IGNORE: a retry of a
    committed insert changes nothing)."""
    conn = None
    i = 1
    while i <= N:
        try:
            if conn is None:
                conn = pymysql.connect(**kwargs, autocommit=True, connect_timeout=2)
            with conn.cursor() as cur:
                cur.execute(f"INSERT IGNORE INTO {table} VALUES (%s)", (i,))
            i += 1
            time.sleep(0.005)
        except pymysql.err.Error:
            conn = None
            time.sleep(0.2)
    if conn is not None:
        conn.close()
    done.set()


def test_server_restart_mid_stream(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    source_kwargs: dict[str, Any],
    unique_name: str,
) -> None:
    t = unique_name
    sql(f"CREATE TABLE {t} (id INT PRIMARY KEY)")
    src = make_source(include=[f"cdc_source.{t}"], gtid_mode="on")
    start = src.reader.current_position()
    done = threading.Event()
    threading.Thread(target=_writer, args=(source_kwargs, t, done), daemon=True).start()

    restarted: list[subprocess.CompletedProcess[str]] = []

    def restart_once(events: list[ChangeEvent]) -> bool:
        if len(events) >= 40 and not restarted:
            restarted.append(
                subprocess.run(
                    [
                        sys.executable,
                        str(ROOT / "deploy/local/stack.py"),
                        "restart",
                        "mysql-source",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
            )
        return len({e.key["id"] for e in events if e.key}) >= N

    events = drain(src.stream(start), restart_once, timeout=90)
    assert restarted and restarted[0].returncode == 0, restarted[0].stderr if restarted else ""
    assert done.wait(30)
    ids = [e.key["id"] for e in events if e.key]
    assert sorted(ids) == list(range(1, N + 1)), "a row was lost or repeated"
    assert len({e.position for e in events}) == len(events)
    assert src.reader.metrics.reconnects >= 1
