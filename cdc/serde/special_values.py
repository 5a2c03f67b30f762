"""Special values: canonical values with no Avro spelling, in ``cdc_special_values``.

Part of the serde's type layer. Two kinds of value do not fit their column's
Avro schema and travel as text in the envelope's ``cdc_special_values`` map
(see ``schemas/TYPES.md``); the field itself then holds null (or the type's
zero when NOT NULL), which is what Debezium's precise mode emits:

* a DECIMAL that is NaN/Infinity (``ColumnType.nan``), or an array holding
  one: the JSON of the value, Decimals as their text (:func:`special_text`);
* a multi-dimensional array (a list holding lists), or an array of arrays
  whose elements have a special value of their own: ``{"cdc.nested": ...}``,
  the nested lists with each element the base64 of its own Avro binary
  encoding, so every element type round-trips exactly (:func:`array_special`).

Encoding: :func:`cdc.serde.types.avro_type` sets ``AvroType.special`` from
these; decoding: :mod:`cdc.serde.decode` calls :func:`special_value` to restore
the canonical value. The row bytes themselves are not written here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from cdc.errors import SerializationError
from cdc.events import ColumnType, Kind

if TYPE_CHECKING:
    from cdc.serde.types import AvroType


def _has_special(v: Any) -> bool:
    if isinstance(v, Decimal):
        return not v.is_finite()
    if isinstance(v, list | tuple):
        return any(_has_special(x) for x in v)
    return False


def special_text(v: Any) -> str | None:
    """JSON of a value holding NaN/Infinity decimals (Decimals as their text), else None."""
    if not _has_special(v):
        return None
    return json.dumps(v, default=str, ensure_ascii=False)


# The one key of the multi-dimensional array form in cdc_special_values. The
# decimal form is a JSON string or list, so a JSON object is this form.
NESTED_ARRAY_KEY: Final = "cdc.nested"


def array_special(el: AvroType) -> Callable[[Any], str | None]:
    """``AvroType.special`` of an array of ``el``: the nested form of a
    multi-dimensional value (or of one holding an element with a special value
    of its own, when the element is itself an array), the decimal form of a
    flat array holding NaN, else None."""
    element_special = el.special
    # A list inside the array is another dimension, unless the element type is
    # itself an array (a list is then one element).
    lists_nest = el.column_type.kind is not Kind.ARRAY

    def leaves(v: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        for x in v:
            if x is None:
                out.append(None)
            elif lists_nest and isinstance(x, list | tuple):
                out.append(leaves(x))
            else:
                text = None if element_special is None else element_special(x)
                if text is not None:  # e.g. a NaN decimal: its own special text
                    out.append({"special": text})
                else:
                    out.append(base64.b64encode(el.encode(x)).decode("ascii"))
        return out

    def nested(v: Sequence[Any]) -> str:
        return json.dumps({NESTED_ARRAY_KEY: leaves(v)}, separators=(",", ":"))

    def special(v: Any) -> str | None:
        if not isinstance(v, list | tuple):
            return None
        if lists_nest:
            if any(isinstance(x, list | tuple) for x in v):
                return nested(v)
            return None if element_special is None else special_text(v)
        if element_special is not None and any(
            x is not None and element_special(x) is not None for x in v
        ):
            return nested(v)
        return None

    return special


def special_value(text: str, ct: ColumnType) -> Any:
    """Inverse of the ``cdc_special_values`` JSON: the canonical value again."""
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            if ct.kind is not Kind.ARRAY or set(data) != {NESTED_ARRAY_KEY}:
                raise ValueError(f"a JSON object is the nested-array form ({NESTED_ARRAY_KEY!r})")
            element = _array_element(ct)
            return _nested_from_json(data[NESTED_ARRAY_KEY], element, _element_reader(element))
        return _decimals_from_json(data)
    except (ValueError, TypeError, InvalidOperation, SerializationError, RecursionError) as e:
        raise SerializationError(
            f"unreadable special value {text!r:.200} for {ct.kind}: {e}"
        ) from e


def _array_element(ct: ColumnType) -> ColumnType:
    return ct.element if ct.element is not None else ColumnType(Kind.STRING, native="text")


@lru_cache(maxsize=256)
def _element_reader(element: ColumnType) -> Callable[[bytes], Any]:
    """Avro binary of one ``element`` value -> its canonical value."""
    # Imported here: types imports this module, and reader -> envelope -> types.
    from cdc.serde.reader import compile_reader
    from cdc.serde.types import avro_type

    el = avro_type(element)
    read, _ = compile_reader(el.schema, {})
    convert = el.decode

    def value(b: bytes) -> Any:
        v = read(b)
        return v if convert is None else convert(v)

    return value


def _nested_from_json(v: Any, element: ColumnType, value: Callable[[bytes], Any]) -> list[Any]:
    if not isinstance(v, list):
        raise ValueError(f"expected a JSON list, got {type(v).__name__}")
    out: list[Any] = []
    for x in v:
        if x is None:
            out.append(None)
        elif isinstance(x, list) and element.kind is not Kind.ARRAY:
            out.append(_nested_from_json(x, element, value))
        elif isinstance(x, str):
            out.append(value(base64.b64decode(x, validate=True)))
        elif isinstance(x, dict) and set(x) == {"special"} and isinstance(x["special"], str):
            out.append(special_value(x["special"], element))
        else:
            raise ValueError(f"unexpected element {x!r:.80} in a nested array")
    return out


def _decimals_from_json(v: Any) -> Any:
    if isinstance(v, str):
        return Decimal(v)
    if isinstance(v, list):
        return [_decimals_from_json(x) for x in v]
    return v
