"""What a PostgreSQL node of a master-master pipeline needs, for ``cdc check``.

Two facts about the captured tables, read from the catalog: the sequences
that generate their key values (serial and identity columns), as the values
each may still produce, so the engine can tell when two nodes can create the
same key; and the tables whose replica identity is not FULL, whose updates
and deletes carry no complete before-image, which conflict detection compares
(docs/MASTER-MASTER.md). Pure queries; nothing is changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from cdc.spi import KeyGenerator, Problem

# Sequences owned by a column (serial: deptype 'a') or backing an identity ('i').
_SEQUENCES = """
SELECT tn.nspname, t.relname, a.attname, sn.nspname, sq.relname,
       s.seqincrement, s.seqstart, s.seqmin, s.seqmax, ps.last_value
FROM pg_depend d
JOIN pg_class sq ON sq.oid = d.objid AND sq.relkind = 'S'
JOIN pg_namespace sn ON sn.oid = sq.relnamespace
JOIN pg_sequence s ON s.seqrelid = sq.oid
JOIN pg_class t ON t.oid = d.refobjid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
LEFT JOIN pg_sequences ps ON ps.schemaname = sn.nspname AND ps.sequencename = sq.relname
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.deptype IN ('a', 'i')
"""

_IDENTITY = """
SELECT n.nspname, c.relname, c.relreplident
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relreplident <> 'f'
"""

_IDENTITY_NAMES = {"d": "DEFAULT (the primary key)", "n": "NOTHING", "i": "USING INDEX"}


def key_generators(conn: psycopg.Connection[Any],
                   captured: Iterable[tuple[str, str]]) -> list[KeyGenerator]:
    """The sequences feeding columns of the captured ``(schema, table)`` pairs."""
    wanted = set(captured)
    out: list[KeyGenerator] = []
    for schema, table, column, seq_schema, seq, inc, start, lo, hi, last in \
            conn.execute(_SEQUENCES).fetchall():
        if (schema, table) not in wanted or not inc:
            continue
        step = abs(int(inc))
        if inc > 0:
            low = int(start) if last is None else int(last) + step
            high = int(hi)
        else:
            low, high = int(lo), int(start) if last is None else int(last) - step
        out.append(KeyGenerator(
            table=f"{schema}.{table}", column=str(column), increment=step,
            residue=int(start) % step, low=low, high=high,
            what=f"sequence {seq_schema}.{seq} (INCREMENT {inc}, START {start})"))
    return out


def identity_problems(conn: psycopg.Connection[Any],
                      captured: Iterable[tuple[str, str]]) -> list[Problem]:
    """Captured tables without REPLICA IDENTITY FULL (warnings, with the statement)."""
    wanted = set(captured)
    out: list[Problem] = []
    for schema, table, ident in conn.execute(_IDENTITY).fetchall():
        if (schema, table) not in wanted:
            continue
        name = sql.Identifier(schema, table).as_string(conn)
        out.append(Problem(
            f"table {schema}.{table} has REPLICA IDENTITY {_IDENTITY_NAMES.get(ident, ident)}: "
            "its updates and deletes carry no full before-image, so master-master conflict "
            "detection cannot tell a concurrent change from a causal one",
            f"ALTER TABLE {name} REPLICA IDENTITY FULL (on every node)",
            key="tables", fatal=False))
    return out
