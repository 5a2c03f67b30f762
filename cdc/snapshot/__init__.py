"""Snapshot replication: point-in-time copies of a source's tables, switched in atomically.

A *run* reads every table of a source at one consistent point
(:mod:`.publish`), publishes the rows as ``op=r`` records to the source's
topics, framed by run records in a compacted topic (:mod:`.runs`); each
replica subscribed to those topics loads the run into shadow tables and
swaps them in at once when it holds every row (:mod:`.replica`). Schedules
(:mod:`.schedule`) and the long-running loops live in :mod:`.service`, the
``cdc snapshot`` commands in :mod:`.cli`.
"""
