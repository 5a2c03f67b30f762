"""The sinks' position shortcuts agree with the positions they stand for."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from cdc.positions import BinlogFile, Lsn, MySqlPosition, PgPosition
from cdc.serde.codec import (
    _C_PG_KEY,
    _PG_JSON_HEAD,
    _POSITION_JSON,
    parse_position,
    pg_position_key,
    pg_position_sort_key,
)

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


@given(pg_positions)
def test_pg_position_sort_key_agrees_with_the_regular_expression(p: PgPosition) -> None:
    text = _POSITION_JSON(p.to_dict())
    assert pg_position_sort_key(text) == p.sort_key()
    if _C_PG_KEY is not None and p.index < 10**18:
        assert _C_PG_KEY(_PG_JSON_HEAD, text) == p.sort_key()


_near_pg = st.one_of(
    # Valid texts with one character replaced, dropped or inserted.
    st.tuples(pg_positions, st.integers(0, 200), st.sampled_from(["", "0", "a", "F", "G", " ", "}", "\u0663", "\"", "9" * 20])).map(
        lambda t: (lambda s, i, c: s[:i] + c + s[i + 1:])(_POSITION_JSON(t[0].to_dict()), t[1], t[2])
    ),
    st.tuples(pg_positions, st.integers(0, 200), st.sampled_from(["0", "A", "x", "\u0663"])).map(
        lambda t: (lambda s, i, c: s[:i] + c + s[i:])(_POSITION_JSON(t[0].to_dict()), t[1], t[2])
    ),
    st.text(max_size=120),
)


@given(_near_pg)
def test_pg_position_sort_key_on_near_misses(text: str) -> None:
    # The C parser never accepts what the regular expression rejects, nor reads it differently.
    want = pg_position_key(text)
    assert pg_position_sort_key(text) == (None if want is None else want[0])
    if _C_PG_KEY is not None:
        got = _C_PG_KEY(_PG_JSON_HEAD, text)
        assert got is None or got == want[0]  # type: ignore[index]
