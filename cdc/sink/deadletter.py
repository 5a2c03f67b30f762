"""The dead-letter queue: records a sink could not apply, kept byte for byte.

Each dead letter is the consumed record's original key, value and headers,
plus headers that say what went wrong and where the record came from:

=================  =======================================================
``cdc.error``      the error message (UTF-8, at most 4 KiB)
``cdc.error.kind`` ``decode`` | ``schema`` | ``value`` | ``apply``
``cdc.topic``      the topic the record was consumed from
``cdc.partition``  its partition (decimal text)
``cdc.offset``     its offset (decimal text)
``cdc.sink``       the sink's name
=================  =======================================================

Letters are produced with the idempotent producer and flushed *before* the
batch's replica transaction commits, so a crash can duplicate a dead letter
but never lose one (the checkpoint moves past a bad record only after its
letter is durable).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdc.transport.producer import EventProducer
from cdc.transport.topics import TopicManager, TopicSpec

log = logging.getLogger(__name__)

_MAX_ERROR_BYTES = 4096


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    error: str
    kind: str  # decode | schema | value | apply


def letter_headers(letter: DeadLetter, sink: str) -> list[tuple[str, bytes]]:
    error = letter.error.encode()
    if len(error) > _MAX_ERROR_BYTES:
        error = error[: _MAX_ERROR_BYTES - 3] + b"..."
    return [
        *(letter.headers or []),
        ("cdc.error", error),
        ("cdc.error.kind", letter.kind.encode()),
        ("cdc.topic", letter.topic.encode()),
        ("cdc.partition", str(letter.partition).encode()),
        ("cdc.offset", str(letter.offset).encode()),
        ("cdc.sink", sink.encode()),
    ]


class DeadLetterQueue:
    """Produces dead letters to one topic (created on first use)."""

    def __init__(
        self,
        topic: str,
        sink: str,
        producer_config: Mapping[str, Any],
        *,
        topic_spec: TopicSpec | None = None,
    ) -> None:
        self.topic = topic
        self.sink = sink
        conf = dict(producer_config)
        bootstrap = str(conf.pop("bootstrap.servers"))
        self._admin_conf = {k: v for k, v in conf.items() if k.startswith(("security.", "sasl.", "ssl."))}
        for k in ("enable.idempotence", "acks"):
            conf.pop(k, None)
        self._producer = EventProducer(bootstrap, conf, max_in_flight=10_000)
        self._topics = TopicManager(bootstrap, self._admin_conf)
        self._spec = topic_spec or TopicSpec(partitions=1)
        self._ready = False
        self.sent = 0

    def ensure_topic(self) -> None:
        if not self._ready:
            self._topics.ensure([self.topic], self._spec)
            self._ready = True

    def send(self, letter: DeadLetter) -> None:
        self.ensure_topic()
        log.warning(
            "dead letter: %s[%d]@%d (%s): %s",
            letter.topic, letter.partition, letter.offset, letter.kind, letter.error,
        )
        self._producer.send(
            self.topic, letter.key, letter.value, headers=letter_headers(letter, self.sink)
        )
        self.sent += 1

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every letter is acknowledged (DeliveryError/UnreachableError if not)."""
        self._producer.flush(timeout)

    def close(self) -> None:
        self._producer.close()
