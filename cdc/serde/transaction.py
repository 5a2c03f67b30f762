"""Transaction metadata records: BEGIN and END markers on ``<prefix>.transaction``.

The shape follows Debezium's transaction metadata topic (key ``{id}``; value
``status``, ``id``, ``event_count`` and ``data_collections`` on END,
``ts_ms``), so consumers that join change events to their transactions work
unchanged. Written by hand like the change envelopes; the schemas are
registered under TopicNameStrategy subjects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from cdc.serde.binary import NULL_BRANCH, VALUE_BRANCH, string, zigzag
from cdc.serde.framing import frame_prefix
from cdc.serde.registry import SchemaRegistry

_NAMESPACE: Final = "io.debezium.connector.common"

KEY_SCHEMA: Final[dict[str, Any]] = {
    "type": "record",
    "name": "TransactionMetadataKey",
    "namespace": _NAMESPACE,
    "fields": [{"name": "id", "type": "string"}],
}

VALUE_SCHEMA: Final[dict[str, Any]] = {
    "type": "record",
    "name": "TransactionMetadataValue",
    "namespace": _NAMESPACE,
    "fields": [
        {"name": "status", "type": "string"},
        {"name": "id", "type": "string"},
        {"name": "event_count", "type": ["null", "long"], "default": None},
        {
            "name": "data_collections",
            "type": [
                "null",
                {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "DataCollection",
                        "fields": [
                            {"name": "data_collection", "type": "string"},
                            {"name": "event_count", "type": "long"},
                        ],
                    },
                },
            ],
            "default": None,
        },
        {"name": "ts_ms", "type": "long"},
    ],
}


class TransactionMetadataEncoder:
    """Frames BEGIN/END records for one source's transaction topic."""

    def __init__(self, registry: SchemaRegistry, topic: str) -> None:
        self.topic = topic
        key_id = registry.register(f"{topic}-key", json.dumps(KEY_SCHEMA))
        value_id = registry.register(f"{topic}-value", json.dumps(VALUE_SCHEMA))
        self._key_prefix = frame_prefix(key_id)
        self._value_prefix = frame_prefix(value_id)

    def key(self, tx_id: str) -> bytes:
        return self._key_prefix + string(tx_id)

    def begin(self, tx_id: str, ts_ms: int) -> bytes:
        return b"".join((self._value_prefix, string("BEGIN"), string(tx_id), NULL_BRANCH,
                         NULL_BRANCH, zigzag(ts_ms)))  # fmt: skip

    def end(
        self, tx_id: str, ts_ms: int, event_count: int, collections: Sequence[tuple[str, int]]
    ) -> bytes:
        parts = [self._value_prefix, string("END"), string(tx_id),
                 VALUE_BRANCH + zigzag(event_count)]  # fmt: skip
        if collections:
            parts += (VALUE_BRANCH, zigzag(len(collections)))
            parts += (string(name) + zigzag(n) for name, n in collections)
            parts.append(b"\x00")  # end of the array's blocks
        else:
            parts.append(NULL_BRANCH)
        parts.append(zigzag(ts_ms))
        return b"".join(parts)
