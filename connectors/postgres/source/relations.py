"""The relation cache: pgoutput Relation messages -> the table shapes events are built with.

pgoutput describes each relation once per session (and again after DDL)
with a Relation message; row messages then carry only the relation id. The
stream reader (:mod:`.replication`) hands every Relation message to
:meth:`RelationCache.describe`, which reads the catalog facts the message
lacks (primary key, user types) and builds the :class:`~.catalog.TableShape`
that :mod:`.changes` converts rows with - or ``None`` for a table the
source does not capture. :meth:`RelationCache.relaxed_row` handles a NULL
the catalog's NOT NULL says cannot be there (a column made NOT NULL after
the row was written).

It holds no connection of its own: ``sql`` opens (or reuses) the reader's
catalog connection. Catalog errors come out classified
(:func:`.wire.classify`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from cdc.config.sources import TableFilter
from connectors.postgres.source import catalog
from connectors.postgres.source.catalog import NullInNotNull, TableShape
from connectors.postgres.source.messages import Relation
from connectors.postgres.source.wire import classify
from connectors.postgres.types import load_type_catalog

log = logging.getLogger(__name__)


class RelationCache:
    """Relation id -> table shape (``None``: not captured), across the reader's sessions."""

    def __init__(
        self,
        *,
        source_name: str,
        database: str,
        tables: TableFilter,
        sql: Callable[[], psycopg.Connection[Any]],
    ) -> None:
        self.source_name = source_name
        self.database = database
        self.tables = tables
        self._sql = sql
        self.shapes: dict[int, TableShape | None] = {}  # relation id -> shape (None: not captured)
        self._relations: dict[int, Relation] = {}

    def describe(self, rel: Relation) -> None:
        """Cache the table shape a Relation message describes (a new one after DDL).

        A Relation message repeated unchanged (each session resends them)
        keeps the existing shape object, so downstream caches keyed by it hold.
        """
        old = self._relations.get(rel.relation_id)
        if old is not None and old == rel and rel.relation_id in self.shapes:
            return
        self._relations[rel.relation_id] = rel
        qualified = f"{rel.namespace}.{rel.name}"
        if not self.tables.matches(qualified):
            self.shapes[rel.relation_id] = None
            return
        conn = self._sql()
        try:
            facts = catalog.table_facts(conn, rel.relation_id)
            types = load_type_catalog(conn, [c.type_oid for c in rel.columns])
        except psycopg.Error as e:
            raise classify(e, f"cannot read the catalog for {qualified}") from e
        flagged = rel.key_columns
        names = [c.name for c in rel.columns]
        if rel.replica_identity in ("d", "i"):
            key: tuple[str, ...] = flagged
            if facts is not None:
                wanted = catalog.stream_key(facts.replica_identity, facts.primary_key,
                                            facts.identity_key)
                if set(wanted) == set(flagged):
                    key = wanted  # same columns, in the index's order (as the snapshot has them)
        else:
            key = tuple(facts.primary_key) if facts is not None else ()
            if not set(key) <= set(names):
                key = ()
        shape = catalog.build_shape(
            self.database, rel.namespace, rel.name,
            [(c.name, c.type_oid, c.type_modifier) for c in rel.columns],
            facts, key, types, relation=rel,
        )
        if old is not None:
            log.info("%s: schema of %s changed (relation %d): %s", self.source_name, qualified,
                     rel.relation_id, ", ".join(names))
        self.shapes[rel.relation_id] = shape

    def relaxed_row(
        self, relation_id: int, values: Sequence[Any]
    ) -> tuple[TableShape, dict[str, Any]]:
        """Build a row whose NULL breaks a NOT NULL the catalog shows today (see relaxed())."""
        while True:
            shape = self.shapes[relation_id]
            assert shape is not None
            try:
                return shape, shape.row(values)
            except NullInNotNull as e:
                self.shapes[relation_id] = shape.relaxed(e.index)

