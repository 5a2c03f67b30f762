"""Which replica table a topic's changes go to (pure; shared by sinks, config checks, verify).

A topic's table is ``tables.name_map[topic]`` (``table`` or ``schema.table``)
when mapped, else the *source table's name alone* in the sink's default
schema: the source's schema or database is dropped, unless the sink keeps it
(``tables.same_namespace``, set by master-master: the table is then
``<ns>.<table>`` whatever the prefix, and topics of several nodes write it on
purpose). Otherwise two topics of one replica
whose tables share a name (``pg_main.public.orders`` and
``mysql_main.shop.orders``) would therefore write one table; config checks,
``cdc check`` and the sink itself refuse that (:func:`collisions`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cdc.spi import TableName


def replica_table(
    name_map: Mapping[str, str] | None,
    default_schema: str | None,
    topic: str,
    table: str,
    namespace: str | None = None,
) -> TableName:
    """The replica table of ``topic``, whose source table is named ``table``.

    ``namespace``: the source table's schema or database, when the sink keeps it.
    """
    mapped = (name_map or {}).get(topic)
    if mapped is None:
        return TableName(namespace or default_schema, table)
    schema, dot, name = mapped.rpartition(".")
    return TableName(schema if dot else default_schema, name)


def collisions(targets: Iterable[tuple[str, TableName]]) -> list[tuple[str, str, TableName]]:
    """``(first topic, other topic, table)`` for every topic whose table an earlier one has."""
    owner: dict[TableName, str] = {}
    out: list[tuple[str, str, TableName]] = []
    for topic, name in targets:
        first = owner.setdefault(name, topic)
        if first != topic:
            out.append((first, topic, name))
    return out


def topic_namespace(topic: str, prefixes: Iterable[str]) -> str | None:
    """The ``<ns>`` of a data topic ``<prefix>.<ns>.<table>`` (longest known prefix first)."""
    for p in sorted(prefixes, key=len, reverse=True):
        if topic.startswith(p + "."):
            ns, dot, _ = topic[len(p) + 1:].partition(".")
            return ns if dot else None
    parts = topic.split(".")
    return parts[-2] if len(parts) >= 3 else None
