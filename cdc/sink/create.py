"""Creating a replica table that another worker of the same sink may create at once.

Workers of one sink (``cdc sink --workers N``) share its partitions, so two of them
can meet a new table, or a fresh replica's checkpoint table, at the same moment.
PostgreSQL does not serialise ``CREATE TABLE IF NOT EXISTS`` of one name: the second
fails with a unique violation on its catalog (23505), which the dialect classifies
as bad data. Whoever loses the race finds the table there afterwards: that is
success, not an error (:func:`create_table`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cdc.spi import SinkSession, TableName

log = logging.getLogger(__name__)


def create_table(session: SinkSession, name: TableName, statements: Sequence[str]) -> bool:
    """Run ``statements`` (creating ``name``): True when they ran, False when they
    failed but ``name`` exists now (made meanwhile by another worker). Any other
    failure is raised as it came."""
    try:
        session.execute_ddl(statements)
        return True
    except Exception:
        session.invalidate(name)
        try:
            there = session.describe(name) is not None
        except Exception:
            there = False
        if not there:
            raise
        log.info("replica table %s was created meanwhile by another worker", name)
        return False
