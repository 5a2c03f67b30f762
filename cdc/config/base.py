"""Building blocks every config model shares: strictness, names, secrets, derived defaults.

Every model forbids unknown keys (a misspelt key must fail loudly, not be
silently ignored) and is frozen (the configuration is read once and shared by
threads). Secrets are ``SecretStr`` so they never reach a repr, a log line or
an error message; validation errors never carry the offending input for the
same reason. Defaults built from an entry's name (a topic prefix, a consumer
group) are declared with :func:`derived` and filled by :func:`fill_derived`.
Every config model, the engine's and the connectors'
(``connectors/<db>/config.py``), builds on these pieces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

REDACTED = "**********"

#: Value of a field whose default is computed from other fields (the source or
#: sink name) by a before-validator; typed ``Any`` so the field keeps its real
#: type (always set after validation) without a type-checker complaint.
DERIVED: Any = None

NAME_RE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_TOPIC_PATTERN_RE = re.compile(r"^[A-Za-z0-9._*?-]{1,249}$")
NAME_MAX = 48


def invalid(what: str, hint: str) -> PydanticCustomError:
    """A validation error whose hint reaches the operator next to the key path.

    The loader turns ``ctx["hint"]`` into the "— hint: ..." part of the
    message. Never put the offending value in ``what`` if it may be a secret.
    """
    return PydanticCustomError("cdc_invalid", what, {"hint": hint})


def _check_name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise invalid(
            "not a valid name",
            "use lower-case letters, digits and single underscores, e.g. pg_main",
        )
    if len(value) > NAME_MAX:
        raise invalid(
            f"name is {len(value)} characters long",
            f"use at most {NAME_MAX}: it becomes part of slot, group and topic names",
        )
    return value


def _check_topic(value: str) -> str:
    if not _TOPIC_RE.fullmatch(value):
        raise invalid(
            "not a valid Kafka topic name",
            "use 1-249 characters from letters, digits, '.', '_' and '-'",
        )
    return value


def _check_topic_pattern(value: str) -> str:
    if not _TOPIC_PATTERN_RE.fullmatch(value):
        raise invalid(
            "not a topic name or pattern",
            "use topic characters (letters, digits, '.', '_', '-') with '*' and '?' wildcards, "
            "e.g. pg_main.public.*; for anything fancier use topic_regex",
        )
    return value


def _scalar_to_str(value: Any) -> Any:
    """Let free-form string maps take YAML scalars as users naturally write them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


#: A source or sink name: unique, lower-case, used in topic/slot/group names.
Name = Annotated[str, AfterValidator(_check_name)]
#: A Kafka topic name (or a prefix of one).
TopicName = Annotated[str, AfterValidator(_check_topic)]
#: A topic name with optional ``*``/``?`` wildcards.
TopicPattern = Annotated[str, AfterValidator(_check_topic_pattern)]
#: A string in a free-form ``{str: str}`` map; numbers and booleans are accepted.
ScalarStr = Annotated[str, BeforeValidator(_scalar_to_str)]


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context
    if isinstance(ctx, Mapping) and isinstance(ctx.get("base_dir"), Path):
        return ctx["base_dir"]  # type: ignore[no-any-return]
    return Path.cwd()


def _resolve(path: Path, info: ValidationInfo) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else _base_dir(info) / path


def _read_secret(path: Path) -> str:
    """A secret file's content without the trailing newline editors and ``echo`` add."""
    text = path.read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def _check_secret_file(value: Path, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    try:
        content = _read_secret(path)
    except OSError as e:
        raise invalid(
            f"cannot read secret file '{path}': {e.strerror or type(e).__name__}",
            "check the path (relative paths are relative to the config file) and that "
            "the cdc process may read it",
        ) from None
    except UnicodeDecodeError:
        raise invalid(
            f"secret file '{path}' is not UTF-8 text", "store the secret as text"
        ) from None
    if not content:
        raise invalid(f"secret file '{path}' is empty", "write the secret into it")
    return path


#: Path of a file holding a secret (Docker/Kubernetes secrets); relative to the
#: config file. The trailing newline is stripped.
SecretFile = Annotated[Path, AfterValidator(_check_secret_file)]


class ConfigModel(BaseModel):
    """Base of every config model: unknown keys are errors, instances are frozen.

    ``secret_files`` maps a ``<secret>_file`` field to the secret field it
    fills: the file is read during validation so the rest of the program only
    ever sees the ``SecretStr``.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        validate_default=False,
    )

    secret_files: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _load_secret_files(cls, data: Any, info: ValidationInfo) -> Any:
        if not cls.secret_files or not isinstance(data, Mapping):
            return data
        out = dict(data)
        for file_key, secret_key in cls.secret_files.items():
            raw = out.get(file_key)
            if raw is None:
                continue
            if out.get(secret_key) is not None:
                raise invalid(
                    f"both {secret_key} and {file_key} are set",
                    f"keep one: {file_key} for a secret mounted as a file, {secret_key} otherwise",
                )
            if not isinstance(raw, str | Path):
                continue  # the field's own validation reports the type
            try:
                content = _read_secret(_resolve(Path(raw), info))
            except (OSError, UnicodeDecodeError):
                continue  # the SecretFile validator reports it with the key path
            if content:
                out[secret_key] = content
        return out


class RedactedDict(dict[str, Any]):
    """Driver keyword arguments that hide secrets when printed or logged.

    Pass it on with ``**kwargs``; a copy made with ``dict(...)`` loses the
    protection, so don't.
    """

    SECRET_KEYS: ClassVar[frozenset[str]] = frozenset(
        {
            "password",
            "passwd",
            "dsn",
            "conninfo",
            "sasl.password",
            "ssl.key.password",
            "basic.auth.user.info",
        }
    )

    def __init__(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        *,
        secret_keys: Iterable[str] = (),
    ) -> None:
        super().__init__(items)
        self._secret_keys = frozenset(secret_keys) | self.SECRET_KEYS

    def is_secret(self, key: str) -> bool:
        k = key.lower()
        return k in self._secret_keys or "password" in k or "secret" in k

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{k!r}: {REDACTED!r}" if self.is_secret(k) and v is not None else f"{k!r}: {v!r}"
            for k, v in self.items()
        )
        return "{" + inner + "}"

    __str__ = __repr__


# --------------------------------------------------------------------------- derived defaults


class DerivedDefault:
    """JSON-schema hook for a default built from the entry's name.

    The schema then shows the rule (``x-default``, and in the description)
    instead of the placeholder ``null`` the model uses until validation.
    """

    def __init__(self, template: str) -> None:
        self.template = template

    def __call__(self, schema: dict[str, Any]) -> None:
        schema.pop("default", None)
        schema["x-default"] = self.template
        schema["description"] = (
            f"{schema.get('description', '')} Default: `{self.template}`.".strip()
        )


def derived(template: str, description: str, **kwargs: Any) -> Any:
    """A field whose default is built from the owner's name (see ``derived_defaults``)."""
    return Field(
        default=DERIVED,
        description=description,
        json_schema_extra=DerivedDefault(template),
        **kwargs,
    )


def fill_derived(defaults: Mapping[str, str], data: Any) -> Any:
    """``data`` with each ``derived_defaults`` path that is unset filled from its ``name``."""
    if not isinstance(data, Mapping):
        return data
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return data  # the name's own error is enough; don't derive from a bad one
    out = dict(data)
    for path, template in defaults.items():
        *parents, leaf = path.split(".")
        node: dict[str, Any] = out
        for p in parents:
            child = node.get(p)
            if child is None:
                child = {}
            elif not isinstance(child, Mapping):
                break  # its own validation reports it
            child = dict(child)
            node[p] = child
            node = child
        else:
            if node.get(leaf) is None:
                node[leaf] = template.format(name=name)
    return out
