"""MySqlSource.check() on a scripted server: each unmet prerequisite is one Problem."""

from __future__ import annotations

import re
from typing import Any

import pymysql.err
import pytest

from cdc.errors import PositionError
from connectors.mysql.position import BinlogFile, MySqlPosition
from connectors.mysql.source import MySqlSource
from connectors.mysql.source.snapshot import _TABLES_SQL
from connectors.postgres.position import Lsn, PgPosition

GOOD = {
    "LOG_BIN": "ON",
    "BINLOG_FORMAT": "ROW",
    "BINLOG_ROW_IMAGE": "FULL",
    "BINLOG_ROW_METADATA": "FULL",
    "GTID_MODE": None,
    "BINLOG_ROW_VALUE_OPTIONS": None,
}


class Cursor:
    """A scripted source server: answers exactly the SQL ``MySqlSource._check`` sends,
    and fails the test naming any other statement (renamed SQL must not pass silently)."""

    def __init__(
        self,
        variables: dict[str, str | None],
        grants: list[str],
        version: str = "10.11.19-MariaDB",
        unreadable: frozenset[str] = frozenset(),
    ) -> None:
        self.variables, self.grants, self.version = variables, grants, version
        self.unreadable = unreadable  # "db.table" the user cannot SELECT from
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, q: str, args: Any = None) -> None:
        if q == "SELECT VERSION(), @@server_id":
            self._rows = [(self.version, 1)]
        elif q.startswith(VARIABLES_SQL):
            asked = set(args)
            self._rows = [(k, v) for k, v in self.variables.items() if v is not None and k in asked]
        elif q == "SHOW SLAVE HOSTS":
            self._rows = [(4242, "h", 3306, 1)]
        elif q == "SHOW GRANTS FOR CURRENT_USER()":
            self._rows = [(g,) for g in self.grants]
        elif q == _TABLES_SQL:
            self._rows = [("app", "t", 10), ("app", "u", 0), ("other", "x", 5)]
        elif (m := re.fullmatch(r"SELECT 1 FROM `(\w+)`\.`(\w+)` LIMIT 0", q)) is not None:
            if f"{m[1]}.{m[2]}" in self.unreadable:
                raise pymysql.err.OperationalError(1142, f"SELECT command denied for '{m[2]}'")
            self._rows = []
        else:
            raise AssertionError(f"the scripted server has no answer for {q!r} (args {args!r})")

    def fetchone(self) -> tuple[Any, ...]:
        return self._rows[0]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


VARIABLES_SQL = (
    "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES "
    "WHERE VARIABLE_NAME IN ("
)


def source(**kw: Any) -> MySqlSource:
    return MySqlSource({"host": "x"}, name="s", server_id=kw.pop("server_id", 99), **kw)


ALL = ["GRANT ALL PRIVILEGES ON *.* TO `root`@`%`"]


def test_all_good() -> None:
    assert source()._check(Cursor(GOOD, ALL)) == []


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("LOG_BIN", "OFF", "log_bin"),
        ("BINLOG_FORMAT", "MIXED", "binlog_format=ROW"),
        ("BINLOG_ROW_IMAGE", "MINIMAL", "binlog_row_image=FULL"),
        ("BINLOG_ROW_METADATA", "MINIMAL", "binlog_row_metadata=FULL"),
        ("BINLOG_ROW_METADATA", None, "MariaDB >= 10.5"),
        ("BINLOG_ROW_VALUE_OPTIONS", "PARTIAL_JSON", "binlog_row_value_options"),
    ],
)
def test_binlog_settings(variable: str, value: str | None, needle: str) -> None:
    (problem,) = source()._check(Cursor({**GOOD, variable: value}, ALL))
    assert needle in str(problem) and problem.fatal


def test_server_ids() -> None:
    problems = source(server_id=1)._check(Cursor(GOOD, ALL))
    assert ["own server_id" in p.what for p in problems] == [True]
    problems = source(server_id=4242)._check(Cursor(GOOD, ALL))
    assert ["replica with server_id 4242" in p.what for p in problems] == [True]


def test_privileges() -> None:
    (p,) = source()._check(Cursor(GOOD, ["GRANT SELECT ON *.* TO `u`@`%`"]))
    assert "REPLICATION SLAVE" in p.what and "BINLOG MONITOR" in p.what
    ok = ["GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `u`@`%`"]
    assert source()._check(Cursor(GOOD, ok)) == []
    mysql = {**GOOD, "GTID_MODE": "ON"}
    (p,) = source()._check(
        Cursor(mysql, ["GRANT SELECT, REPLICATION SLAVE ON *.* TO `u`@`%`"], version="8.0.36")
    )
    # MySQL: REPLICATION CLIENT, and RELOAD for the global-lock snapshot
    assert "REPLICATION CLIENT" in p.what and "RELOAD" in p.what


def test_gtid_mode() -> None:
    (p,) = source(gtid_mode="on")._check(
        Cursor({**GOOD, "GTID_MODE": "OFF"}, ALL, version="8.0.36")
    )
    assert "gtid_mode" in p.what


def test_tables() -> None:
    # Tables without a primary key are captured as any other: nothing checks their keys.
    (p,) = source(include=["app.*"])._check(Cursor(GOOD, ALL, unreadable=frozenset({"app.u"})))
    assert "cannot read app.u" in p.what and p.key == "tables"
    (p,) = source(include=["nothing.*"])._check(Cursor(GOOD, ALL))
    assert "no table matches" in p.what and not p.fatal


def test_unknown_sql_fails_the_test() -> None:
    with pytest.raises(AssertionError, match="no answer for 'SELECT @@version_comment'"):
        Cursor(GOOD, ALL).execute("SELECT @@version_comment")


def test_acknowledge_records_and_rejects_foreign_positions() -> None:
    src = source()
    pos = MySqlPosition(BinlogFile("mysql-bin.000001"), 4)
    src.acknowledge(pos)
    assert src.acknowledged == pos
    with pytest.raises(PositionError):
        src.acknowledge(PgPosition(Lsn(1)))
    with pytest.raises(PositionError):
        src.stream(PgPosition(Lsn(1)))


def test_from_config() -> None:
    from connectors.mysql.config import MySqlSourceConfig

    cfg = MySqlSourceConfig.model_validate(
        {
            "name": "my_main",
            "kind": "mysql",
            "server_id": 5401,
            "zero_date": "min",
            "connection": {
                "host": "db",
                "port": 3307,
                "user": "cdc",
                "password": "pw",
                "database": "app",
            },
            "tables": {"include": ["app.*"], "exclude": ["app.audit_*"]},
            "snapshot": {"chunk_size": 500},
            "heartbeat_interval_s": 10,
        }
    )
    src = MySqlSource.from_config(cfg)
    assert (src.name, src.server_id, src.zero_date, src.chunk_size) == ("my_main", 5401, "min", 500)
    assert src.connect_kwargs["host"] == "db" and src.connect_kwargs["password"] == "pw"
    assert src.heartbeat_s == 1.0
    assert src.captured("app", "orders") and not src.captured("app", "audit_log")
