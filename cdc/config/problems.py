"""Configuration problems as operators read them: key path, what is wrong, how to fix.

pydantic's own messages are written for programmers and, worse, quote the
offending input, which may be a password. Here each validation error is
rewritten from its type, location and the model's field metadata (allowed
values, examples, the key a typo probably meant); the input is never read
from the error, so no secret can be echoed.
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from cdc.errors import ConfigError

Loc = tuple[str | int, ...]


def format_loc(loc: Loc) -> str:
    """``("sources", 0, "connection", "port")`` -> ``sources[0].connection.port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong (or suspicious, if ``warning``) in a configuration."""

    loc: Loc
    what: str
    hint: str | None = None
    origin: str | None = None  # "pipeline.yaml:12" or "env CDC_..."
    warning: bool = False

    @property
    def path(self) -> str:
        return format_loc(self.loc)

    def __str__(self) -> str:
        text = f"{self.path}: {self.what}" if self.loc else self.what
        if self.hint:
            text += f" — hint: {self.hint}"
        if self.origin:
            text += f" ({self.origin})"
        return text


class ConfigValidationError(ConfigError):
    """The configuration has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: Sequence[ConfigProblem], *, source: str) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"invalid configuration ({source}): {n} problem{'s' if n != 1 else ''}\n{lines}",
            hint="fix each key listed; docs/CONFIG.md and `cdc config schema` describe every key",
        )


# --------------------------------------------------------------------------- model walking


def type_members(tp: Any) -> list[tuple[Any, str | None]]:
    """The alternatives of a (possibly Annotated, possibly tagged) type, with their tags."""
    if get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        tag = next((m.tag for m in meta if isinstance(m, Tag)), None)
        return [(t, tag or inner) for t, inner in type_members(base)]
    if get_origin(tp) in (Union, types.UnionType):
        return [m for arg in get_args(tp) for m in type_members(arg)]
    return [(tp, None)]


@dataclass(frozen=True, slots=True)
class _Resolved:
    loc: Loc  # as the user wrote it: discriminator tags removed
    target: Any  # the type at the end of loc (None if unknown)
    field: FieldInfo | None  # the field at (or holding) the end of loc


def resolve(root: type[BaseModel], loc: Iterable[str | int]) -> _Resolved:
    """Follow an error location through the model tree, dropping union tags."""
    tp: Any = root
    clean: list[str | int] = []
    field: FieldInfo | None = None
    for part in loc:
        members = [(t, tag) for t, tag in type_members(tp) if t is not type(None)]
        tagged = [t for t, tag in members if tag is not None and tag == part]
        if tagged:
            tp = tagged[0]
            continue
        clean.append(part)
        nxt: Any = None
        for t, _ in members:
            origin = get_origin(t)
            if isinstance(t, type) and issubclass(t, BaseModel):
                if isinstance(part, str) and part in t.model_fields:
                    field = t.model_fields[part]
                    nxt = field.annotation
                    break
            elif origin in (tuple, list) and isinstance(part, int):
                nxt = get_args(t)[0]
                break
            elif origin is dict and isinstance(part, str):
                nxt = get_args(t)[1]
                break
        tp = nxt
    return _Resolved(tuple(clean), tp, field)


def _model_in(tp: Any) -> type[BaseModel] | None:
    for t, _ in type_members(tp):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _example(field: FieldInfo | None) -> str | None:
    if field is None or not field.examples:
        return None
    ex = field.examples[0]
    return f"e.g. {ex if isinstance(ex, str) else json.dumps(ex)}"


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(data, Mapping):
            if part not in data:
                return None
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


# --------------------------------------------------------------------------- translation

_STRING_HINT = (
    "quote the value: YAML reads unquoted numbers, dates, yes/no and on/off as other types, "
    'e.g. "0123"'
)


def _join(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text or None


def translate(
    err: ErrorDetails,
    root: type[BaseModel],
    data: Any,
) -> tuple[Loc, str, str | None]:
    """One pydantic error as (key path, what is wrong, hint)."""
    kind = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    res = resolve(root, err["loc"])
    loc = res.loc
    example = _example(res.field)

    if kind == "cdc_invalid":
        return loc, err["msg"], ctx.get("hint")
    if kind == "unknown_kind":
        known = ctx.get("known", "")
        item = _value_at(data, loc)
        value = item.get("kind") if isinstance(item, Mapping) else None
        if value is None:
            return (
                (*loc, "kind"),
                "missing required key",
                f"required; add it: one of {known or '(none)'}",
            )
        close = difflib.get_close_matches(str(value), known.split(", "), n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        return (
            (*loc, "kind"),
            "unknown kind",
            f"{guess}known kinds: {known}"
            if known
            else "no connectors are registered; install cdc (pip install -e .)",
        )
    if kind == "missing":
        return loc, "missing required key", _join("required; add it", example)
    if kind == "extra_forbidden":
        model = _model_in(resolve(root, err["loc"][:-1]).target)
        allowed = sorted(model.model_fields) if model else []
        key = str(loc[-1]) if loc else ""
        removed = getattr(model, "removed_keys", {}) if model else {}
        if key in removed:
            return loc, "no longer a configuration key", removed[key]
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            return loc, "unknown key", f"did you mean '{close[0]}'?"
        return loc, "unknown key", f"allowed keys: {', '.join(allowed)}" if allowed else None
    if kind in ("literal_error", "enum"):
        return loc, "invalid value", f"use one of {ctx.get('expected', '?')}"
    if kind == "string_type":
        return loc, "expected a string", _STRING_HINT
    if kind.startswith("int_"):
        return loc, "expected a whole number", example
    if kind.startswith("float_"):
        return loc, "expected a number", example
    if kind.startswith("bool_"):
        return loc, "expected true or false", None
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return loc, "expected a mapping of keys to values", example
    if kind in ("list_type", "tuple_type", "set_type", "iterable_type", "sequence_str"):
        return loc, "expected a list", _join("write [a, b] or one '- item' per line", example)
    if kind == "string_pattern_mismatch":
        return loc, "invalid format", _join(f"must match {ctx.get('pattern', '?')}", example)
    if kind == "value_error":
        return loc, err["msg"].removeprefix("Value error, "), example
    if kind in ("path_type",):
        return loc, "expected a file path", example
    return loc, err["msg"], example


def problems_from(
    exc: ValidationError,
    root: type[BaseModel],
    data: Any,
    origin_of: Callable[[Loc], str | None] = lambda _: None,
) -> list[ConfigProblem]:
    """Every error of a failed validation as a ConfigProblem (inputs never included)."""
    out: list[ConfigProblem] = []
    seen: set[tuple[Loc, str]] = set()
    for err in exc.errors(include_url=False, include_input=False, include_context=True):
        loc, what, hint = translate(err, root, data)
        if (loc, what) in seen:
            continue
        seen.add((loc, what))
        out.append(ConfigProblem(loc, what, hint, origin_of(loc)))
    return out
