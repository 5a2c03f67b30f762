"""The MySQL source writer's spliced bytes are those of the plain writer (per field, no cache)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import connectors.mysql.sourceblock as mysql_block
from cdc.events import SourceInfo, TableId
from cdc.positions import position_json
from cdc.serde import sourceblock
from cdc.serde.binary import INT32_MAX, NULL_BRANCH, VALUE_BRANCH, zigzag
from cdc.serde.binary import string as avro_string
from connectors.mysql.position import BinlogFile, GtidSet, MariaGtid, MySqlPosition

TABLE = TableId("db", None, "t\u00e9")


def plain(src: SourceInfo) -> bytes:
    """Every field written from the event alone (the reference of the writer's caches)."""
    pos = src.position
    assert isinstance(pos, MySqlPosition)
    head, tail = sourceblock.CommonFields(TABLE).around(src)
    own = b"".join((
        VALUE_BRANCH + avro_string(TABLE.table), zigzag(pos.server_id),
        NULL_BRANCH if pos.gtid is None else VALUE_BRANCH + avro_string(pos.gtid),
        avro_string(pos.file.name), zigzag(pos.pos), zigzag(min(pos.index, INT32_MAX)),
        NULL_BRANCH, NULL_BRANCH,
    ))  # fmt: skip
    return head + own + sourceblock.position_field(position_json(pos.to_dict())) + tail


transactions = st.lists(
    st.tuples(
        st.integers(1, 6),  # events
        st.sampled_from([0, 1, 63, 64, 1022, 1023, 1024, 2**31, 2**40]),  # first index
        st.booleans(),  # snapshot
        st.integers(0, 2**50),  # vts
        st.sampled_from(["mysql-bin.000001", "b\u00efn\".000002", "x\\y.000003"]),
        st.none() | st.text(max_size=8),  # gtid
    ),
    min_size=1,
    max_size=4,
)


@pytest.mark.parametrize("native", [True, False])
@settings(deadline=None)
@given(transactions)
def test_writer_bytes_are_the_plain_bytes(
    native: bool, txs: list[tuple[int, int, bool, int, str, str | None]]
) -> None:
    space = vars(mysql_block)
    saved = space["source_with_index"]
    if not native:  # the Python reference of the splice
        space["source_with_index"] = sourceblock._source_with_index
    try:
        writer = mysql_block.MySqlSourceWriter(TABLE)
        gset = GtidSet.parse("0-1-7")
        for k, (n, first, snapshot, vts, file, gtid) in enumerate(txs):
            after = gset.with_mariadb(MariaGtid(0, 1, 8 + k))
            for i in range(first, first + n):
                last = i == first + n - 1
                pos = MySqlPosition(BinlogFile(file), 4 + k, i, after if last else gset, gtid, 1,
                                    snapshot, last, vts)  # fmt: skip
                src = SourceInfo("mariadb", "src", "1.0", "10.11", pos, 1000 * k, gtid, "false")
                assert writer.encode(src) == plain(src)
            gset = after
    finally:
        space["source_with_index"] = saved
