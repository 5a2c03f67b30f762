"""Real Debezium in the loop, both ways (issue #15).

Debezium 3.6 runs in a Kafka Connect standalone worker (deploy/local/connect.py,
jars from Maven Central) beside the local stack, with Apicurio's Avro converter
writing Confluent framing:

* Debezium's source -> ``cdc sink`` -> replica: the replica equals the source.
* ``cdc source`` -> Debezium's JDBC sink -> replica: the replica equals the source.

One table per database with a column of every type family of schemas/TYPES.md
that both sides carry, edge values and NULLs; rows from the initial snapshot, then
inserts, updates and deletes while streaming. The comparison reads both databases
directly (each column as the source's type's text), not through cdc.

CI (``make test``, not slow) runs both pairs, PostgreSQL and MariaDB, in one Connect
worker for the whole session. ``make connect-install`` (a prerequisite of ``make
test``) resolves the worker and every plugin they use from Maven before any test
starts, so no test waits for Maven or restarts the worker to load a plugin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.fixtures.debezium import (
    connect_worker,  # noqa: F401 - a fixture
    jdbc_sink_config,
    pg_source_config,
    wait_topics,
)
from tests.fixtures.pipelines import pipeline_config
from tests.fixtures.processes import Processes, drop_slots
from tests.fixtures.services import Endpoints, connection_settings

pytestmark = pytest.mark.integration

# Every type family both Debezium and cdc carry from PostgreSQL (TYPES.md). Not here:
# xid8 (Debezium drops the column), money (Debezium: decimal without precision),
# NaN/Infinity numerics and ±infinity dates (Debezium writes null/placeholders).
PG_COLUMNS = """
  id integer PRIMARY KEY,
  c_bool boolean, c_i2 smallint, c_i4 integer, c_i8 bigint,
  c_f4 real, c_f8 double precision, c_num numeric(12,3), c_numu numeric,
  c_text text, c_vc varchar(40), c_ch char(5), c_json json, c_jsonb jsonb, c_enum {enum},
  c_bytea bytea, c_bit bit(12), c_varbit bit varying(20), c_uuid uuid,
  c_date date, c_time time(6), c_timetz time with time zone, c_ts timestamp(6),
  c_ts3 timestamp(3), c_tstz timestamptz, c_interval interval,
  c_iarr integer[], c_tarr text[]
"""
PG_ROWS = [
    "(1, true, -32768, 2147483647, -9223372036854775808, 1.5, -2.25e300, 123456789.123,"
    " 1.23e-20, 'héllo 🙂', 'vc', 'ab', '{\"a\": 1}', '{\"b\": [1, 2]}', 'ok', '\\x00ff',"
    " B'101010101010', B'1101', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29',"
    " '23:59:59.999999', '12:00:00+05:30', '2024-01-01 10:00:00.123456',"
    " '2024-01-01 10:00:00.123', '2024-01-01 10:00:00.5+02', '1 year 2 mons 3 days 04:05:06.789',"
    " '{1,NULL,3}', '{\"a\",\"b c\"}')",
    "(2, false, 32767, -2147483648, 9223372036854775807, -0.25, 0, -999999999.999, -12345678901234567890.5,"
    " '', '', '', '[]', '{}', 'sad', '', B'000000000000', B'', '00000000-0000-0000-0000-000000000000',"
    " '0001-01-01', '00:00:00', '00:00:00-11:00', '1900-12-31 23:59:59.999999', '1970-01-01 00:00:00',"
    " '2262-04-11 23:47:16.854775+00', '-3 days -00:00:01', '{}', '{NULL}')",
    "(3" + ", NULL" * 27 + ")",
]


def _pg_type_texts(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum", (table,)).fetchall()
    return {str(n): str(t) for n, t in rows}


def _pg_snapshot(dsn: str, table: str, types: dict[str, str],
                 as_type: dict[str, str] | None = None) -> list[tuple[Any, ...]] | None:
    """Every row as the text of each column read back as the source's type.

    JSON is compared as jsonb, ``time with time zone`` at UTC (Debezium's ZonedTime
    keeps the instant, not the offset); None while the table does not exist.
    """
    exprs = []
    for col, typ in types.items():
        q = f'"{col}"'
        if as_type and col in as_type:
            exprs.append(f"{q}::text::{as_type[col]}::text")
        elif typ in ("json", "jsonb"):
            exprs.append(f"{q}::text::jsonb::text")
        elif typ == "time with time zone":
            exprs.append(f"({q}::text::timetz AT TIME ZONE 'UTC')::text")
        elif typ.startswith("bit varying"):
            # Debezium's Bits carries the number, not a bit varying's own length.
            exprs.append(f"ltrim({q}::text, '0')")
        elif typ.endswith("mood"):
            exprs.append(f"{q}::text")
        else:
            exprs.append(f"{q}::text::{typ}::text")
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
            return None
        return [tuple(r) for r in conn.execute(
            f"SELECT {', '.join(exprs)} FROM {table} ORDER BY id").fetchall()]


def _wait_equal(what: str, source: Callable[[], Any], replica: Callable[[], Any],
                timeout: float, context: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    want: Any = None
    got: Any = None
    while time.monotonic() < deadline:
        want, got = source(), replica()
        if got == want:
            return
        time.sleep(0.5)
    diff = ([f"source {w}\nreplica {g}" for w, g in zip(want or [], got or [], strict=False)
             if w != g][:5] if want and got else [f"replica: {got}"])
    raise AssertionError(f"{what}: replica differs from source after {timeout:.0f}s:\n"
                         + "\n".join(diff) + "\n" + context())


def _pg_changes(dsn: str, table: str) -> None:
    """Streaming changes: inserts, updates of every column (and to NULL), a delete."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {table} SELECT id + 10, c_bool, c_i2, c_i4, c_i8, c_f4, c_f8,"
                     f" c_num, c_numu, c_text, c_vc, c_ch, c_json, c_jsonb, c_enum, c_bytea,"
                     f" c_bit, c_varbit, c_uuid, c_date, c_time, c_timetz, c_ts, c_ts3, c_tstz,"
                     f" c_interval, c_iarr, c_tarr FROM {table} WHERE id <= 3")
        conn.execute(f"UPDATE {table} SET c_num = -0.001, c_text = repeat('x', 5000),"
                     f" c_tstz = '1999-12-31 23:59:59.999999-08', c_iarr = '{{7}}',"
                     f" c_enum = 'happy', c_bit = B'111111111111' WHERE id = 1")
        conn.execute(f"UPDATE {table} SET c_bool = NULL, c_json = NULL, c_date = NULL WHERE id = 2")
        conn.execute(f"UPDATE {table} SET c_i4 = 42, c_vc = 'now set' WHERE id = 3")
        conn.execute(f"DELETE FROM {table} WHERE id = 12")


@pytest.fixture
def pg_table(endpoints: Endpoints, request: pytest.FixtureRequest) -> Iterator[str]:
    table = f"dzi_{request.node.name.split('[')[0][-12:]}_{int(time.time()) % 100000}"
    enum = f"{table}_mood"
    with psycopg.connect(endpoints.pg_source_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TYPE {enum} AS ENUM ('sad', 'ok', 'happy')")
        conn.execute(f"CREATE TABLE {table} ({PG_COLUMNS.format(enum=enum)})")
        for row in PG_ROWS:
            conn.execute(f"INSERT INTO {table} VALUES {row}")
    yield table
    for dsn in (endpoints.pg_source_dsn, endpoints.pg_replica_dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"DROP TYPE IF EXISTS {enum}")


def _connect_context(worker: Any, name: str) -> Callable[[], str]:
    def ctx() -> str:
        try:
            st = worker.status(name)
        except Exception as e:  # a context line for the failure message, not a check
            st = repr(e)
        log = Path(worker.logfile).read_text(errors="replace")[-4000:]
        return f"connector {name}: {st}\n--- connect log\n{log}"
    return ctx


def test_debezium_postgres_source_into_cdc_sink(
    endpoints: Endpoints, connect_worker: Any, pg_table: str, tmp_path: Path,  # noqa: F811
) -> None:
    run = pg_table
    prefix = f"{run}_dz"
    worker = connect_worker
    worker.deploy(prefix, pg_source_config(
        endpoints.pg_source_dsn, prefix=prefix, tables=[pg_table], slot=f"{run}_slot",
        extra={"column.propagate.source.type": ".*", "interval.handling.mode": "string"}))
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": endpoints.kafka_bootstrap, "offsets_topic": f"{run}.offsets"},
        "schema_registry": {"url": endpoints.schema_registry_url},
        "sources": [],
        "sinks": [{"name": f"{run}_sink", "kind": "postgres", "topics": [f"{prefix}.public.*"],
                   "target": connection_settings(endpoints.pg_replica_dsn, 5432),
                   "batch": {"max_wait_ms": 100}}],
        "log": {"level": "WARNING"}, "metrics": {"enabled": False},
    }))
    procs = Processes(tmp_path)
    try:
        worker.wait_running(prefix, 180)
        sink = procs.start("sink", "sink", str(config), "--name", f"{run}_sink")
        with psycopg.connect(endpoints.pg_source_dsn, autocommit=True) as conn:
            types = _pg_type_texts(conn, pg_table)
        ctx = _connect_context(worker, prefix)

        def context() -> str:
            return ctx() + "\n--- cdc sink\n" + procs.log(sink)[-4000:]

        source = lambda: _pg_snapshot(endpoints.pg_source_dsn, pg_table, types)  # noqa: E731
        replica = lambda: _pg_snapshot(endpoints.pg_replica_dsn, pg_table, types)  # noqa: E731
        _wait_equal("snapshot", source, replica, 180, context)
        _pg_changes(endpoints.pg_source_dsn, pg_table)
        _wait_equal("streaming", source, replica, 120, context)
        # The replica's columns have the source's full types (column.propagate.source.type).
        with psycopg.connect(endpoints.pg_replica_dsn, autocommit=True) as conn:
            made = _pg_type_texts(conn, pg_table)
        assert made["c_num"] == "numeric(12,3)" and made["c_vc"] == "character varying(40)"
        assert made["c_ch"] == "character(5)"
        assert sink.poll() is None, procs.log(sink)[-3000:]
    finally:
        procs.close()
        worker.delete(prefix)
        drop_slots(endpoints.pg_source_dsn, [f"{run}_slot"])
        with psycopg.connect(endpoints.pg_source_dsn, autocommit=True) as conn:
            conn.execute(f"DROP PUBLICATION IF EXISTS {run}_slot_pub")


def test_cdc_postgres_source_into_debezium_jdbc_sink(
    endpoints: Endpoints, connect_worker: Any, pg_table: str, tmp_path: Path,  # noqa: F811
) -> None:
    run = pg_table
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(pipeline_config(
        run, endpoints.kafka_bootstrap, endpoints.schema_registry_url,
        pg_replica_dsn=endpoints.pg_replica_dsn, mysql_replica_url=endpoints.mysql_replica_url,
        pg_source_dsn=endpoints.pg_source_dsn, pg_tables=[pg_table], partitions=1,
        metrics=False)))
    replica = psycopg.conninfo.conninfo_to_dict(endpoints.pg_replica_dsn)
    jdbc = f"jdbc:postgresql://{replica.get('host')}:{replica.get('port')}/{replica.get('dbname')}"
    name = f"{run}_jdbc"
    procs = Processes(tmp_path)
    try:
        src = procs.start("source", "source", str(config), "--name", f"{run}_pg")
        worker = connect_worker
        topic = f"{run}_pg.public.{pg_table}"
        wait_topics(endpoints.kafka_bootstrap, [topic], 180)
        worker.deploy(name, jdbc_sink_config(
            jdbc, str(replica.get("user", "postgres")), str(replica.get("password", "")),
            topics=[topic]))
        worker.wait_running(name, 180)
        with psycopg.connect(endpoints.pg_source_dsn, autocommit=True) as conn:
            types = _pg_type_texts(conn, pg_table)
        ctx = _connect_context(worker, name)

        def context() -> str:
            return ctx() + "\n--- cdc source\n" + procs.log(src)[-4000:]

        # Debezium's JDBC sink makes an unconstrained numeric (VariableScaleDecimal,
        # Debezium's own type for it) a double precision column: what an all-Debezium
        # pipeline gives too, so that column is compared as a double.
        lossy = {"c_numu": "double precision"}
        source = lambda: _pg_snapshot(  # noqa: E731
            endpoints.pg_source_dsn, pg_table, types, lossy)
        replica_rows = lambda: _pg_snapshot(  # noqa: E731
            endpoints.pg_replica_dsn, pg_table, types, lossy)
        _wait_equal("snapshot", source, replica_rows, 180, context)
        _pg_changes(endpoints.pg_source_dsn, pg_table)
        _wait_equal("streaming", source, replica_rows, 120, context)
        worker.assert_running(name)
        assert src.poll() is None, procs.log(src)[-3000:]
    finally:
        procs.close()
        worker.delete(name)
        drop_slots(endpoints.pg_source_dsn, [f"{run}_slot"])
        with psycopg.connect(endpoints.pg_source_dsn, autocommit=True) as conn:
            conn.execute(f"DROP PUBLICATION IF EXISTS {run}_pub")


# ----------------------------------------------------------------------------- MariaDB

# Every type family both carry from MariaDB. Not here: MariaDB's UUID and INET6
# (Debezium's DDL parser refuses the table), GEOMETRY (Debezium keeps no SRID).
MY_COLUMNS = """
  id int PRIMARY KEY,
  c_ti tinyint, c_tiu tinyint unsigned, c_si smallint, c_mi mediumint, c_i int,
  c_iu int unsigned, c_bi bigint, c_biu bigint unsigned, c_f float, c_d double,
  c_dec decimal(12,3), c_bool boolean, c_vc varchar(40), c_ch char(5), c_text text,
  c_json json, c_enum enum('a','b','c'), c_set set('x','y','z'), c_vb varbinary(10),
  c_blob blob, c_bit bit(12), c_date date, c_time time(6), c_dt datetime(6),
  c_ts timestamp(6) NULL, c_year year
"""
MY_ROWS = [
    "(1, -128, 255, -32768, -8388608, -2147483648, 4294967295, -9223372036854775808,"
    " 18446744073709551615, 1.5, -2.25e300, 123456789.123, true, 'héllo 🙂', 'ab', 'text',"
    " '{\"a\": 1}', 'b', 'x,z', 0x00ff, 0x000102, b'101010101010', '2024-02-29', '-838:59:59',"
    " '2024-01-01 10:00:00.123456', '2024-01-01 10:00:00.5', 2024)",
    "(2, 127, 0, 32767, 8388607, 2147483647, 0, 9223372036854775807, 0, -0.25, 0,"
    " -999999999.999, false, '', '', '', '[]', 'a', '', '', '', b'000000000000', '1000-01-01',"
    " '838:59:59.999999', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', 1901)",
    "(3" + ", NULL" * 26 + ")",
]
MY_BITS = {"c_bit"}


def _my_rows(url: str, table: str) -> list[tuple[Any, ...]] | None:
    import decimal

    import pymysql

    from tests.fixtures.services import mysql_kwargs

    def norm(col: str, v: Any) -> Any:
        if isinstance(v, decimal.Decimal):
            return int(v) if v == v.to_integral_value() else v.normalize()
        if col in MY_BITS and isinstance(v, bytes):
            return int.from_bytes(v, "big")
        return v

    conn = pymysql.connect(**mysql_kwargs(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.tables WHERE"
                        " table_schema = database() AND table_name = %s", (table,))
            if cur.fetchone() == (0,):
                return None
            cur.execute(f"SELECT * FROM `{table}` ORDER BY id")
            cols = [d[0] for d in cur.description]
            return [tuple(norm(c, v) for c, v in zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        conn.close()


def _my_exec(url: str, *sql: str) -> None:
    import pymysql

    from tests.fixtures.services import mysql_kwargs

    conn = pymysql.connect(**mysql_kwargs(url))
    try:
        with conn.cursor() as cur:
            for s in sql:
                cur.execute(s)
    finally:
        conn.close()


def _my_changes(url: str, table: str) -> None:
    _my_exec(url,
             f"CREATE TEMPORARY TABLE t10 AS SELECT * FROM `{table}`",
             "UPDATE t10 SET id = id + 10",
             f"INSERT INTO `{table}` SELECT * FROM t10",
             f"UPDATE `{table}` SET c_dec = -0.001, c_text = repeat('x', 5000), c_set = 'x,y,z',"
             " c_ts = '1999-12-31 23:59:59.999999', c_bit = b'111111111111' WHERE id = 1",
             f"UPDATE `{table}` SET c_bool = NULL, c_json = NULL, c_date = NULL WHERE id = 2",
             f"UPDATE `{table}` SET c_i = 42, c_vc = 'now set' WHERE id = 3",
             f"DELETE FROM `{table}` WHERE id = 12")


@pytest.fixture
def my_table(endpoints: Endpoints, request: pytest.FixtureRequest) -> Iterator[str]:
    table = f"dzm_{request.node.name.split('[')[0][-12:]}_{int(time.time()) % 100000}"
    _my_exec(endpoints.mysql_source_url, f"CREATE TABLE `{table}` ({MY_COLUMNS})",
             *[f"INSERT INTO `{table}` VALUES {r}" for r in MY_ROWS])
    yield table
    for url in (endpoints.mysql_source_url, endpoints.mysql_replica_url):
        _my_exec(url, f"DROP TABLE IF EXISTS `{table}`")


def test_debezium_mariadb_source_into_cdc_sink(
    endpoints: Endpoints, connect_worker: Any, my_table: str, tmp_path: Path,  # noqa: F811
) -> None:
    from tests.fixtures.debezium import mariadb_source_config
    from tests.fixtures.pipelines import mysql_database

    run = my_table
    prefix = f"{run}_dz"
    db = mysql_database(endpoints.mysql_source_url)
    worker = connect_worker
    worker.ensure_plugins("debezium-mariadb")
    worker.deploy(prefix, mariadb_source_config(
        endpoints.mysql_source_url, prefix=prefix, tables=[my_table],
        server_id=5000 + int(time.time()) % 1000, bootstrap=endpoints.kafka_bootstrap,
        extra={"column.propagate.source.type": ".*",
               "bigint.unsigned.handling.mode": "precise"}))
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": endpoints.kafka_bootstrap, "offsets_topic": f"{run}.offsets"},
        "schema_registry": {"url": endpoints.schema_registry_url},
        "sources": [],
        "sinks": [{"name": f"{run}_sink", "kind": "mysql", "topics": [f"{prefix}.{db}.*"],
                   "target": connection_settings(endpoints.mysql_replica_url, 3306),
                   "batch": {"max_wait_ms": 100}}],
        "log": {"level": "WARNING"}, "metrics": {"enabled": False},
    }))
    procs = Processes(tmp_path)
    try:
        worker.wait_running(prefix, 180)
        sink = procs.start("sink", "sink", str(config), "--name", f"{run}_sink")
        ctx = _connect_context(worker, prefix)

        def context() -> str:
            return ctx() + "\n--- cdc sink\n" + procs.log(sink)[-4000:]

        source = lambda: _my_rows(endpoints.mysql_source_url, my_table)  # noqa: E731
        replica = lambda: _my_rows(endpoints.mysql_replica_url, my_table)  # noqa: E731
        _wait_equal("snapshot", source, replica, 180, context)
        _my_changes(endpoints.mysql_source_url, my_table)
        _wait_equal("streaming", source, replica, 120, context)
        assert sink.poll() is None, procs.log(sink)[-3000:]
    finally:
        procs.close()
        worker.delete(prefix)


def test_cdc_mariadb_source_into_debezium_jdbc_sink(
    endpoints: Endpoints, connect_worker: Any, my_table: str, tmp_path: Path,  # noqa: F811
) -> None:
    from urllib.parse import urlparse

    run = my_table
    # Debezium's JDBC sink cannot write a TIME outside 00:00..24:00 (DateTimeException:
    # Invalid value for NanoOfDay): an all-Debezium pipeline fails on them too.
    _my_exec(endpoints.mysql_source_url,
             f"UPDATE `{my_table}` SET c_time = '23:59:59.999999' WHERE id = 1",
             f"UPDATE `{my_table}` SET c_time = '00:00:00.000001' WHERE id = 2")
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(pipeline_config(
        run, endpoints.kafka_bootstrap, endpoints.schema_registry_url,
        pg_replica_dsn=endpoints.pg_replica_dsn, mysql_replica_url=endpoints.mysql_replica_url,
        mysql_source_url=endpoints.mysql_source_url, mysql_tables=[my_table], partitions=1,
        metrics=False)))
    u = urlparse(endpoints.mysql_replica_url)
    jdbc = f"jdbc:mariadb://{u.hostname}:{u.port}/{u.path.strip('/')}"
    name = f"{run}_jdbc"
    procs = Processes(tmp_path)
    try:
        src = procs.start("source", "source", str(config), "--name", f"{run}_my")
        worker = connect_worker
        from tests.fixtures.pipelines import mysql_database

        topic = f"{run}_my.{mysql_database(endpoints.mysql_source_url)}.{my_table}"
        wait_topics(endpoints.kafka_bootstrap, [topic], 180)
        worker.deploy(name, jdbc_sink_config(jdbc, u.username or "root", u.password or "",
                                             topics=[topic]))
        worker.wait_running(name, 180)
        ctx = _connect_context(worker, name)

        def context() -> str:
            return ctx() + "\n--- cdc source\n" + procs.log(src)[-4000:]

        source = lambda: _my_rows(endpoints.mysql_source_url, my_table)  # noqa: E731
        replica = lambda: _my_rows(endpoints.mysql_replica_url, my_table)  # noqa: E731
        _wait_equal("snapshot", source, replica, 180, context)
        _my_changes(endpoints.mysql_source_url, my_table)
        _wait_equal("streaming", source, replica, 120, context)
        worker.assert_running(name)
        assert src.poll() is None, procs.log(src)[-3000:]
    finally:
        procs.close()
        worker.delete(name)
