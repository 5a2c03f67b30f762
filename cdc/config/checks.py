"""Checks that span several entries of a configuration, run after validation.

Per-field and per-entry rules live on the models; what needs the whole file
(unique names, one reader per slot or server id, sinks that subscribe to
nothing a source produces) lives here, reported with the same key paths.
Connector-specific uniqueness comes from ``SourceConfigBase.unique_keys`` so
this module never names a database.
"""

from __future__ import annotations

from collections.abc import Hashable

from cdc.config.models import CdcConfig, SinkConfigBase
from cdc.config.problems import ConfigProblem, Loc, format_loc


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
    internal = {config.kafka.offsets_topic, config.kafka.schema_history_topic}
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
