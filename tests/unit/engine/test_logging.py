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
