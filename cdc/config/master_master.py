"""The ``master_master:`` section: N writable nodes, expanded into sources and sinks.

A master-master pipeline is written once, as nodes (name, kind, connection,
optional priority) sharing a table filter and conflict settings. Before
validation the loader calls :func:`expand` which turns every node into

* a source named after the node (its topic prefix), capturing the node's
  tables with ``skip_replicated_changes`` on, so changes a cdc sink applied are
  not published again (loop prevention);
* a sink ``<node>_sink`` writing to the node's own database, subscribed to the
  topics of every *other* node, with ``origin: <node>``, the conflict settings
  plus the node's own topics as ``conflicts.own_topics`` (read to learn the
  versions of local writes, never applied; node priorities become
  ``conflicts.priority``) and ``tables.same_namespace`` (topic
  ``<node>.<ns>.<table>`` writes ``<ns>.<table>`` on every node).

The generated entries are then validated like hand-written ones, so
``cdc run``, ``cdc check``, ``cdc verify`` and ``cdc status`` need nothing
new; :func:`relocate` maps a problem found in a generated entry back to the
key of this section the user wrote. Kind-specific keys a node needs (a
replication slot name, a server id) go in its ``source:`` / ``sink:`` maps,
which are merged into the generated entries. This module names no database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from cdc.config.base import ConfigModel, Name, RedactedDict, invalid
from cdc.config.problems import ConfigProblem, Loc
from cdc.config.sources import TableFilter

SINK_SUFFIX = "_sink"
_TOPIC_PATTERN_CHARS = re.compile(r"^[A-Za-z0-9._*?-]+$")


class MasterMasterNode(ConfigModel):
    """One writable database of a master-master pipeline."""

    name: Name = Field(
        description="Node name: its source's name and topic prefix, and the origin its sink "
        "marks applied changes with. Its sink is named `<name>_sink`.",
        examples=["pg_a"],
    )
    kind: str = Field(description="Connector kind of the node's database.",
                      examples=["postgres", "mysql"])
    connection: dict[str, Any] = Field(
        repr=False,
        exclude=True,
        description="How to reach the node's database: the connection keys of its kind "
        "(`sources[].connection`); used by both its source and its sink.",
        examples=[{"host": "127.0.0.1", "port": 15432, "database": "cdc_source",
                   "user": "postgres", "password": "${PG_PASSWORD}"}],
    )
    tables: TableFilter | None = Field(
        default=None,
        description="This node's tables, if not `master_master.tables`.",
        examples=[{"include": ["mm.*"]}],
    )
    priority: int | None = Field(
        default=None,
        description="With `conflicts.resolution: priority`: the node with the higher number "
        "wins a conflict (ties by version). Unset: list order, first highest.",
        examples=[10],
    )
    source: dict[str, Any] = Field(
        default_factory=dict,
        description="More keys for this node's source (those of `sources[]` of its kind), "
        "e.g. `slot_name` or `server_id`; a `connection` here is merged into the node's.",
        examples=[{"server_id": 5411}],
    )
    sink: dict[str, Any] = Field(
        default_factory=dict,
        description="More keys for this node's sink (those of `sinks[]` of its kind), "
        "e.g. `batch` or `errors`; a `target` here is merged into the node's connection "
        "(e.g. the database where a MySQL node's sink keeps its own tables).",
        examples=[{"batch": {"max_rows": 1000}, "target": {"database": "cdc_source"}}],
    )

    @field_validator("connection")
    @classmethod
    def _redacted(cls, v: dict[str, Any]) -> dict[str, Any]:
        return RedactedDict(v)  # checked as the source's connection; printed without secrets

    @field_validator("source", "sink")
    @classmethod
    def _not_generated(cls, v: dict[str, Any]) -> dict[str, Any]:
        owned = sorted(k for k in v if k in _GENERATED)
        if owned:
            raise invalid(
                f"{', '.join(owned)} is set by master_master",
                "remove it: node name, kind, origin and topics come from the node",
            )
        return v


_GENERATED = frozenset({"name", "kind", "topics", "topic_regex", "origin", "own_topics",
                        "skip_replicated_changes"})


class MasterMasterConfig(ConfigModel):
    """Several writable databases replicating to each other (master-master).

    Expands into one source and one sink per node (docs/MASTER-MASTER.md).
    Every node must have the same tables; create them on every node before
    the first start.
    """

    nodes: tuple[MasterMasterNode, ...] = Field(
        description="The writable databases, at least two.",
        examples=[[{"name": "pg_a", "kind": "postgres", "connection": {"database": "a"}},
                   {"name": "pg_b", "kind": "postgres", "connection": {"database": "b"}}]],
    )
    tables: TableFilter = Field(
        default_factory=TableFilter,
        description="Tables replicated between the nodes (a node may override it). Keep cdc's "
        "own tables (checkpoint, row versions, conflict log) out of it.",
        examples=[{"include": ["mm.*"]}],
    )
    conflicts: dict[str, Any] = Field(
        default_factory=dict,
        description="Conflict detection and resolution, given to every node's sink as its "
        "`conflicts` key (see `sinks[].conflicts`).",
        examples=[{"resolution": "last_writer_wins"}],
    )

    @field_validator("conflicts")
    @classmethod
    def _no_own_topics(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in ("own_topics", "own_topic_regex"):
            if key in v:
                raise invalid(f"{key} is set by master_master (each node's own topics)",
                              f"remove {key}")
        return v

    @model_validator(mode="after")
    def _nodes(self) -> Self:
        if len(self.nodes) < 2:
            raise invalid(
                f"{len(self.nodes)} node(s): master-master needs at least two",
                "list two or more nodes; for one-way replication use sources: and sinks:",
            )
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise invalid(
                    f"two nodes are named {node.name}",
                    "give each node its own name: it names its source, sink and topics",
                )
            seen.add(node.name)
        return self


# --------------------------------------------------------------------------- expansion


def _includes(node: Mapping[str, Any], section: Mapping[str, Any]) -> list[str]:
    tables = node.get("tables") if isinstance(node.get("tables"), Mapping) else None
    tables = tables or section.get("tables")
    inc = tables.get("include") if isinstance(tables, Mapping) else None
    if isinstance(inc, list | tuple) and inc and all(isinstance(p, str) for p in inc):
        return list(inc)
    return ["*.*"]


def _topic_patterns(prefix: str, includes: list[str]) -> list[str]:
    """Topic patterns of a node's table patterns (``[abc]`` classes widen to ``*``)."""
    out: list[str] = []
    for p in includes:
        pattern = f"{prefix}.{p}"
        if not _TOPIC_PATTERN_CHARS.fullmatch(pattern):
            ns = p.partition(".")[0]
            pattern = f"{prefix}.{ns}.*" if _TOPIC_PATTERN_CHARS.fullmatch(ns) else f"{prefix}.*"
        if pattern not in out:
            out.append(pattern)
    return out


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


Relocate = Callable[[Loc], Loc]


def expand(
    data: Mapping[str, Any],
    kinds: Callable[[str], tuple[frozenset[str] | None, frozenset[str] | None]],
) -> tuple[dict[str, Any], Relocate, list[ConfigProblem]]:
    """``data`` with the nodes of ``master_master`` added to ``sources`` and ``sinks``.

    ``kinds(kind)`` gives the field names of a kind's (source, sink) models
    (None: the kind has none). Returns the
    expanded document, a function mapping a generated entry's error location
    back to the section, and problems found here (a kind that cannot be a
    node). A malformed section is left to validation (nothing is generated).
    """
    section = data.get("master_master")
    if not isinstance(section, Mapping):
        return dict(data), lambda loc: loc, []
    nodes = section.get("nodes")
    if not isinstance(nodes, list) or len(nodes) < 2:
        return dict(data), lambda loc: loc, []
    problems: list[ConfigProblem] = []
    valid: list[tuple[int, Mapping[str, Any]]] = []
    for j, node in enumerate(nodes):
        if not isinstance(node, Mapping) or not isinstance(node.get("name"), str):
            continue
        kind = node.get("kind")
        if not isinstance(kind, str):
            continue
        source_fields, sink_fields = kinds(kind)
        if source_fields is None or sink_fields is None:
            missing = "source" if source_fields is None else "sink (replica dialect)"
            problems.append(ConfigProblem(
                ("master_master", "nodes", j, "kind"),
                f"kind {kind} has no {missing}: every master-master node is captured and written",
                "use a kind that is both a source and a sink (cdc --version lists connectors)",
            ))
            continue
        valid.append((j, node))
    if problems or len(valid) != len(nodes):
        return dict(data), lambda loc: loc, problems

    sources = list(data.get("sources") or [])
    sinks = list(data.get("sinks") or [])
    if not isinstance(data.get("sources", []), list) or not isinstance(data.get("sinks", []), list):
        return dict(data), lambda loc: loc, []
    conflicts = _mapping(section.get("conflicts"))
    prefixes = {}
    for _, node in valid:
        extra = _mapping(node.get("source"))
        prefix = extra.get("topic_prefix", node["name"])
        prefixes[node["name"]] = prefix if isinstance(prefix, str) else node["name"]
    ranked = _priority_order([node for _, node in valid])
    source_at: dict[int, int] = {}
    sink_at: dict[int, int] = {}
    for j, node in valid:
        name = node["name"]
        src_extra = _mapping(node.get("source"))
        snk_extra = _mapping(node.get("sink"))
        tables = node.get("tables") if node.get("tables") is not None else section.get("tables")
        source: dict[str, Any] = {
            "name": name, "kind": node["kind"], "connection": node.get("connection"),
            "skip_replicated_changes": True,
        }
        if tables is not None:
            source["tables"] = tables
        source_at[len(sources)] = j
        sources.append(_merge(source, src_extra))
        topics = [t for _, other in valid if other["name"] != name
                  for t in _topic_patterns(prefixes[other["name"]], _includes(other, section))]
        sink_conflicts = dict(conflicts)
        if ranked is not None and "priority" not in sink_conflicts:
            sink_conflicts["priority"] = ranked
        sink_conflicts["own_topics"] = _topic_patterns(prefixes[name], _includes(node, section))
        sink: dict[str, Any] = {
            "name": f"{name}{SINK_SUFFIX}", "kind": node["kind"], "target": node.get("connection"),
            "topics": topics, "origin": name, "tables": {"same_namespace": True},
            "conflicts": sink_conflicts,
        }
        sink_at[len(sinks)] = j
        sinks.append(_merge(sink, snk_extra))
    out = dict(data)
    out["sources"] = sources
    out["sinks"] = sinks
    node_has_tables = {j: node.get("tables") is not None for j, node in valid}
    valid_by = dict(valid)

    def relocate(loc: Loc) -> Loc:
        if len(loc) < 2 or not isinstance(loc[1], int):
            return loc
        head, i, rest = loc[0], loc[1], loc[2:]
        if head == "sources" and i in source_at:
            j = source_at[i]
            return _node_loc(j, rest, "source", "connection", node_has_tables[j],
                             _keys(_mapping(valid_by[j].get("source")).get("connection")))
        if head == "sinks" and i in sink_at:
            j = sink_at[i]
            return _node_loc(j, rest, "sink", "target", node_has_tables[j],
                             _keys(_mapping(valid_by[j].get("sink")).get("target")))
        return loc

    return out, relocate, []


def _node_loc(j: int, rest: Loc, extra: str, conn_key: str, own_tables: bool,
              overridden: frozenset[str]) -> Loc:
    node: Loc = ("master_master", "nodes", j)
    if not rest:
        return node
    key, tail = rest[0], rest[1:]
    if key in ("name", "kind"):
        return (*node, key)
    if key == conn_key:
        if tail and tail[0] in overridden:
            return (*node, extra, conn_key, *tail)
        return (*node, "connection", *tail)
    if key == "conflicts":
        return ("master_master", "conflicts", *tail)
    if key == "tables" and extra == "source":
        return (*node, "tables", *tail) if own_tables else ("master_master", "tables", *tail)
    if key in ("topics", "origin", "skip_replicated_changes"):
        return (*node, "name")
    return (*node, extra, key, *tail)


def _keys(value: Any) -> frozenset[str]:
    return frozenset(str(k) for k in value) if isinstance(value, Mapping) else frozenset()


def _priority_order(nodes: list[Mapping[str, Any]]) -> list[str] | None:
    """Node names, highest priority first, when any node has a ``priority``."""
    if not any(isinstance(n.get("priority"), int) for n in nodes):
        return None
    indexed = list(enumerate(nodes))
    def rank(p: tuple[int, Mapping[str, Any]]) -> tuple[int, int]:
        prio = p[1].get("priority")
        return (-prio if isinstance(prio, int) else 0, p[0])

    indexed.sort(key=rank)
    return [str(n["name"]) for _, n in indexed]
