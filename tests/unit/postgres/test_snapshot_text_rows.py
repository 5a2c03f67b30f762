"""Snapshot rows of text: the C encoder (encode_text_rows) against the per-row reference.

The reference converts each text row with the table shape's converters and
encodes the event in Python (the C module hidden); the native path writes the
plain spellings of each text form itself. Both must give the same bytes, or
both refuse the batch. Edge spellings per form, then random ones; the same
differential is the ``text_rows`` fuzz target (tests/fuzz/targets.py).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.serde import encode
from tests.fuzz import targets

pytestmark = pytest.mark.skipif(encode._C is None, reason="native encoder not built (make native)")

# Per column of targets.TEXT_COLUMNS: spellings at and past each form's edges.
EDGES: dict[str, list[str]] = {
    "id": ["0", "-0", "007", "9223372036854775807", "-9223372036854775808",
           "999999999999999999", "9223372036854775808", "1 ", "+1", "", "-", "1_0"],
    "qty": ["2147483647", "-2147483648", "2147483648", "12"],
    "price": ["0", "-0.00", "99999999.99", "100000000.00", "1.005", "1.000", ".5", "5.", ".",
              "-.5", "NaN", "Infinity", "1e3", "00001.10"],
    "created": ["2024-01-01 00:00:00", "2024-02-29 23:59:59.999999", "2023-02-29 00:00:00",
                "2024-01-01 24:00:00", "2024-01-01 00:00:60", "0001-01-01 00:00:00",
                "9999-12-31 23:59:59.9", "2024-01-01 00:00:00.", "2024-01-01 00:00:00.1234567",
                "2024-01-01T00:00:00", "infinity", "-infinity", "0044-03-15 12:00:00 BC",
                "10000-01-01 00:00:00"],
    "day": ["2024-02-29", "2023-02-29", "2000-02-29", "1900-02-29", "0001-01-01", "9999-12-31",
            "2024-04-31", "2024-00-10", "infinity", "0044-03-15 BC", "20240101"],
    "ratio": ["0.1", "-0", "1e308", "1e999", "-1e-320", "NaN", "Infinity", "-Infinity", "nan",
              " 1", "1 ", "0x10", "1_0"],
    "active": ["t", "f", "true", "T", ""],
    "small": ["32767", "-32768", "32768"],
    "wide": ["123456789012345678901234.56789", "0.00001", "-1.5"],
}


def _check(texts: list[tuple[object, ...]]) -> None:
    shape, native, python = targets._text_encoders()
    py = targets._any_outcome(lambda: python.encode_rows(targets._text_batch(shape, texts)))
    c = targets._any_outcome(lambda: native.encode_rows(targets._text_batch(shape, texts)))
    if not (c[0] == py[0] == "error"):
        assert c == py, texts


@pytest.mark.parametrize("column", sorted(EDGES))
def test_edge_spellings_encode_as_the_reference(column: str) -> None:
    names = [n for n, _, _ in targets.TEXT_COLUMNS]
    base = targets.text_row_values(b"")[0]
    for text in EDGES[column]:
        row = list(base)
        row[names.index(column)] = text
        _check([tuple(row)])


def test_a_batch_with_refused_and_null_rows() -> None:
    base = targets.text_row_values(b"")[0]
    nulls = (base[0], *([None] * (len(base) - 1)))
    _check([base, nulls, base])
    bad = (base[0], "x", *base[2:])  # qty not an integer: the row builder refuses
    _check([base, bad])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=4))
def test_random_text_rows(parts: list[bytes]) -> None:
    targets.text_rows(b"\x1e".join(parts))
