"""Sinks: apply change topics to replica databases (PostgreSQL, MySQL/MariaDB).

Layout, from the outside in:

* :mod:`.cli` - ``cdc sink``: builds workers from the config, runs them.
* :mod:`.worker` - one consumer-group member: buffering, batch cuts,
  rebalance callbacks, retries and waits.
* :mod:`.applier` - one batch -> one replica transaction: decode, dedupe,
  plan, reduce, apply with the checkpoint rows, isolate bad records.
* :mod:`.schema` - replica table naming, column filters, auto-create/evolve.
* :mod:`.reduce` - collapsing a batch's changes per key (pure).
* :mod:`.checkpoint` - the checkpoint table and the skip rule (pure rule).
* :mod:`.partitioning` - which partition a key maps to (per-partition truncates).
* :mod:`.deadletter` - the dead letter queue.
* :mod:`.values` - exact-fit checks shared by the dialects.

Database specifics live in the dialects (``connectors/<db>/sink/``) behind
:class:`cdc.spi.SinkDialect`; nothing here names a database. docs/SINK.md
is the operator's view.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Applier",
    "Checkpoint",
    "CheckpointStore",
    "ReplicaSchemas",
    "SinkFailure",
    "SinkSettings",
    "SinkWorker",
    "WorkerOptions",
    "build_worker",
    "sink_command",
]

_WHERE = {
    "Applier": "cdc.sink.applier",
    "SinkFailure": "cdc.sink.applier",
    "SinkSettings": "cdc.sink.applier",
    "Checkpoint": "cdc.sink.checkpoint",
    "CheckpointStore": "cdc.sink.checkpoint",
    "ReplicaSchemas": "cdc.sink.schema",
    "SinkWorker": "cdc.sink.worker",
    "WorkerOptions": "cdc.sink.worker",
    "build_worker": "cdc.sink.cli",
    "sink_command": "cdc.sink.cli",
}


def __getattr__(name: str) -> Any:
    # Lazy, so importing a light module (values, reduce) does not load Kafka clients.
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'cdc.sink' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
