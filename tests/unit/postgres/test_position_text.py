"""The PostgreSQL position text's shortcuts agree with the positions they stand for."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.positions import parse_position, position_from_dict, position_json
from connectors.mysql.position import BinlogFile, MySqlPosition
from connectors.postgres.position import Lsn, PgPosition
from connectors.postgres.position_text import (
    C_TEXT_SORT_KEY,
    CODEC,
    JSON_HEAD,
    format_position,
    tail,
    text_key,
    text_sort_key,
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
    text = position_json(p.to_dict())
    got = text_key(text)
    assert got is not None
    assert got == (p.sort_key(), text)
    back = parse_position(text)
    assert back == p and isinstance(back, PgPosition) and back.last_in_tx == p.last_in_tx


def test_other_texts_take_the_generic_parser() -> None:
    my = MySqlPosition(BinlogFile("mysql-bin.000003"), 1234, 5)
    text = position_json(my.to_dict())
    assert text_key(text) is None
    assert parse_position(text) == my
    # Same meaning, other spelling (spaces): not the fast form, still the same position.
    p = PgPosition(Lsn(99), 3)
    spaced = json.dumps(p.to_dict())
    assert text_key(spaced) is None
    assert parse_position(spaced) == p


@given(pg_positions)
def test_pg_position_sort_key_agrees_with_the_regular_expression(p: PgPosition) -> None:
    text = position_json(p.to_dict())
    assert text_sort_key(text) == p.sort_key()
    if C_TEXT_SORT_KEY is not None and p.index < 10**18:
        assert C_TEXT_SORT_KEY(JSON_HEAD, text) == p.sort_key()


_near_pg = st.one_of(
    # Valid texts with one character replaced, dropped or inserted.
    st.tuples(pg_positions, st.integers(0, 200), st.sampled_from(["", "0", "a", "F", "G", " ", "}", "\u0663", "\"", "9" * 20])).map(
        lambda t: (lambda s, i, c: s[:i] + c + s[i + 1:])(position_json(t[0].to_dict()), t[1], t[2])
    ),
    st.tuples(pg_positions, st.integers(0, 200), st.sampled_from(["0", "A", "x", "\u0663"])).map(
        lambda t: (lambda s, i, c: s[:i] + c + s[i:])(position_json(t[0].to_dict()), t[1], t[2])
    ),
    st.text(max_size=120),
)


@given(_near_pg)
def test_pg_position_sort_key_on_near_misses(text: str) -> None:
    # The C parser never accepts what the regular expression rejects, nor reads it differently.
    want = text_key(text)
    assert text_sort_key(text) == (None if want is None else want[0])
    if C_TEXT_SORT_KEY is not None:
        got = C_TEXT_SORT_KEY(JSON_HEAD, text)
        assert got is None or got == want[0]  # type: ignore[index]


def test_position_fast_paths_are_active() -> None:
    """If position.py changes its JSON, the fast forms switch off (the generic path stays
    correct); this test makes the lost speed visible."""
    assert JSON_HEAD is not None
    assert text_key(position_json(PgPosition(Lsn(1), 2).to_dict())) is not None


@given(pg_positions)
def test_the_codec_parses_its_text_as_the_generic_path_does(p: PgPosition) -> None:
    text = position_json(p.to_dict())
    fast = CODEC.parse_text(text)
    assert fast == p and fast is not None and fast.last_in_tx == p.last_in_tx
    assert CODEC.text_sort_key(text) == p.sort_key()
    assert CODEC.parse_text(json.dumps(p.to_dict())) is None  # another spelling: generic path


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**62), st.booleans(), st.booleans())
def test_the_formatter_writes_to_dicts_json(lsn: int, index: int, snapshot: bool, last: bool) -> None:
    pos = PgPosition(Lsn(lsn), index, snapshot, last)
    assert JSON_HEAD is not None
    text = format_position(JSON_HEAD, str(pos.lsn), pos)
    assert text == json.dumps(pos.to_dict(), separators=(",", ":"))
    assert text == f'{JSON_HEAD}{pos.lsn}","index":{index}{tail(snapshot, last)}'
    back = position_from_dict(json.loads(text))
    assert back == pos and back.last_in_tx == pos.last_in_tx
