"""The `master_master:` section: its expansion into sources and sinks, and its errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from cdc.config import ConfigValidationError, load_config
from cdc.events import TableId
from cdc.sink.naming import replica_table, topic_namespace
from cdc.sink.schema import ReplicaSchemas, TableSettings
from cdc.spi import TableName
from tests.unit.config.conftest import SECRET

ROOT = Path(__file__).resolve().parents[3]

MM: dict[str, Any] = {
    "kafka": {"bootstrap_servers": "127.0.0.1:19092"},
    "schema_registry": {"url": "http://127.0.0.1:18081/apis/ccompat/v7"},
    "master_master": {
        "tables": {"include": ["mm.*"]},
        "nodes": [
            {"name": "pg_a", "kind": "postgres",
             "connection": {"host": "127.0.0.1", "port": 15432, "database": "cdc_source",
                            "user": "postgres"}},
            {"name": "my_b", "kind": "mysql",
             "connection": {"host": "127.0.0.1", "port": 13306, "database": "cdc_source",
                            "user": "root"},
             "source": {"server_id": 5411}},
        ],
    },
}


@pytest.fixture
def mm() -> dict[str, Any]:
    return copy.deepcopy(MM)


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigValidationError) as e:
        load_config(path, {})
    return [str(p) for p in e.value.problems]


def test_each_node_becomes_a_source_and_a_sink_of_the_other_nodes(mm: dict[str, Any],
                                                                   write: Any) -> None:
    mm["master_master"]["nodes"].append(
        {"name": "pg_c", "kind": "postgres", "priority": 7,
         "connection": {"host": "127.0.0.1", "port": 15433, "database": "cdc_replica",
                        "user": "postgres"},
         "tables": {"include": ["mm.*", "extra.t[12]"]},
         "sink": {"batch": {"max_rows": 100}}})
    config = load_config(write(mm), {})
    assert [s.name for s in config.sources] == ["pg_a", "my_b", "pg_c"]
    assert [s.name for s in config.sinks] == ["pg_a_sink", "my_b_sink", "pg_c_sink"]
    a, b, c = config.sinks
    assert a.topics == ("my_b.mm.*", "pg_c.mm.*", "pg_c.extra.*")
    assert b.topics == ("pg_a.mm.*", "pg_c.mm.*", "pg_c.extra.*")
    assert c.topics == ("pg_a.mm.*", "my_b.mm.*")
    assert [s.origin for s in config.sinks] == ["pg_a", "my_b", "pg_c"]
    assert all(s.tables.same_namespace for s in config.sinks)
    assert c.batch.max_rows == 100 and a.batch.max_rows != 100
    assert config.source("my_b").server_id == 5411  # type: ignore[attr-defined]
    assert config.source("pg_c").tables.include == ("mm.*", "extra.t[12]")
    assert config.source("pg_a").tables.include == ("mm.*",)
    # the node's connection is both the source's and the sink's
    assert config.sink("my_b_sink").target.port == 13306
    assert all(s.skip_replicated_changes for s in config.sources)
    assert a.conflicts is not None and c.conflicts is not None
    assert a.conflicts.own_topics == ("pg_a.mm.*",)
    assert c.conflicts.own_topics == ("pg_c.mm.*", "pg_c.extra.*")
    assert a.conflicts.priority == ("pg_c", "pg_a", "my_b")  # pg_c has priority 7, others 0
    assert a.conflicts.resolution == "last_writer_wins"


def test_one_way_sources_and_sinks_sit_beside_the_nodes(mm: dict[str, Any], write: Any) -> None:
    mm["sinks"] = [{"name": "archive", "kind": "postgres", "topics": ["pg_a.mm.*"],
                    "target": {"host": "127.0.0.1", "port": 15433, "database": "cdc_replica",
                               "user": "postgres"}}]
    config = load_config(write(mm), {})
    assert [s.name for s in config.sinks] == ["archive", "pg_a_sink", "my_b_sink"]
    assert not config.sink("archive").tables.same_namespace
    assert config.sink("archive").origin is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: m["master_master"]["nodes"].pop(),
         "master_master: 1 node(s): master-master needs at least two"),
        (lambda m: m["master_master"]["nodes"][1].update(name="pg_a"),
         "master_master: two nodes are named pg_a"),
        (lambda m: m["master_master"]["nodes"][1].update(kind="oracle"),
         "master_master.nodes[1].kind: unknown kind"),
        (lambda m: m["master_master"]["nodes"][0]["connection"].update(prot=5432),
         "master_master.nodes[0].connection.prot: unknown key — hint: did you mean 'port'?"),
        (lambda m: m["master_master"]["nodes"][0].update(source={"slot_name": "Bad"}),
         "master_master.nodes[0].source.slot_name: not a plain PostgreSQL identifier"),
        (lambda m: m["master_master"]["nodes"][0].update(sink={"topics": ["x.*"]}),
         "master_master.nodes[0].sink: topics is set by master_master"),
        (lambda m: m["master_master"].update(conflicts={"resolution": "coin"}),
         "master_master.conflicts.resolution: "),
        (lambda m: m["master_master"].update(conflicts={"own_topics": ["x"]}),
         "master_master.conflicts: own_topics is set by master_master"),
        (lambda m: m["master_master"]["nodes"][1].update(sink={"target": {"prot": 1}}),
         "master_master.nodes[1].sink.target.prot: unknown key"),
        (lambda m: m["master_master"]["nodes"][1].pop("source"),
         "master_master.nodes[1].source.server_id: missing required key"),
    ],
)
def test_errors_name_the_key_the_user_wrote(mm: dict[str, Any], write: Any, change: Any,
                                            expected: str) -> None:
    change(mm)
    problems = _problems(write(mm))
    assert any(p.startswith(expected) for p in problems), problems
    assert not any(p.startswith(("sources", "sinks")) for p in problems), problems


def test_node_name_clashing_with_a_listed_source_is_reported(mm: dict[str, Any],
                                                             write: Any) -> None:
    mm["sources"] = [{"name": "pg_a", "kind": "postgres", "slot_name": "other",
                      "publication_name": "other",
                      "connection": {"host": "h", "database": "d", "user": "u"}}]
    problems = _problems(write(mm))
    assert any(p.startswith("master_master.nodes[0].name: same name as sources[0]")
               for p in problems), problems


def test_a_node_connection_secret_never_shows(mm: dict[str, Any], write: Any) -> None:
    mm["master_master"]["nodes"][0]["connection"]["password"] = SECRET
    config = load_config(write(mm), {})
    assert SECRET not in repr(config)
    assert SECRET not in config.model_dump_json()
    assert SECRET not in repr(config.master_master)
    pg = config.source("pg_a")
    assert SECRET in pg.connection.conninfo().get_secret_value()  # type: ignore[attr-defined]
    mm["master_master"]["nodes"][0]["connection"]["port"] = "not-a-port"
    problems = _problems(write(mm))
    assert not any(SECRET in p for p in problems)


def test_env_overrides_reach_a_node(mm: dict[str, Any], write: Any) -> None:
    config = load_config(write(mm), {"CDC_MASTER_MASTER__NODES__PG_A__CONNECTION__PORT": "25432"})
    assert config.source("pg_a").connection.port == 25432
    assert config.sink("pg_a_sink").target.port == 25432


def test_same_namespace_keeps_the_source_schema_and_shares_the_table() -> None:
    assert replica_table({}, "public", "pg_a.mm.t", "t", "mm") == TableName("mm", "t")
    assert replica_table({}, "public", "pg_a.mm.t", "t") == TableName("public", "t")
    assert replica_table({"pg_a.mm.t": "x.u"}, "public", "pg_a.mm.t", "t", "mm") == \
        TableName("x", "u")
    assert topic_namespace("pg_a.mm.t", ["pg_a"]) == "mm"
    assert topic_namespace("a.b.mm.t", ["a.b", "a"]) == "mm"
    schemas = ReplicaSchemas(TableSettings(default_schema="public", same_namespace=True))
    a = schemas.target("pg_a.mm.t", TableId("cdc_source", "mm", "t"))
    b = schemas.target("my_b.mm.t", TableId("mm", None, "t"))
    assert a == b == TableName("mm", "t")
    schemas.claim("pg_a.mm.t", a)
    schemas.claim("my_b.mm.t", b)  # several nodes write one table: no error


def test_examples_load() -> None:
    for name in ("master-master-pg.yaml", "master-master-pg-mariadb.yaml"):
        config = load_config(ROOT / "examples" / name, {})
        assert config.master_master is not None
        assert len(config.sources) == len(config.sinks) == 2
