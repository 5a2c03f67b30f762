"""Checks that span several entries of a configuration, run after validation.

Per-field and per-entry rules live on the models; what needs the whole file
(unique names, one reader per slot or server id, sinks that subscribe to
nothing a source produces) lives here, reported with the same key paths.
Connector-specific uniqueness comes from ``SourceConfigBase.unique_keys`` so
this module never names a database.
"""

from __future__ import annotations

from collections.abc import Hashable

from cdc.config.pipeline import CdcConfig
from cdc.config.problems import ConfigProblem, Loc, format_loc
from cdc.config.sinks import SinkConfigBase
from cdc.sink.naming import replica_table
from cdc.spi import TableName


def cross_check(config: CdcConfig) -> list[ConfigProblem]:
    """Errors and warnings (``warning=True``) about the configuration as a whole."""
    out: list[ConfigProblem] = []
    if not config.sources and not config.sinks:
        out.append(
            ConfigProblem((), "nothing to run: no sources and no sinks", "add a source or a sink")
        )
    out += _unique_names(config)
    out += _unique_source_keys(config)
    out += _unique_groups(config)
    out += _internal_topics(config)
    out += _sink_warnings(config)
    out += _replica_collisions(config)
    out += _snapshot_replicas(config)
    return out


def _unique_names(config: CdcConfig) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    first: dict[str, Loc] = {}
    entries = [(("sources", i), s.name) for i, s in enumerate(config.sources)]
    entries += [(("sinks", i), s.name) for i, s in enumerate(config.sinks)]
    for loc, name in entries:
        if name in first:
            out.append(
                ConfigProblem(
                    (*loc, "name"),
                    f"same name as {format_loc(first[name])}",
                    "names must be unique across sources and sinks: they name topics, "
                    "consumer groups, slots and metrics",
                )
            )
        else:
            first[name] = loc
    prefixes: dict[str, int] = {}
    for i, s in enumerate(config.sources):
        if s.topic_prefix in prefixes:
            out.append(
                ConfigProblem(
                    ("sources", i, "topic_prefix"),
                    f"same topic prefix as sources[{prefixes[s.topic_prefix]}]",
                    "give each source its own topic_prefix, or their tables' topics mix",
                )
            )
        else:
            prefixes[s.topic_prefix] = i
    return out


def _unique_source_keys(config: CdcConfig) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    first: dict[tuple[str, str, Hashable], int] = {}
    for i, s in enumerate(config.sources):
        for field, key in s.unique_keys().items():
            k = (s.kind, field, key)
            if k in first:
                out.append(
                    ConfigProblem(
                        ("sources", i, field),
                        f"same {field} as sources[{first[k]}]",
                        f"give each {s.kind} source its own {field}",
                    )
                )
            else:
                first[k] = i
    return out


def _unique_groups(config: CdcConfig) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    first: dict[str, int] = {}
    for i, s in enumerate(config.sinks):
        if s.consumer_group in first:
            out.append(
                ConfigProblem(
                    ("sinks", i, "consumer_group"),
                    f"same consumer group as sinks[{first[s.consumer_group]}]",
                    "two sinks in one group would each get only part of the partitions; "
                    "give each its own",
                )
            )
        else:
            first[s.consumer_group] = i
    return out


def _internal_topics(config: CdcConfig) -> list[ConfigProblem]:
    internal = {config.kafka.offsets_topic}
    internal |= {s.snapshot_replication.runs_topic for s in config.sources
                 if s.snapshot_replication is not None}
    internal |= {
        s.errors.dead_letter_topic for s in config.sinks if s.errors.policy == "dead_letter"
    }
    out: list[ConfigProblem] = []
    for i, s in enumerate(config.sinks):
        hit = sorted(t for t in internal if s.subscribes(t))
        if hit:
            out.append(
                ConfigProblem(
                    ("sinks", i, "topic_regex" if s.topic_regex is not None else "topics"),
                    f"also selects cdc's own topic(s) {', '.join(hit)}",  # names cdc owns
                    "narrow the pattern to data topics, e.g. <prefix>.<schema>.*",
                )
            )
    return out


def _snapshot_replicas(config: CdcConfig) -> list[ConfigProblem]:
    """A sink takes either snapshot-replication topics (it switches whole tables) or
    streamed ones (it applies changes), never both (cdc.snapshot.wiring)."""
    out: list[ConfigProblem] = []
    for i, sink in enumerate(config.sinks):
        if sink.topic_regex is not None:
            continue
        feeding = [s for s in config.sources
                   if any(_may_match_prefix(p, s.topic_prefix) for p in sink.topics)]
        snap = [s.name for s in feeding if s.snapshot_replication is not None]
        streamed = [s.name for s in feeding if s.snapshot_replication is None]
        if snap and streamed:
            out.append(ConfigProblem(
                ("sinks", i, "topics"),
                f"selects topics of snapshot-replication source(s) {', '.join(snap)} and of "
                f"streaming source(s) {', '.join(streamed)}",
                "use one sink entry for each: a snapshot replica switches whole tables, a "
                "streaming sink applies changes to them",
            ))
    return out


def _may_match_prefix(pattern: str, prefix: str) -> bool:
    """Whether a wildcard topic pattern can match some topic ``<prefix>.<...>``."""
    want = prefix + "."
    cut = min((i for i, c in enumerate(pattern) if c in "*?"), default=len(pattern))
    literal = pattern[:cut]
    if cut == len(pattern):
        return pattern.startswith(want)
    return want.startswith(literal) or literal.startswith(want)


def _sink_warnings(config: CdcConfig) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    prefixes = [s.topic_prefix for s in config.sources]
    for i, sink in enumerate(config.sinks):
        if prefixes:
            for j, pattern in enumerate(sink.topics):
                if not any(_may_match_prefix(pattern, p) for p in prefixes):
                    out.append(
                        ConfigProblem(
                            ("sinks", i, "topics", j),
                            "matches no topic of the sources in this file",
                            "fine if another deployment produces it; otherwise compare it "
                            "with the sources' topic_prefix",
                            warning=True,
                        )
                    )
        out += _unused_table_keys(i, sink)
    return out


def _unused_table_keys(i: int, sink: SinkConfigBase) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    for section, keys in (("name_map", sink.tables.name_map), ("columns", sink.tables.columns)):
        for topic in keys:
            if not sink.subscribes(topic):
                out.append(
                    ConfigProblem(
                        ("sinks", i, "tables", section, topic),
                        "this sink does not consume that topic, so the entry is never used",
                        "check the topic name against the sink's topics",
                        warning=True,
                    )
                )
    return out


def replica_identity(sink: SinkConfigBase) -> tuple[object, ...]:
    """What makes two sinks write the same replica database (no secret leaves this)."""
    t = sink.target
    dsn = t.dsn.get_secret_value() if t.dsn is not None else None
    return (sink.kind, dsn, t.host, t.port, t.database)


def sink_default_schema(sink: SinkConfigBase) -> str | None:
    """Where the sink's unqualified replica tables live (asked of its dialect)."""
    from cdc.registry import get_connector  # the config package loads the registry lazily

    return get_connector(sink.kind).create_dialect().default_schema(sink)


def _table_of_topic(topic: str, prefixes: list[str]) -> str:
    """The source table name in a data topic ``<prefix>.<schema or database>.<table>``."""
    for p in sorted(prefixes, key=len, reverse=True):
        if topic.startswith(p + "."):
            rest = topic[len(p) + 1:]
            return rest.partition(".")[2] or rest
    return topic.rpartition(".")[2]


def _replica_collisions(config: CdcConfig) -> list[ConfigProblem]:
    """Two topics written to one replica table (one sink, or sinks on one database).

    Only topics named literally (or in ``tables.name_map``) are known here;
    wildcard subscriptions are compared against the live tables by
    ``cdc check`` and by the sink at run time.
    """
    prefixes = [s.topic_prefix for s in config.sources]
    first: dict[tuple[tuple[object, ...], TableName], tuple[str, Loc]] = {}
    out: list[ConfigProblem] = []
    for i, sink in enumerate(config.sinks):
        if sink.tables.same_namespace or sink.conflicts is not None:
            continue  # master-master: every node's topic of a table writes one table
        named: list[tuple[str, Loc]] = [
            (t, ("sinks", i, "topics", j)) for j, t in enumerate(sink.topics)
            if not any(c in t for c in "*?")
        ]
        listed = {t for t, _ in named}
        named += [(t, ("sinks", i, "tables", "name_map", t)) for t in sink.tables.name_map
                  if t not in listed and sink.subscribes(t)]
        if not named:
            continue
        try:
            schema = sink_default_schema(sink)
        except Exception:  # an unknown kind is reported by validation already
            continue
        ident = replica_identity(sink)
        for topic, loc in named:
            table = replica_table(sink.tables.name_map, schema, topic,
                                  _table_of_topic(topic, prefixes))
            seen = first.setdefault((ident, table), (topic, loc))
            if seen[0] != topic:
                out.append(ConfigProblem(
                    loc,
                    f"topic {topic} writes replica table {table}, as does {seen[0]} "
                    f"({format_loc(seen[1])}): replica tables are named after the source "
                    "table alone",
                    f"map one of them to another table in tables.name_map "
                    f"(e.g. {topic}: <prefix>_{table.name})",
                ))
    return out
