"""MySQL's ``latin1`` as a Python codec (``cdc_mysql_latin1``), registered on import.

MySQL's latin1 is cp1252 except for the five bytes cp1252 leaves undefined
(0x81, 0x8D, 0x8F, 0x90, 0x9D), which MySQL stores and reads back as U+0081...
PyMySQL and mysql-replication decode latin1 as strict cp1252 and stop at those
bytes; the source's connections (:mod:`connectors.mysql.source.server`), the
library's row events (:mod:`connectors.mysql.source.library`) and cdc's row-image
decoders (:mod:`connectors.mysql.source.rowimage`, and the C program, which takes
:data:`MYSQL_LATIN1_TABLE`) use this codec instead.
"""

from __future__ import annotations

import codecs
from typing import Final

__all__ = ["MYSQL_LATIN1", "MYSQL_LATIN1_TABLE"]


def _mysql_latin1_table() -> str:
    """MySQL's ``latin1``: cp1252, except that the five bytes cp1252 leaves undefined
    (0x81, 0x8D, 0x8F, 0x90, 0x9D) are stored and read back as U+0081... (what the
    server returns for them converted to utf8mb4)."""
    chars = []
    for b in range(256):
        try:
            chars.append(bytes([b]).decode("cp1252"))
        except UnicodeDecodeError:
            chars.append(chr(b))
    return "".join(chars)


#: the decoding table of MySQL's latin1, byte -> character (also used by the C decoder)
MYSQL_LATIN1_TABLE: Final = _mysql_latin1_table()
MYSQL_LATIN1: Final = "cdc_mysql_latin1"  # its Python codec name, registered below
_LATIN1_ENCODE: Final = codecs.charmap_build(MYSQL_LATIN1_TABLE)


def _latin1_codec(name: str) -> codecs.CodecInfo | None:
    if name != MYSQL_LATIN1:
        return None
    return codecs.CodecInfo(
        name=MYSQL_LATIN1,
        encode=lambda s, errors="strict": codecs.charmap_encode(s, errors, _LATIN1_ENCODE),
        decode=lambda b, errors="strict": codecs.charmap_decode(b, errors, MYSQL_LATIN1_TABLE),
    )


codecs.register(_latin1_codec)
