"""Kafka client noise: a broker that goes away and comes back is one warning.

librdkafka reports a lost broker many times over (every client of a process,
every connection attempt, ``Connection refused``, ``all brokers are down``,
timed-out requests...), and it reconnects by itself. This module folds all of
that into one process-wide :class:`BrokerOutage`: the first report logs one
WARNING, the following ones are counted at DEBUG, a reminder is logged every
minute while it lasts, and when the broker accepts connections again (and no
report came for a short while) one INFO line sums it up. ERRORs stay for the
moment a process gives up (its own exception, raised elsewhere).

``KAFKA_LOG`` is the logger every client passes as librdkafka's ``logger``;
its filter sends connectivity messages to the outage and lets the rest pass.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError

log = logging.getLogger("cdc.kafka")
# librdkafka's own log lines, routed through Python logging instead of stderr.
KAFKA_LOG = logging.getLogger("cdc.kafka.client")

# librdkafka messages that mean "cannot talk to a broker right now" (it retries).
_CONNECTIVITY = re.compile(
    r"Connection refused|Connect to .* failed|Disconnected|brokers are down|"
    r"Broker transport failure|Receive failed|Send failed|Connection reset|"
    r"Connection setup timed out|Failed to resolve|Timed out \d+ in-flight|"
    r"timed out in state|Coordinator .*(unavailable|not available|dead)|"
    r"Failed to acquire idempotence PID|Metadata request failed|"
    r"without a successful response from the group coordinator|"
    r"new leader-?\d+ not found in cache",
    re.IGNORECASE,
)
# Client errors (error_cb, consumer messages, delivery retries) of the same kind.
TRANSIENT_CODES = frozenset({
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE,
    KafkaError._TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError._WAIT_COORD, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
})

_THREAD = re.compile(r"^\[thrd:[^\]]*\]:\s*")  # librdkafka's thread prefix
REMIND_EVERY_S = 60.0
QUIET_FOR_S = 3.0  # reachable and no report for this long = recovered
PROBE_EVERY_S = 0.5


def _reachable(bootstrap: str) -> bool:
    """Does any bootstrap broker accept a TCP connection?"""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if "://" in host:
            host = host.split("://", 1)[1]
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), 1.0):
                return True
        except (OSError, ValueError):
            continue
    return False


class BrokerOutage:
    """One process's view of its Kafka cluster being away (thread-safe)."""

    def __init__(self, probe: Callable[[str], bool] = _reachable,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        self._bootstrap = ""
        self.since: float | None = None  # set while an outage lasts
        self.reports = 0
        self._last_report = 0.0
        self._last_reminder = 0.0
        self._first = ""
        self._watcher: threading.Thread | None = None

    @property
    def _name(self) -> str:
        return f"Kafka at {self._bootstrap}" if self._bootstrap else "Kafka"

    @property
    def active(self) -> bool:
        return self.since is not None

    def watch(self, bootstrap: str) -> None:
        """The servers to probe for recovery (the last client's setting wins)."""
        self._bootstrap = bootstrap

    def report(self, detail: str, bootstrap: str | None = None) -> None:
        """A client could not reach the broker: the first report of an outage warns."""
        if bootstrap:
            self._bootstrap = bootstrap
        now = self._clock()
        with self._lock:
            self.reports += 1
            self._last_report = now
            if self.since is None:
                self.since = now
                self._last_reminder = now
                self._first = detail
                log.warning("%s unreachable (%s): clients retry by themselves; "
                            "further connection errors are counted until it is back",
                            self._name, detail)
                self._start_watcher()
            else:
                log.debug("Kafka still unreachable: %s", detail)
                if now - self._last_reminder >= REMIND_EVERY_S:
                    self._last_reminder = now
                    log.warning("%s still unreachable after %.0fs (%d connection "
                                "errors so far); retrying", self._name,
                                now - self.since, self.reports)

    def check(self) -> bool:
        """Ends the outage when the broker is reachable and quiet; True if it ended now."""
        with self._lock:
            if self.since is None:
                return False
            now = self._clock()
            if now - self._last_report < QUIET_FOR_S:
                return False
        if not self._probe(self._bootstrap):
            return False
        with self._lock:
            if self.since is None or self._clock() - self._last_report < QUIET_FOR_S:
                return False
            log.info("%s reachable again after %.1fs (%d connection errors while "
                     "it was away, first: %s)", self._name,
                     self._last_report - self.since, self.reports, self._first)
            self.since = None
            self.reports = 0
            return True

    def _start_watcher(self) -> None:
        if self._watcher is not None and self._watcher.is_alive():
            return

        def loop() -> None:
            while not self.check():
                time.sleep(PROBE_EVERY_S)

        self._watcher = threading.Thread(target=loop, name="kafka-outage", daemon=True)
        self._watcher.start()


OUTAGE = BrokerOutage()


def is_transient(err: KafkaError) -> bool:
    return err.code() in TRANSIENT_CODES and not err.fatal()


class _ConnectivityFilter(logging.Filter):
    """Sends librdkafka's connectivity messages to the outage instead of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        if _CONNECTIVITY.search(text):
            # confluent-kafka logs (facility, client name, message): keep the message.
            args = record.args
            detail = str(args[2]) if isinstance(args, tuple) and len(args) == 3 else text
            OUTAGE.report(_THREAD.sub("", detail)[:200])
            return False
        return True


if not any(isinstance(f, _ConnectivityFilter) for f in KAFKA_LOG.filters):
    KAFKA_LOG.addFilter(_ConnectivityFilter())
