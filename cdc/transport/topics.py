"""Topic management: create what the pipeline needs, with the configured layout.

Topics are created explicitly (the local broker has auto-creation off) so
partitions, replication factor and cleanup policy are what the config says.

A created topic is handed back only once every partition answers a
ListOffsets request from its leader. Producing earlier lost records here
(Kafka 4.4, librdkafka 2.16, idempotent producer, machine under load): the
broker brought a new topic's partitions online one by one, and the first
records produced to the partition that came online last were reported
delivered but were not in its log, which began with later records. Our
explanation, not proven: the first pipelined batch was refused while the
partition was not online, a later one was accepted as the producer's first
on that partition, and the retried first batch was then taken as already
written. Waiting for every partition closes that window.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
    OffsetSpec,
)

from cdc.errors import DeliveryError, UnreachableError
from cdc.transport.client_log import KAFKA_LOG


@dataclass(frozen=True, slots=True)
class TopicSpec:
    partitions: int = 1
    replication_factor: int = 1
    cleanup_policy: str = "delete"
    config: Mapping[str, str] = field(default_factory=dict)


class TopicManager:
    """Creates topics once per process; remembers what exists."""

    def __init__(self, bootstrap_servers: str, settings: Mapping[str, str | int | float] | None = None,
                 *, timeout_s: float = 30.0) -> None:
        self._bootstrap = bootstrap_servers
        conf: dict[str, Any] = {**(settings or {}), "bootstrap.servers": bootstrap_servers,
                                "logger": KAFKA_LOG}
        self._admin = AdminClient(conf)
        self._timeout = timeout_s
        self._known: dict[str, int] = {}  # topic -> partitions

    def existing(self) -> dict[str, int]:
        """Every topic with its partition count."""
        try:
            md = self._admin.list_topics(timeout=self._timeout)
        except KafkaException as e:
            raise UnreachableError(
                f"Kafka at {self._bootstrap} did not answer within {self._timeout:.0f}s: {e}",
                hint="check kafka.bootstrap_servers and that the broker is running",
            ) from e
        return {name: len(t.partitions) for name, t in md.topics.items()}

    def ensure(self, names: Iterable[str], spec: TopicSpec) -> None:
        wanted = [n for n in dict.fromkeys(names) if n not in self._known]
        if not wanted:
            return
        present = self.existing()
        self._known.update({n: present[n] for n in wanted if n in present})
        missing = [n for n in wanted if n not in present]
        if missing:
            config = {"cleanup.policy": spec.cleanup_policy, **spec.config}
            new = [NewTopic(n, num_partitions=spec.partitions,
                            replication_factor=spec.replication_factor, config=dict(config))
                   for n in missing]
            futures = self._admin.create_topics(new, request_timeout=self._timeout)
            for name, fut in futures.items():
                try:
                    fut.result(timeout=self._timeout)
                except KafkaException as e:
                    err = e.args[0] if e.args else None
                    if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                        # Created by someone else meanwhile: ask for its real layout.
                        partitions = self.partitions(name)
                        self.wait_online(name, partitions)
                        self._known[name] = partitions
                        continue
                    raise DeliveryError(f"cannot create topic {name}: {e}",
                                        hint="check the broker's limits and ACLs") from e
                self.wait_online(name, spec.partitions)
                self._known[name] = spec.partitions

    def wait_online(self, topic: str, partitions: int) -> None:
        """Return once every partition of a just-created topic is served by its leader.

        A partition is online when ListOffsets, which only its leader answers
        from its log, succeeds (see the module docstring for why this matters).
        """
        deadline = time.monotonic() + self._timeout
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        waiting = {TopicPartition(topic, p): latest for p in range(partitions)}
        last: object = None
        while waiting:
            # A metadata request for the topic first: it refreshes the client's cache of
            # leaders, which ListOffsets relies on (without it a cache from before the
            # topic existed can keep answering "no leaders" until its periodic refresh).
            try:
                md = self._admin.list_topics(topic, timeout=self._timeout)
                meta = md.topics.get(topic)
                leaders_known = (meta is not None and meta.error is None and all(
                    p in meta.partitions and meta.partitions[p].leader >= 0
                    for p in range(partitions)))
            except KafkaException as e:
                last, leaders_known = e, False
            if leaders_known:
                futures = self._admin.list_offsets(dict(waiting), request_timeout=self._timeout)
                for tp, fut in futures.items():
                    try:
                        fut.result()
                    except KafkaException as e:
                        last = e
                        continue
                    waiting.pop(TopicPartition(tp.topic, tp.partition), None)
                if not waiting:
                    return
            else:
                last = last or "no leader known yet"
            if time.monotonic() >= deadline:
                raise DeliveryError(
                    f"topic {topic}: partitions {sorted(tp.partition for tp in waiting)} are not "
                    f"online {self._timeout:.0f}s after creation ({last})",
                    hint="check the broker's log for why its partitions do not come online")
            time.sleep(0.05)

    def partitions(self, topic: str) -> int:
        """The topic's partition count; waits briefly for a just-created topic's metadata."""
        if topic in self._known:
            return self._known[topic]
        deadline = time.monotonic() + self._timeout
        while True:
            md = self._admin.list_topics(topic, timeout=self._timeout)
            t = md.topics.get(topic)
            if t is not None and t.error is None and t.partitions:
                self._known[topic] = len(t.partitions)
                return self._known[topic]
            if time.monotonic() >= deadline:
                raise DeliveryError(f"topic {topic} does not exist")
            time.sleep(0.2)
