"""Which replica table a topic's changes go to (pure; shared by sinks, config checks, verify).

A topic's table is ``tables.name_map[topic]`` (``table`` or ``schema.table``)
when mapped, else the *source table's name alone* in the sink's default
schema: the source's schema or database is dropped. Two topics of one replica
whose tables share a name (``pg_main.public.orders`` and
``mysql_main.shop.orders``) would therefore write one table; config checks,
``cdc check`` and the sink itself refuse that (:func:`collisions`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cdc.spi import TableName


def replica_table(
    name_map: Mapping[str, str] | None, default_schema: str | None, topic: str, table: str
) -> TableName:
    """The replica table of ``topic``, whose source table is named ``table``."""
    mapped = (name_map or {}).get(topic)
    if mapped is None:
        return TableName(default_schema, table)
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
