from __future__ import annotations

from cdc.runtime.pipeline import BACKOFF_MAX_S, STABLE_AFTER_S, next_delay


def test_backoff_doubles_from_one_second_and_is_capped() -> None:
    delays, d = [], 0.0
    for _ in range(10):
        d = next_delay(d, ran_s=0.5)
        delays.append(d)
    assert delays[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert delays[7:] == [BACKOFF_MAX_S] * 3


def test_backoff_starts_over_after_a_stable_run() -> None:
    assert next_delay(60.0, ran_s=STABLE_AFTER_S) == 1.0
    assert next_delay(60.0, ran_s=STABLE_AFTER_S - 1) == 60.0
