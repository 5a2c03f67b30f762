"""Replication origins: how a PostgreSQL sink marks its writes and a source recognises them.

Shared by the sink (:mod:`.sink.session`) and the source (:mod:`.source.changes`),
so the naming rule lives in one place. A sink with ``origin: <tag>`` binds its
session to the replication origin ``cdc_<tag>`` (created if missing) with
``pg_replication_origin_session_setup``; every transaction the session commits
then carries that origin in its commit record. A source with
``skip_replicated_changes`` leaves those transactions out (pgoutput ``origin
'none'`` on PostgreSQL 16+, the Origin message on 15); a source without it
publishes them with ``source.origin = <tag>``, which is how a sink recognises
its own changes coming back.

PostgreSQL lets one session at a time use an origin. A sink runs one replica
session per worker, so a session that finds ``cdc_<tag>`` in use takes
``cdc_<tag>#2``, ``#3``... (``#`` never occurs in a tag); :func:`tag_of` maps
every one of them back to ``<tag>``. The functions are superuser-only unless
granted: :data:`FUNCTIONS` lists the grants a non-superuser sink needs. Each
origin a sink has used keeps one of the server's replication origin states
(``max_active_replication_origins`` on PostgreSQL 18, ``max_replication_slots``
before) until it is dropped with ``pg_replication_origin_drop``.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg
from psycopg import errors

from cdc.errors import PrerequisiteError
from cdc.spi import Problem

PREFIX: Final = "cdc_"
MAX_SESSIONS: Final = 64

# What a non-superuser sink role needs: GRANT EXECUTE ON FUNCTION ... TO <role>.
FUNCTIONS: Final = (
    "pg_replication_origin_oid(text)",
    "pg_replication_origin_create(text)",
    "pg_replication_origin_session_setup(text)",
)


def origin_name(tag: str, n: int = 1) -> str:
    """The replication origin of a sink tag's ``n``-th concurrent session."""
    return f"{PREFIX}{tag}" if n == 1 else f"{PREFIX}{tag}#{n}"


def tag_of(name: str) -> str:
    """The sink tag a replication origin name stands for (other origins: the name itself)."""
    if not name.startswith(PREFIX):
        return name
    return name[len(PREFIX):].partition("#")[0]


def setup_session(conn: psycopg.Connection[Any], tag: str) -> str:
    """Bind ``conn``'s session to a free replication origin of ``tag``; returns its name.

    Runs outside a transaction block (the setup is session state, not
    transactional) and leaves none open. A missing privilege or a full origin
    table is a :class:`~cdc.errors.PrerequisiteError` that says what to do.
    """
    try:
        return _setup(conn, tag)
    except errors.InsufficientPrivilege as e:
        conn.rollback()
        user = conn.info.user
        raise PrerequisiteError(
            f"sink origin {tag!r}: the replica user {user} cannot use replication origins ({e})",
            hint="run as a superuser, or GRANT EXECUTE ON FUNCTION "
            + ", ".join(FUNCTIONS) + f" TO {user}") from e
    except errors.ConfigurationLimitExceeded as e:
        conn.rollback()
        raise PrerequisiteError(
            f"sink origin {tag!r}: no free replication origin state on the replica "
            f"({str(e).splitlines()[0]})",
            hint="each origin a sink has used keeps a slot until dropped: drop unused ones "
            "(SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE ...), "
            "or raise max_active_replication_origins (PostgreSQL 18+; max_replication_slots "
            "before) and restart the server") from e


def _setup(conn: psycopg.Connection[Any], tag: str) -> str:
    conn.rollback()
    for n in range(1, MAX_SESSIONS + 1):
        name = origin_name(tag, n)
        try:
            if conn.execute("SELECT pg_replication_origin_oid(%s)", [name]).fetchone() in (
                None, (None,)
            ):
                try:
                    conn.execute("SELECT pg_replication_origin_create(%s)", [name])
                    conn.commit()
                except errors.UniqueViolation:  # another session created it meanwhile
                    conn.rollback()
            conn.execute("SELECT pg_replication_origin_session_setup(%s)", [name])
            conn.commit()
            return name
        except errors.ObjectInUse:  # another session of this sink holds it
            conn.rollback()
    raise errors.ObjectInUse(
        f"all {MAX_SESSIONS} replication origins of sink origin {tag!r} are in use")


def problems(conn: psycopg.Connection[Any], tag: str) -> list[Problem]:
    """What would stop :func:`setup_session` for ``tag``, found without side effects."""
    user = conn.info.user
    try:
        rows = conn.execute(
            "SELECT f, has_function_privilege(f, 'EXECUTE') FROM unnest(%s::text[]) AS f",
            [list(FUNCTIONS)]).fetchall()
        missing = [str(f) for f, ok in rows if not ok]
        conn.rollback()
        limit_name = ("max_active_replication_origins" if conn.info.server_version >= 180000
                      else "max_replication_slots")
        try:
            row = conn.execute(
                "SELECT current_setting(%s)::int, count(*), "
                "count(*) FILTER (WHERE external_id = %s) FROM pg_replication_origin_status",
                [limit_name, origin_name(tag)]).fetchone()
        except errors.InsufficientPrivilege:  # a reader of the view only: not checked
            row = None
    finally:
        conn.rollback()
    out: list[Problem] = []
    if missing:
        out.append(Problem(
            f"the replica user {user} cannot use replication origins (no EXECUTE on "
            f"{', '.join(missing)}), which sink origin {tag!r} needs",
            f"run as a superuser, or GRANT EXECUTE ON FUNCTION {', '.join(missing)} TO {user}",
            key="origin"))
    if row is not None:
        limit, used, own = (int(v) for v in row)
        if not own and used >= limit:
            out.append(Problem(
                f"all {limit} replication origin states of the replica are taken ({limit_name}), "
                f"so sink origin {tag!r} cannot get one",
                f"drop unused origins (pg_replication_origin_drop) or raise {limit_name} "
                "(needs a restart)", key="origin"))
    return out
