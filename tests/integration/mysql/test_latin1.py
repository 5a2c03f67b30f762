"""MySQL's latin1 on the real MariaDB source: every byte value, snapshot and stream
(issue #11, defect 6).

MySQL's latin1 is cp1252 except that the five bytes cp1252 leaves undefined (0x81,
0x8D, 0x8F, 0x90, 0x9D) are stored and converted to U+0081... The binlog carries
the stored bytes; before the fix cdc's row-image decoders read them as strict cp1252
and stopped the stream. The expected text is what MariaDB itself returns for the
column converted to utf8mb4, for every binlog decoder and for the snapshot.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from cdc.events import Op
from connectors.mysql.source import MySqlSource, rowimage
from tests.integration.mysql.conftest import drain

pytestmark = pytest.mark.integration

DECODERS = pytest.mark.parametrize("decoder", ["native", "rowimage", "library"])
ALL = bytes(range(256))


def _decoder(decoder: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    if decoder == "native" and not rowimage.native_available():
        pytest.skip("_crowimage not built")
    if decoder == "rowimage":
        monkeypatch.setattr(rowimage, "_native", None)
    return decoder != "library"


@DECODERS
def test_every_latin1_byte_reads_as_mariadb_converts_it(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    unique_name: str,
    decoder: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast_decode = _decoder(decoder, monkeypatch)
    t = unique_name
    src = make_source(include=[f"cdc_source.{t}"], fast_decode=fast_decode)
    start = src.reader.current_position()
    sql(
        f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(300) CHARACTER SET latin1, "
        f"c CHAR(255) CHARACTER SET latin1, tx TEXT CHARACTER SET latin1) "
        "DEFAULT CHARSET=utf8mb4"
    )
    # the stored bytes, whatever the connection's character set: hex literals are binary
    sql(f"INSERT INTO {t} VALUES (1, X'{ALL.hex()}', X'{ALL[1:].hex()}', X'{ALL.hex()}')")
    stored = sql(f"SELECT HEX(v), HEX(c), HEX(tx) FROM {t}")[0]
    assert stored == (ALL.hex().upper(), ALL[1:].hex().upper(), ALL.hex().upper())
    [want] = sql(
        f"SELECT CONVERT(v USING utf8mb4) AS v, CONVERT(c USING utf8mb4) AS c, "
        f"CONVERT(tx USING utf8mb4) AS tx FROM {t}"
    )
    expected = dict(zip(("v", "c", "tx"), want, strict=True))
    assert len(expected["v"]) == 256  # one character per byte, none lost
    assert expected["v"][0x81] == "\x81" and expected["v"][0x80] == "\u20ac"

    [event] = drain(src.stream(start), lambda ev: len(ev) >= 1)
    assert event.op is Op.CREATE and event.after is not None
    assert {k: event.after[k] for k in expected} == expected

    _, rows = src.snapshot(None)
    [snap] = list(rows)
    assert snap.after is not None
    assert {k: snap.after[k] for k in expected} == expected


def test_a_latin1_connection_snapshots_every_byte_too(
    source_kwargs: dict[str, Any], sql: Callable[..., Any], unique_name: str
) -> None:
    """A source configured with ``charset: latin1``: PyMySQL decodes such a connection
    as strict cp1252 and raised on 0x81 in the snapshot; cdc reads it as MySQL does."""
    t = unique_name
    sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(300) CHARACTER SET latin1) "
        "DEFAULT CHARSET=utf8mb4")
    sql(f"INSERT INTO {t} VALUES (1, X'{ALL.hex()}')")
    [(want,)] = sql(f"SELECT CONVERT(v USING utf8mb4) FROM {t}")
    src = MySqlSource({**source_kwargs, "charset": "latin1"}, name="it_latin1",
                      include=[f"cdc_source.{t}"], server_id=random.randint(100_000, 4_000_000_000))
    try:
        _, rows = src.snapshot(None)
        [snap] = list(rows)
        assert snap.after is not None and snap.after["v"] == want
    finally:
        src.close()
