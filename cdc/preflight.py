"""``cdc check FILE``: a valid configuration checked against the live servers.

``cdc config check`` reads only the file; this contacts every server the file
names and reports what would stop the pipeline, each problem with its config
key path and a hint (the same style):

* every source: its connector's ``check()`` (:class:`cdc.spi.SourceConnector`:
  connection, grants, server settings, slot and publication, the tables the
  filter matches);
* every sink: its replica is reachable, tables can be created there (when
  ``tables.auto_create``) and the checkpoint table can be written; a sink with
  ``origin`` also gets its session's ``origin_problems`` (:class:`cdc.spi.ChecksOrigin`);
* Kafka (with the configured security settings) and the schema registry;
* replica-table collisions: two topics of one replica (one sink, or sinks on
  one database) whose tables share a name, from the tables the sources
  capture now (:mod:`cdc.sink.naming`).

The engine knows no database here: the checks live in each connector and
dialect. Messages never contain a password: connectors word them without
one, and nothing here prints a DSN or a client setting.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from cdc.config import CdcConfig
from cdc.config.checks import replica_identity, sink_default_schema
from cdc.config.problems import ConfigProblem, Loc
from cdc.events import TableId
from cdc.registry import get_connector
from cdc.sink.checkpoint import CHECKPOINT_TABLE
from cdc.sink.naming import collisions, replica_table
from cdc.spi import ChecksOrigin, ListsTables, Problem, TableName

log = logging.getLogger(__name__)

KAFKA_TIMEOUT_S = 10.0


def _key_loc(key: str) -> Loc:
    return tuple(part for part in key.split(".") if part)


def source_problems(config: CdcConfig) -> tuple[list[ConfigProblem], dict[str, list[TableId]]]:
    """Every source's connector check, and the tables each captures now (when known)."""
    out: list[ConfigProblem] = []
    tables: dict[str, list[TableId]] = {}
    for i, cfg in enumerate(config.sources):
        loc: Loc = ("sources", i)
        try:
            source = get_connector(cfg.kind).create_source(cfg, name=cfg.name)
        except Exception as e:
            out.append(ConfigProblem(loc, f"cannot create source {cfg.name}: {e}",
                                     "see the error"))
            continue
        try:
            try:
                problems = source.check()
            except Exception as e:  # a check that itself failed is one problem, not a crash
                problems = [Problem(f"checking source {cfg.name} failed: {_one_line(e)}",
                                    "see the error; the user may lack a right the check needs",
                                    key="connection")]
            out += [_problem(loc, p) for p in problems]
            if isinstance(source, ListsTables) and not any(
                p.key == "connection" for p in problems
            ):
                try:
                    tables[cfg.name] = source.captured_tables()
                except Exception as e:  # reported by check() already, in its own words
                    log.debug("%s: captured tables unknown: %s", cfg.name, e)
        finally:
            try:
                source.close()
            except Exception as e:
                log.debug("%s: close failed: %s", cfg.name, e)
    return out, tables


def _problem(loc: Loc, p: Problem) -> ConfigProblem:
    return ConfigProblem((*loc, *_key_loc(p.key)), " ".join(p.what.split()), p.fix,
                         warning=not p.fatal)


def sink_problems(config: CdcConfig) -> list[ConfigProblem]:
    """Each replica: reachable, can create tables, can write the checkpoint table."""
    out: list[ConfigProblem] = []
    for i, sink in enumerate(config.sinks):
        loc: Loc = ("sinks", i, "target")
        try:
            dialect = get_connector(sink.kind).create_dialect()
            session = dialect.connect(sink)
        except Exception as e:
            out.append(ConfigProblem(
                loc, f"cannot connect to the replica of sink {sink.name}: {_one_line(e)}",
                "check host, port, database, user and password, and that the server runs"))
            continue
        try:
            out += _replica_writable(loc, sink, session)
            if sink.origin is not None and isinstance(session, ChecksOrigin):
                out += [ConfigProblem(("sinks", i, "origin"), p.what, p.fix, warning=not p.fatal)
                        for p in session.origin_problems(sink.origin)]
        finally:
            try:
                session.close()
            except Exception as e:
                log.debug("%s: close failed: %s", sink.name, e)
    return out


def _replica_writable(loc: Loc, sink: Any, session: Any) -> list[ConfigProblem]:
    dialect = session.dialect
    schema = dialect.default_schema(sink)
    out: list[ConfigProblem] = []
    checkpoint = TableName(schema, CHECKPOINT_TABLE)
    user_hint = "grant the sink's user the right to create tables in the replica's " \
        "schema/database and to write them (or create them beforehand)"
    try:
        if session.describe(checkpoint) is None:
            session.execute_ddl(dialect.checkpoint_ddl(checkpoint))  # the sink's first step
        session.begin()
        try:
            session.execute(f"DELETE FROM {dialect.table_sql(checkpoint)} WHERE 1 = 0")
        finally:
            session.rollback()
    except Exception as e:
        out.append(ConfigProblem(
            loc, f"sink {sink.name} cannot create or write its checkpoint table {checkpoint}: "
            f"{_one_line(e)}", user_hint))
        return out
    if sink.tables.auto_create:
        scratch = TableName(schema, f"cdc_check_{secrets.token_hex(4)}")
        try:
            session.execute_ddl(dialect.create_table(scratch, [("id", "integer", False)], ["id"]))
        except Exception as e:
            out.append(ConfigProblem(
                loc, f"sink {sink.name} cannot create tables in the replica "
                f"(tables.auto_create is true): {_one_line(e)}", user_hint))
        else:
            session.execute_ddl([f"DROP TABLE {dialect.table_sql(scratch)}"])
    return out


def kafka_problems(config: CdcConfig) -> tuple[list[ConfigProblem], set[str]]:
    """Kafka reachable with the configured settings; the topics it holds."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    kafka = config.kafka
    try:
        admin = AdminClient(dict(kafka.common_client_config()))
        meta = admin.list_topics(timeout=KAFKA_TIMEOUT_S)
    except (KafkaException, ValueError) as e:
        return [ConfigProblem(
            ("kafka", "bootstrap_servers"),
            f"cannot reach Kafka at {kafka.bootstrap_servers} within {KAFKA_TIMEOUT_S:.0f}s "
            f"with the configured settings: {_one_line(e)}",
            "check bootstrap_servers, and kafka.security against the brokers' listeners")], set()
    return [], set(meta.topics)


def registry_problems(config: CdcConfig) -> list[ConfigProblem]:
    from cdc.runtime.pipeline import registry_client

    try:
        registry_client(config).subjects()
    except Exception as e:
        return [ConfigProblem(
            ("schema_registry", "url"),
            f"the schema registry does not answer at {config.schema_registry.url}: "
            f"{_one_line(e)}",
            "check the url (Apicurio: .../apis/ccompat/v7), credentials and ssl_ca_location")]
    return []


def collision_problems(config: CdcConfig, tables: dict[str, list[TableId]]) -> list[ConfigProblem]:
    """Two topics of one replica whose tables share a name, from the live table lists."""
    out: list[ConfigProblem] = []
    topics = [(s.topic_for(t), t) for s in config.sources for t in tables.get(s.name, [])]
    groups: dict[tuple[object, ...], list[tuple[int, str, TableName]]] = {}
    for i, sink in enumerate(config.sinks):
        if sink.tables.same_namespace or sink.conflicts is not None:
            continue  # master-master: every node's topic of a table writes one table
        try:
            schema = sink_default_schema(sink)
        except Exception:
            continue
        for topic, table in topics:
            if sink.subscribes(topic):
                name = replica_table(sink.tables.name_map, schema, topic, table.table)
                groups.setdefault(replica_identity(sink), []).append((i, topic, name))
    for entries in groups.values():
        sink_of = {topic: i for i, topic, _ in entries}
        for first, other, name in collisions((t, n) for _, t, n in entries):
            i, j = sink_of[first], sink_of[other]
            where = "this sink" if i == j else f"sinks[{i}] ({config.sinks[i].name})"
            out.append(ConfigProblem(
                ("sinks", j, "topics" if config.sinks[j].topic_regex is None else "topic_regex"),
                f"topics {first} ({where}) and {other} both write replica table {name}: "
                "replica tables are named after the source table alone",
                f"map one of them to another table in tables.name_map "
                f"(e.g. {other}: <prefix>_{name.name}), or narrow the subscription"))
    return out


def check_live(config: CdcConfig) -> list[ConfigProblem]:
    """Every problem of the live deployment the config describes (empty: all good)."""
    steps: list[Callable[[], list[ConfigProblem]]] = [
        lambda: kafka_problems(config)[0],
        lambda: registry_problems(config),
        lambda: sink_problems(config),
    ]
    out, tables = source_problems(config)
    for step in steps:
        out += step()
    out += collision_problems(config, tables)
    return out


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
