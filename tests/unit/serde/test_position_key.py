"""The sinks' position shortcuts agree with the positions they stand for."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from cdc.positions import BinlogFile, Lsn, MySqlPosition, PgPosition
from cdc.serde.codec import _POSITION_JSON, parse_position, pg_position_key

pg_positions = st.builds(
    PgPosition,
    st.builds(Lsn, st.integers(0, 2**64 - 1)),
    st.integers(0, 2**50),
    st.booleans(),
    st.booleans(),
)


@given(pg_positions)
def test_pg_position_key_is_the_sort_key_and_the_text_parses_back(p: PgPosition) -> None:
    text = _POSITION_JSON(p.to_dict())
    got = pg_position_key(text)
    assert got is not None
    assert got == (p.sort_key(), text)
    back = parse_position(text)
    assert back == p and isinstance(back, PgPosition) and back.last_in_tx == p.last_in_tx


def test_other_texts_take_the_generic_parser() -> None:
    my = MySqlPosition(BinlogFile("mysql-bin.000003"), 1234, 5)
    text = _POSITION_JSON(my.to_dict())
    assert pg_position_key(text) is None
    assert parse_position(text) == my
    # Same meaning, other spelling (spaces): not the fast form, still the same position.
    p = PgPosition(Lsn(99), 3)
    spaced = json.dumps(p.to_dict())
    assert pg_position_key(spaced) is None
    assert parse_position(spaced) == p
