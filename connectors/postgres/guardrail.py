"""The retained-WAL guardrail and lag inspection of a PostgreSQL source.

A slot makes the server keep every WAL segment from its ``restart_lsn`` on;
a source that falls behind (Kafka away, a stuck process) can fill the
server's disk. With ``wal_budget`` set, the streaming source measures the
slot's retained WAL every ``check_interval_s`` and acts as
:mod:`cdc.runtime.guardrail` says (WARNING at the fraction; at the limit an
ERROR every minute, or a stop with exit status 78). The gauges
``retained_wal_bytes`` and ``wal_budget_bytes`` are exported as
``cdc_source_retained_wal_bytes`` / ``cdc_source_wal_budget_bytes``.

For a hard limit enforced by the server itself, set PostgreSQL's
``max_slot_wal_keep_size``: the server then invalidates the slot instead of
filling its disk (the source must snapshot again afterwards).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

import psycopg

from cdc.errors import UnreachableError
from cdc.runtime.guardrail import BudgetWatch, watched
from connectors.postgres.source import catalog

if TYPE_CHECKING:
    from connectors.postgres.source.connector import PostgresSource

T = TypeVar("T")


def _fix(source: PostgresSource) -> str:
    return (
        "Find why the source is behind (is it running, is Kafka up?); if it cannot catch "
        f"up, `cdc reset-source FILE --name {source.name} --release` drops slot "
        f"{source.config.slot_name} (the WAL is freed; the next start snapshots again); "
        "or raise wal_budget.max_bytes"
    )


def guard(source: PostgresSource, items: Iterator[T]) -> Iterator[T]:
    """The stream, with the slot's retained WAL checked against ``wal_budget`` (if set)."""
    budget = source.config.wal_budget
    if budget is None:
        return items
    watch = BudgetWatch(source.name, f"WAL retained by slot {source.config.slot_name}",
                        budget, _fix(source))

    def check() -> None:
        watch.observe(source.retained_wal_bytes())

    return watched(items, check, budget.check_interval_s)


def gauges(source: PostgresSource, retained: int | None) -> dict[str, float | None]:
    """The guardrail's gauges for ``metrics()`` (names the dashboard expects)."""
    budget = source.config.wal_budget
    return {
        "retained_wal_bytes": retained,
        "wal_budget_bytes": None if budget is None else budget.max_bytes,
    }


def inspect_lag(source: PostgresSource) -> Mapping[str, float | None]:
    """``cdc status``: the slot's retained WAL, asked on a connection of its own."""
    c = source.config.connection
    where = f"{c.host}:{c.port}/{c.database}" if c.dsn is None else "the configured dsn"
    try:
        with source.connect_sql() as conn:
            retained = catalog.retained_wal_bytes(conn, source.config.slot_name)
    except psycopg.Error as e:
        raise UnreachableError(f"cannot reach PostgreSQL at {where}: {e}") from None
    return {"lag_bytes": retained, **gauges(source, retained)}
