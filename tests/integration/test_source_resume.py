"""A source killed with SIGKILL resumes from the last durable position in the offsets topic."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cdc.offsets.store import OffsetStore
from cdc.serde import AvroSerde, RegistryClient
from connectors.postgres.position import PgPosition
from tests.fixtures.sequence_source import tx_lsn, tx_size
from tests.fixtures.topics import read_changes

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _spawn(name: str, transactions: int, delay: float, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.sequence_pipeline", name, str(transactions),
         str(delay)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_all(bootstrap: str, topic: str, serde: AvroSerde) -> list[tuple[int, int, PgPosition]]:
    out = []
    for change, _ in read_changes(bootstrap, topic, serde):
        assert change.after is not None and isinstance(change.position, PgPosition)
        out.append((int(change.after["tx"]), int(change.after["id"]), change.position))
    return out


def test_killed_source_resumes_from_durable_position(kafka_bootstrap: str,
                                                     schema_registry_url: str,
                                                     unique_name: str) -> None:
    name = unique_name
    transactions = 3000
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap,
           "SCHEMA_REGISTRY_URL": schema_registry_url}
    first = _spawn(name, transactions, 0.001, env)
    # Kill at a random point after a few checkpoints were recorded.
    assert first.stdout is not None
    wanted = random.randint(3, 12)
    checkpoints = 0
    deadline = time.monotonic() + 60
    while checkpoints < wanted and time.monotonic() < deadline:
        line = first.stdout.readline()
        if not line:
            break
        checkpoints += line.startswith("checkpoint")
    assert checkpoints == wanted, first.stderr.read() if first.stderr else ""
    time.sleep(random.uniform(0, 0.2))
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    stored = OffsetStore(kafka_bootstrap, f"{name}.offsets").load(name)
    assert stored is not None and isinstance(stored.position, PgPosition)
    durable = stored.position

    second = _spawn(name, transactions, 0.0, env)
    out, err = second.communicate(timeout=180)
    assert second.returncode == 0, err
    assert out.strip().endswith("done")

    serde = AvroSerde(RegistryClient(schema_registry_url))
    records = _read_all(kafka_bootstrap, f"{name}.public.items", serde)
    counts = Counter((tx, row_id) for tx, row_id, _ in records)
    expected = {(tx, tx * 10 + i) for tx in range(transactions) for i in range(tx_size(tx))}
    assert set(counts) == expected, "every committed change is in Kafka"
    for (tx, row_id), n in counts.items():
        pos = next(p for t, r, p in records if (t, r) == (tx, row_id))
        if pos <= durable:
            assert n == 1, f"tx {tx} row {row_id} at/before the durable position appears {n} times"
    assert durable < PgPosition(tx_lsn(transactions - 1), 0), "the kill landed mid-stream"
