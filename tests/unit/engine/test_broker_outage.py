"""The fold of a broker's transient loss into one warning and one summary."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError

from cdc.transport import client_log
from cdc.transport.client_log import KAFKA_LOG, BrokerOutage, is_transient


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def outage(monkeypatch: pytest.MonkeyPatch) -> tuple[BrokerOutage, Clock, list[bool]]:
    clock, up = Clock(), [False]
    o = BrokerOutage(probe=lambda _b: up[0], clock=clock)
    monkeypatch.setattr(o, "_start_watcher", lambda: None)  # checks are driven by the test
    return o, clock, up


def levels(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_many_reports_are_one_warning_then_one_summary(
        outage: tuple[BrokerOutage, Clock, list[bool]], caplog: pytest.LogCaptureFixture) -> None:
    o, clock, up = outage
    caplog.set_level(logging.DEBUG, logger="cdc.kafka")
    for _ in range(60):
        o.report("Connection refused", "127.0.0.1:19092")
        clock.now += 0.1
    assert len(levels(caplog, logging.WARNING)) == 1
    assert "127.0.0.1:19092 unreachable (Connection refused)" in levels(caplog, logging.WARNING)[0]
    assert not o.check()  # still refused
    up[0] = True
    assert not o.check()  # reachable, but the last report is too recent
    clock.now += client_log.QUIET_FOR_S
    assert o.check() and not o.active
    summary = levels(caplog, logging.INFO)
    assert len(summary) == 1 and "60 connection errors" in summary[0], summary
    assert levels(caplog, logging.ERROR) == []
    # A later loss is a new outage with its own warning.
    o.report("Connection refused")
    assert len(levels(caplog, logging.WARNING)) == 2


def test_a_long_outage_reminds_once_a_minute(
        outage: tuple[BrokerOutage, Clock, list[bool]], caplog: pytest.LogCaptureFixture) -> None:
    o, clock, _ = outage
    caplog.set_level(logging.INFO, logger="cdc.kafka")
    for _ in range(250):  # 125 s of reports every half second
        o.report("Connection refused", "k:9092")
        clock.now += 0.5
    warnings = levels(caplog, logging.WARNING)
    assert len(warnings) == 3 and "still unreachable after 60s" in warnings[1], warnings


def test_librdkafka_connectivity_lines_are_folded_other_lines_pass(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(client_log.OUTAGE, "report", lambda detail, *_a: seen.append(detail))
    caplog.set_level(logging.DEBUG)
    KAFKA_LOG.error("%s [%s] %s", "FAIL", "rdkafka#producer-1",
                    "127.0.0.1:19092/1: Connect to ipv4#127.0.0.1:19092 failed: "
                    "Connection refused (after 0ms in state CONNECT)")
    KAFKA_LOG.warning("%s [%s] %s", "SESSTMOUT", "rdkafka#consumer-1",
                      "Consumer group session timed out (in join-state steady) after 6010 ms "
                      "without a successful response from the group coordinator")
    KAFKA_LOG.warning("%s [%s] %s", "METADATAUPDATE", "rdkafka#producer-1",
                      "[thrd:main]: Partition t(x)[2]: new leader-1 not found in cache")
    KAFKA_LOG.warning("%s [%s] %s", "CONFWARN", "rdkafka#producer-1",
                      "Configuration property x is a consumer property")
    assert seen == ["127.0.0.1:19092/1: Connect to ipv4#127.0.0.1:19092 failed: "
                    "Connection refused (after 0ms in state CONNECT)",
                    "Consumer group session timed out (in join-state steady) after 6010 ms "
                    "without a successful response from the group coordinator",
                    "Partition t(x)[2]: new leader-1 not found in cache"]
    assert [r.levelname for r in caplog.records if r.name == "cdc.kafka.client"] == ["WARNING"]


def test_transient_codes() -> None:
    assert is_transient(KafkaError(KafkaError._TRANSPORT))
    assert is_transient(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert not is_transient(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert not is_transient(KafkaError(KafkaError._TRANSPORT, fatal=True))
