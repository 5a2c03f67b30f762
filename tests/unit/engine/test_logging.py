from __future__ import annotations

import logging

import pytest

from cdc.observability.logging import redact, setup_logging


def test_redact_hides_passwords_in_dsns_and_conninfo() -> None:
    assert redact("postgresql://cdc:s3cr3t@db:5432/x") == "postgresql://cdc:***@db:5432/x"
    assert "s3cr3t" not in redact("host=db password=s3cr3t user=cdc")


def test_log_records_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "json")
    logging.getLogger("t").warning("connect to %s failed", "mysql://root:hunter2@h:3306/db")
    err = capsys.readouterr().err
    assert "hunter2" not in err and '"level": "WARNING"' in err


def test_redact_keeps_ports_and_urls_without_credentials() -> None:
    line = "metrics on http://127.0.0.1:9108/metrics, kafka at 127.0.0.1:19092"
    assert redact(line) == line
    assert redact("registry http://registry:8081/apis/ccompat/v7") == \
        "registry http://registry:8081/apis/ccompat/v7"


def test_redact_still_hides_every_kind_of_password() -> None:
    cases = {
        "mysql://root:hunter2@h:3306/db": "mysql://root:***@h:3306/db",
        "http://u:p%40ss@reg:8081/x": "http://u:***@reg:8081/x",
        "sasl password=s3cr3t&x=1": "sasl password=***&x=1",
        "Passwd=abc def": "Passwd=*** def",
        "a postgresql://cdc:pw@db:5432/x then http://127.0.0.1:9108/m":
            "a postgresql://cdc:***@db:5432/x then http://127.0.0.1:9108/m",
    }
    for text, want in cases.items():
        assert redact(text) == want


def test_metrics_log_line_shows_its_port(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "text")
    logging.getLogger("t").info("metrics at %s", "http://127.0.0.1:9108/metrics")
    assert "http://127.0.0.1:9108/metrics" in capsys.readouterr().err
