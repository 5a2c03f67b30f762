"""``cdc status``'s pure parts: thresholds, exit codes, rendering, secret masking."""

from __future__ import annotations

import json

from pydantic import SecretStr

from cdc.config.operations import StatusThresholds
from cdc.runtime.lease import epoch_of
from cdc.status import (
    PartitionStatus,
    SinkStatus,
    SourceStatus,
    StatusReport,
    breaches,
    mask,
    render,
    secret_values,
    to_json,
)

SOURCE = SourceStatus("pg_main", "postgres", "0/16B3748", "done", 30.0,
                      {"lag_bytes": 5000.0, "retained_wal_bytes": 5000.0})
SINK = SinkStatus("to_pg", "postgres", "cdc-sink-to_pg", (
    PartitionStatus("pg_main.public.t", 0, 100, 99, 0, 0.0, "0/16B3748"),
    PartitionStatus("pg_main.public.t", 1, 120, 79, 40, 12.5, "0/16B3000"),
), dead_letters=3)


def test_no_thresholds_no_breach() -> None:
    assert breaches([SOURCE], [SINK], StatusThresholds()) == []


def test_each_threshold_names_its_key() -> None:
    limits = StatusThresholds(max_sink_lag_records=39, max_sink_lag_seconds=12,
                              max_checkpoint_age_seconds=29, max_dead_letters=2,
                              max_source_lag_bytes=4999)
    found = breaches([SOURCE], [SINK], limits)
    keys = ["max_checkpoint_age_seconds", "max_source_lag_bytes", "max_sink_lag_records",
            "max_sink_lag_seconds", "max_dead_letters"]
    assert len(found) == len(keys)
    for key, text in zip(keys, found, strict=True):
        assert f"status.{key}" in text
    assert "pg_main.public.t[1]" in found[2]
    # At the limit is within it.
    assert breaches([SOURCE], [SINK], StatusThresholds(
        max_sink_lag_records=40, max_checkpoint_age_seconds=30, max_dead_letters=3)) == []


def test_exit_codes_and_json_shape() -> None:
    ok = StatusReport((SOURCE,), (SINK,))
    assert ok.exit_code == 0
    assert StatusReport((SOURCE,), (SINK,), breaches=("x",)).exit_code == 1
    broken = SinkStatus("to_my", "mysql", "g", error="cannot reach the replica")
    assert StatusReport((SOURCE,), (SINK, broken), breaches=("x",)).exit_code == 3
    assert StatusReport((), (), errors=("Kafka unreachable",)).exit_code == 3
    doc = json.loads(json.dumps(to_json(ok)))
    assert [s["name"] for s in doc["sources"]] == ["pg_main"]
    sink = doc["sinks"][0]
    assert sink["lag_records"] == 40 and sink["lag_seconds"] == 12.5
    assert sink["dead_letters"] == 3 and len(sink["partitions"]) == 2
    assert doc["sources"][0]["lag"]["retained_wal_bytes"] == 5000


def test_render_mentions_every_component() -> None:
    text = render(StatusReport((SOURCE,), (SINK,), breaches=("sink to_pg: lags",)))
    for word in ("SOURCES", "SINKS", "pg_main", "to_pg", "0/16B3748", "40 records",
                 "THRESHOLDS EXCEEDED"):
        assert word in text


def test_secrets_are_masked() -> None:
    from pydantic import BaseModel

    class Inner(BaseModel):
        password: SecretStr
        short: SecretStr

    class Outer(BaseModel):
        inner: Inner
        items: tuple[Inner, ...]
        extra: dict[str, SecretStr]

    model = Outer(inner=Inner(password=SecretStr("hunter22"), short=SecretStr("ab")),
                  items=(Inner(password=SecretStr("pa55word"), short=SecretStr("x")),),
                  extra={"sasl.password": SecretStr("kafka-pw")})
    found = secret_values(model)
    assert found == {"hunter22", "pa55word", "kafka-pw"}
    assert mask("dsn user:hunter22@h and kafka-pw", found) == "dsn user:**********@h and **********"


def test_lease_epoch_metadata() -> None:
    assert epoch_of(None) == 0 and epoch_of("") == 0 and epoch_of("garbage") == 0
    assert epoch_of("lease_epoch=7") == 7 and epoch_of("lease_epoch=x") == 0
