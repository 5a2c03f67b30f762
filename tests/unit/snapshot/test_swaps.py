"""The atomic switch's statements of both replica dialects (cdc.spi.SwapsTables)."""

from __future__ import annotations

from cdc.spi import SwapsTables, TableName
from connectors.mysql.sink.dialect import MySqlDialect
from connectors.postgres.sink.dialect import PostgresDialect

LIVE = TableName("snap", "items")
SHADOW = TableName("snap", "items__cdc_next")
OLD = TableName("snap", "items__cdc_prev")
NEW = TableName("snap", "fresh")
NEW_SHADOW = TableName("snap", "fresh__cdc_next")


def test_both_dialects_swap() -> None:
    assert isinstance(PostgresDialect(), SwapsTables)
    assert isinstance(MySqlDialect(), SwapsTables)


def test_postgres_renames_in_one_transaction() -> None:
    d = PostgresDialect()
    assert d.swap_tables([(LIVE, SHADOW, OLD), (NEW, NEW_SHADOW, None)]) == [
        "SET LOCAL lock_timeout = '500ms'",
        'ALTER TABLE "snap"."items" RENAME TO "items__cdc_prev"',
        'ALTER TABLE "snap"."items__cdc_next" RENAME TO "items"',
        'ALTER TABLE "snap"."fresh__cdc_next" RENAME TO "fresh"',
    ]
    assert d.clone_table(SHADOW, LIVE)[0].startswith(
        'CREATE TABLE "snap"."items__cdc_next" (LIKE "snap"."items" ')
    assert d.drop_table(OLD) == ['DROP TABLE IF EXISTS "snap"."items__cdc_prev"']


def test_mysql_renames_in_one_statement() -> None:
    d = MySqlDialect()
    assert d.swap_tables([(LIVE, SHADOW, OLD), (NEW, NEW_SHADOW, None)]) == [
        "SET SESSION lock_wait_timeout = 2",
        "RENAME TABLE `snap`.`items` TO `snap`.`items__cdc_prev`, "
        "`snap`.`items__cdc_next` TO `snap`.`items`, `snap`.`fresh__cdc_next` TO `snap`.`fresh`"
    ]
    assert d.clone_table(SHADOW, LIVE) == ["CREATE TABLE `snap`.`items__cdc_next` LIKE `snap`.`items`"]


def test_lock_names_are_quoted() -> None:
    assert PostgresDialect().try_lock("a'b") == "SELECT pg_try_advisory_lock(hashtext('a''b'))"
    assert MySqlDialect().try_lock("a'b") == "SELECT GET_LOCK('a''b', 0) = 1"
