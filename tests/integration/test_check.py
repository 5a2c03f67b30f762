"""`cdc check FILE` against the live stack, and sources refusing to start on its problems.

Each test starts from a deployment's state: tables that exist on both
sources, replicas that already hold a checkpoint table (or not), and one
thing wrong at a time: a wrong port, a filter matching no table, a wrong
password, two sources' tables of one name in one replica, a source whose
server_id is the server's own.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml
from click.testing import CliRunner

from cdc.cli import main
from tests.fixtures.services import connection_settings, mysql_kwargs, mysql_settings

pytestmark = pytest.mark.integration

PASSWORD = "Chk-pw-7f3a9c"  # the real one; the wrong one below must never be printed either
WRONG = "Wr0ng-pw-51be2d"


@pytest.fixture
def tables(pg_source_dsn: str, mysql_source_url: str, unique_name: str) -> Iterator[str]:
    """A table named ``<unique>_t`` in both sources; a MySQL user with a password."""
    table = f"{unique_name}_t"
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE public."{table}" (id int PRIMARY KEY, v text)')
    my = pymysql.connect(**mysql_kwargs(mysql_source_url))  # type: ignore[arg-type]
    user = f"{unique_name}_u"[:32]
    try:
        with my.cursor() as cur:
            cur.execute(f"CREATE TABLE `{table}` (id int PRIMARY KEY, v text)")
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR "
                        f"ON *.* TO '{user}'@'%'")
        yield table
    finally:
        with my.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{table}`")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        my.close()
        with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS public."{table}"')
            conn.execute(f'DROP PUBLICATION IF EXISTS "{unique_name}_pub"')


def _config(unique_name: str, table: str, kafka: str, registry: str, pg_source: str,
            pg_replica: str, mysql_source: str, mysql_replica: str) -> dict[str, Any]:
    my = mysql_settings(mysql_source)
    rep = mysql_settings(mysql_replica)
    return {
        "kafka": {"bootstrap_servers": kafka, "offsets_topic": f"{unique_name}.offsets"},
        "schema_registry": {"url": registry},
        "metrics": {"enabled": False},
        "sources": [
            {"name": f"{unique_name}_pg", "kind": "postgres", "connection": {"dsn": pg_source},
             "tables": {"include": [f"public.{table}"]},
             "slot_name": f"{unique_name}_slot", "publication_name": f"{unique_name}_pub"},
            {"name": f"{unique_name}_my", "kind": "mysql",
             "connection": {"host": my["host"], "port": my["port"],
                            "user": f"{unique_name}_u"[:32], "password": PASSWORD},
             "tables": {"include": [f"{my['database']}.{table}"]},
             "server_id": random.randint(10_000, 60_000)},
        ],
        "sinks": [
            {"name": f"{unique_name}_rpg", "kind": "postgres",
             "topics": [f"{unique_name}_pg.*"], "target": {"dsn": pg_replica}},
            {"name": f"{unique_name}_rmy", "kind": "mysql", "topics": [f"{unique_name}_my.*"],
             "target": {"host": rep["host"], "port": rep["port"], "user": rep["user"],
                        "database": rep["database"]}},
        ],
    }


@pytest.fixture
def config(tables: str, unique_name: str, kafka_bootstrap: str, schema_registry_url: str,
           pg_source_dsn: str, pg_replica_dsn: str, mysql_source_url: str,
           mysql_replica_url: str) -> dict[str, Any]:
    return _config(unique_name, tables, kafka_bootstrap, schema_registry_url, pg_source_dsn,
                   pg_replica_dsn, mysql_source_url, mysql_replica_url)


def _check(tmp_path: Path, config: dict[str, Any]) -> tuple[int, str]:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert PASSWORD not in result.output and WRONG not in result.output
    return result.exit_code, result.output


def _problem_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith("error:")]


def test_a_valid_deployment_passes(tmp_path: Path, config: dict[str, Any]) -> None:
    code, out = _check(tmp_path, config)
    assert code == 0, out
    assert "ready" in out


def test_a_wrong_port_is_named_with_its_key(tmp_path: Path, config: dict[str, Any]) -> None:
    config["sources"][0]["connection"] = {"host": "127.0.0.1", "port": 1,
                                          "database": "cdc_source", "user": "postgres"}
    config["sinks"][1]["target"]["port"] = 1
    code, out = _check(tmp_path, config)
    assert code == 2, out
    lines = _problem_lines(out)
    assert any(line.startswith("error: sources[0].connection: cannot connect to PostgreSQL")
               for line in lines), out
    assert any(line.startswith("error: sinks[1].target: cannot connect to the replica")
               for line in lines), out
    assert len(lines) == 2, out  # nothing else is wrong


def test_a_filter_matching_no_table_is_a_problem(tmp_path: Path, config: dict[str, Any]) -> None:
    config["sources"][0]["tables"] = {"include": ["public.no_such_table_*"]}
    config["sources"][1]["tables"] = {"include": ["cdc_source.no_such_table_*"]}
    code, out = _check(tmp_path, config)
    assert code == 2, out
    lines = _problem_lines(out)
    for i in (0, 1):
        assert any(line.startswith(f"error: sources[{i}].tables.include: no table matches")
                   for line in lines), out


def test_a_wrong_password_is_named_and_never_printed(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    config["sources"][1]["connection"]["password"] = WRONG
    code, out = _check(tmp_path, config)  # asserts neither password is printed
    assert code == 2, out
    lines = _problem_lines(out)
    assert len(lines) == 1, out
    assert lines[0].startswith("error: sources[1].connection: cannot connect to the MySQL source")
    assert "Access denied" in lines[0]


def test_two_sources_tables_of_one_name_in_one_replica(
    tmp_path: Path, config: dict[str, Any], unique_name: str, tables: str
) -> None:
    """Wildcards hide the collision from `cdc config check`; the live tables show it."""
    config["sinks"][0]["topics"] = [f"{unique_name}_pg.*", f"{unique_name}_my.*"]
    code, out = _check(tmp_path, config)
    assert code == 2, out
    lines = _problem_lines(out)
    assert len(lines) == 1, out
    assert lines[0].startswith("error: sinks[0].topics: topics ")
    assert f"{unique_name}_pg.public.{tables}" in lines[0]
    assert f"{unique_name}_my.cdc_source.{tables}" in lines[0]
    assert f"replica table public.{tables}" in lines[0]
    # A name_map entry resolves it.
    config["sinks"][0]["tables"] = {
        "name_map": {f"{unique_name}_my.cdc_source.{tables}": f"{tables}_from_mysql"}}
    code, out = _check(tmp_path, config)
    assert code == 0, out


def test_a_source_refuses_to_start_on_a_fatal_check(
    tmp_path: Path, config: dict[str, Any], unique_name: str
) -> None:
    """`cdc source` runs the connector's checks first and stops with their messages."""
    config["sources"][1]["server_id"] = 1  # the stack's mysql-source server id
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out = _check(tmp_path, config)
    assert code == 2 and "sources[1].server_id: server_id 1 is the source server's own" in out
    result = CliRunner().invoke(main, ["source", str(path), "--name", f"{unique_name}_my"])
    assert result.exit_code == 1, result.output
    assert "server_id: server_id 1 is the source server's own server_id" in result.output
    assert PASSWORD not in result.output


def test_unreachable_kafka_and_registry_are_named(tmp_path: Path, config: dict[str, Any]) -> None:
    config["kafka"]["bootstrap_servers"] = "127.0.0.1:1"
    config["schema_registry"] = {"url": "http://127.0.0.1:1/apis/ccompat/v7", "timeout_s": 1}
    code, out = _check(tmp_path, config)
    assert code == 2, out
    lines = _problem_lines(out)
    assert any(line.startswith("error: kafka.bootstrap_servers: cannot reach Kafka at "
                               "127.0.0.1:1") for line in lines), out
    assert any(line.startswith("error: schema_registry.url: the schema registry does not "
                               "answer") for line in lines), out
    assert len(lines) == 2, out


@pytest.fixture
def limited_replica_user(mysql_replica_url: str, unique_name: str) -> Iterator[str]:
    """A replica user who may write rows but not create tables."""
    user = f"{unique_name}_w"[:32]
    database = mysql_settings(mysql_replica_url)["database"]
    conn = pymysql.connect(**mysql_kwargs(mysql_replica_url))  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{database}`.* TO '{user}'@'%'")
        yield user
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        conn.close()


def test_a_replica_that_refuses_create_table(
    tmp_path: Path, config: dict[str, Any], limited_replica_user: str
) -> None:
    code, out = _check(tmp_path, config)  # as root: the checkpoint table exists afterwards
    assert code == 0, out
    config["sinks"][1]["target"].update(user=limited_replica_user, password=PASSWORD)
    code, out = _check(tmp_path, config)
    assert code == 2, out
    lines = _problem_lines(out)
    assert len(lines) == 1, out
    assert lines[0].startswith(f"error: sinks[1].target: sink {config['sinks'][1]['name']} "
                               "cannot create tables in the replica (tables.auto_create is true)")
    config["sinks"][1]["tables"] = {"auto_create": False}  # tables made beforehand: fine
    code, out = _check(tmp_path, config)
    assert code == 0, out


def test_a_source_with_a_wrong_password_stops_at_start_without_printing_it(
    tmp_path: Path, config: dict[str, Any], unique_name: str
) -> None:
    config["sources"][1]["connection"]["password"] = WRONG
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["source", str(path), "--name", f"{unique_name}_my"])
    assert result.exit_code == 1, result.output
    assert "connection: cannot connect to the MySQL source" in result.output
    assert "Access denied" in result.output
    assert WRONG not in result.output and PASSWORD not in result.output


def test_kafka_is_checked_with_the_configured_security(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    """The local broker speaks PLAINTEXT only: with SASL configured it must not pass."""
    config["kafka"]["security"] = {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                                   "username": "cdc", "password": WRONG}
    code, out = _check(tmp_path, config)  # asserts the password is not printed
    assert code == 2, out
    lines = _problem_lines(out)
    assert len(lines) == 1, out
    assert lines[0].startswith("error: kafka.bootstrap_servers: cannot reach Kafka at ")
    assert "kafka.security" in lines[0]


def test_a_sink_origin_needs_replication_origin_grants(
    tmp_path: Path, config: dict[str, Any], pg_replica_dsn: str, unique_name: str
) -> None:
    """A PostgreSQL replica user that may write tables but not use replication origins:
    `origin` on its sink is a problem at sinks[0].origin naming the GRANT; granted, it passes.
    The MariaDB sink with an origin needs nothing more (skip_replication is unprivileged)."""
    user = f"{unique_name}_o"[:63]
    with psycopg.connect(pg_replica_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{user}" LOGIN PASSWORD \'{PASSWORD}\'')
        conn.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{user}"')
        conn.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{user}"')  # cdc_offsets
    try:
        config["sinks"][0]["target"] = {**connection_settings(pg_replica_dsn, 5432), "user": user,
                                        "password": PASSWORD}
        config["sinks"][0]["origin"] = "node_x"
        config["sinks"][1]["origin"] = "node_y"
        code, out = _check(tmp_path, config)
        assert code == 2, out
        lines = _problem_lines(out)
        assert len(lines) == 1, out
        assert lines[0].startswith("error: sinks[0].origin: the replica user"), out
        assert "GRANT EXECUTE ON FUNCTION pg_replication_origin_oid(text)" in out
        with psycopg.connect(pg_replica_dsn, autocommit=True) as conn:
            conn.execute("GRANT EXECUTE ON FUNCTION pg_replication_origin_oid(text), "
                         "pg_replication_origin_create(text), "
                         f'pg_replication_origin_session_setup(text) TO "{user}"')
        code, out = _check(tmp_path, config)
        assert code == 0, out
    finally:
        with psycopg.connect(pg_replica_dsn, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{user}"')
            conn.execute(f'DROP ROLE "{user}"')
