"""The MySQL codec's fast text forms agree with the generic JSON path (cdc.spi.PositionCodec)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.errors import PositionError
from cdc.positions import position_json
from connectors.mysql import position as position_module
from connectors.mysql.position import CODEC, BinlogFile, GtidSet, MariaGtid, MySqlPosition

names = st.text(min_size=0, max_size=12).map(lambda s: s + ".") | st.sampled_from(
    ["mysql-bin.", "mariadb-bin.", "bin\"log.", "b\\in.", "bïn\n.", ""]
)
files = st.builds(lambda n, k: BinlogFile(f"{n}{k:06d}"), names, st.integers(0, 10**9))
mariadb_sets = st.lists(
    st.builds(MariaGtid, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)),
    max_size=3,
).map(lambda gs: GtidSet(mariadb=tuple(sorted({g.domain: g for g in gs}.values()))))
mysql_sets = st.just(GtidSet.parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,4e11fa47-71ca-11e1-9e33-c80aa9429562:9"))
positions = st.builds(
    MySqlPosition,
    file=files,
    pos=st.integers(0, 2**64 - 1),
    index=st.integers(0, 2**40),
    gtid_set=mariadb_sets | mysql_sets,
    gtid=st.none() | st.text(max_size=40),
    server_id=st.integers(0, 2**32 - 1),
    snapshot=st.booleans(),
    last_in_tx=st.booleans(),
    vts=st.integers(0, 2**50),
)


@given(positions)
def test_fast_forms_agree_with_the_generic_path(p: MySqlPosition) -> None:
    text = position_json(p.to_dict())
    generic = MySqlPosition.from_dict(json.loads(text))
    fast = CODEC.parse_text(text)
    if fast is not None:  # None: the generic path decides (escapes in a name, ...)
        assert fast == generic and fast.to_dict() == generic.to_dict()
    key = CODEC.text_sort_key(text)
    if key is not None:
        assert key == generic.sort_key()


def test_plain_positions_take_the_fast_path() -> None:
    p = MySqlPosition(BinlogFile("mysql-bin.000042"), 1234, index=3,
                      gtid_set=GtidSet.parse("0-1-99"), gtid="0-1-99", server_id=1)
    text = position_json(p.to_dict())
    assert CODEC.parse_text(text) == p
    assert CODEC.text_sort_key(text) == p.sort_key()


@given(st.text(max_size=300))
def test_hostile_texts_are_refused_or_agree(text: str) -> None:
    try:
        fast = CODEC.parse_text(text)
    except PositionError:  # a malformed GTID set: the generic path refuses it too
        fast = None
    key = CODEC.text_sort_key(text)
    if fast is not None:
        assert key == fast.sort_key()


def test_a_name_without_a_sequence_is_left_to_the_generic_path() -> None:
    text = ('{"v":1,"kind":"mysql","file":"binlog","pos":4,"index":0,"gtid_set":"","gtid":null,'
            '"server_id":0,"snapshot":false,"last_in_tx":true}')
    assert CODEC.parse_text(text) is None and CODEC.text_sort_key(text) is None


@given(positions, st.lists(st.integers(0, 2**40) | st.text(max_size=6), max_size=6))
def test_sort_keys_of_a_transactions_texts_agree(p: MySqlPosition, others: list[int | str]) -> None:
    """Texts differing from the last one only in their index (what a transaction's events
    are) reuse its file/pos/snapshot; any other middle goes back to the full match."""
    text = position_json(p.to_dict())
    head, _sep, rest = text.partition(f'"index":{p.index},')
    for other in others:
        t = f'{head}"index":{other},{rest}'
        key = CODEC.text_sort_key(t)
        try:
            generic = MySqlPosition.from_dict(json.loads(t))
        except (ValueError, TypeError, KeyError):
            continue  # not JSON: the sinks' generic path refuses it
        if key is not None:
            assert key == generic.sort_key()
        CODEC.text_sort_key(text)  # the original is the last matched again


# The C reader (_cposition.c) against the Python one it stands in for.
_C_KEY = position_module._C_KEY
_edits = st.tuples(st.integers(0, 400), st.sampled_from(
    ['"', "\\", "0", "9", ".", ",", "}", "x", "é", "", "18446744073709551616", "null", "true"]))


@pytest.mark.skipif(_C_KEY is None, reason="the C extension is not built")
@given(positions, st.lists(_edits, max_size=3), st.integers(0, 10**20))
def test_the_c_reader_agrees_with_the_python_reader(
    p: MySqlPosition, edits: list[tuple[int, str]], big: int
) -> None:
    text = position_json(p.to_dict())
    assert _C_KEY is not None
    texts = [text, text.replace(f'"pos":{p.pos},', f'"pos":{big},'),
             text.replace(f'"index":{p.index},', f'"index":{big},'), text + " ", text[:-1]]
    for at, piece in edits:  # hostile variants: a piece put in, or a character taken out
        at %= len(text) + 1
        texts.append(text[:at] + piece + text[at + (piece == ""):])
    for t in texts:
        c = _C_KEY(t)
        py = position_module._py_fast_key(t)
        assert c is None or c == py, (t, c, py)
    py = position_module._py_fast_key(text)
    if py is not None and text.isascii() and max(py[0], p.pos, p.index) < 10**18:
        assert _C_KEY(text) == py  # (the plain form is the C reader's too)


@pytest.mark.skipif(_C_KEY is None, reason="the C extension is not built")
@given(st.text(max_size=300))
def test_the_c_reader_takes_only_what_the_python_reader_takes(text: str) -> None:
    assert _C_KEY is not None
    c = _C_KEY(text)
    assert c is None or c == position_module._py_fast_key(text)
