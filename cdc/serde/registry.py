"""Schema registry clients: the Confluent REST API over HTTP, and an in-memory one.

We run Apicurio Registry's Confluent-compatible API (``<base>/apis/ccompat/v7``);
Confluent's own registry speaks the same protocol. The client is plain HTTP
(stdlib ``urllib``) so that every call has a bounded time: a registry that
does not answer fails with :class:`~cdc.errors.UnreachableError` naming the
URL within ``deadline`` seconds, instead of blocking a source forever.

Lookups are cached both ways (subject+schema -> id, id -> schema text): a
running pipeline talks to the registry once per table schema version.

An incompatible schema change fails with :class:`~cdc.errors.SchemaError`
naming the subject and the offending fields. Confluent explains incompatibility
through ``?verbose=true``; Apicurio does not, so the client also diffs the
latest registered schema against the new one with Avro's resolution rules
(:func:`backward_incompatibilities`).

:class:`RegistryClient` is what sources and sinks use (built from the
``schema_registry`` config by ``cdc.runtime.pipeline`` and ``cdc.sink.cli``,
called by :class:`cdc.serde.AvroSerde`); :class:`InMemorySchemaRegistry`, with
the same compatibility rule, serves unit tests that need no server. Neither
builds or encodes schemas (:mod:`cdc.serde.envelope`, :mod:`cdc.serde.encode`).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from threading import Lock
from typing import Any, Final, Protocol, runtime_checkable

from cdc.errors import SchemaError, UnreachableError
from cdc.serde.envelope import full_name, named_types

log = logging.getLogger(__name__)

_CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"


@runtime_checkable
class SchemaRegistry(Protocol):
    """What the serde needs from a registry."""

    def register(self, subject: str, schema: str) -> int:
        """The id of ``schema`` under ``subject``, registering a new version if needed."""

    def get_schema(self, schema_id: int) -> str:
        """The schema text registered under ``schema_id``."""


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    subject: str
    version: int
    schema_id: int
    schema: str


# --------------------------------------------------------------------------- compatibility

_PROMOTIONS: Final[Mapping[str, frozenset[str]]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


def backward_incompatibilities(old: Any, new: Any) -> list[str]:
    """Why data written with ``old`` cannot be read with ``new`` (empty: it can).

    Avro's schema resolution with ``old`` as writer and ``new`` as reader,
    reduced to what names a field: ``Value.amount: int is now string``.
    """
    if isinstance(old, str):
        old = json.loads(old)
    if isinstance(new, str):
        new = json.loads(new)
    checker = _Resolution(named_types(old), named_types(new))
    checker.check(old, new, "", None, None)
    return list(dict.fromkeys(checker.problems))  # de-duplicated, in order


class _Resolution:
    def __init__(self, wnamed: Mapping[str, Any], rnamed: Mapping[str, Any]) -> None:
        self.wnamed = wnamed
        self.rnamed = rnamed
        self.problems: list[str] = []
        self._done: set[tuple[str, str]] = set()

    @staticmethod
    def _resolve(t: Any, named: Mapping[str, Any], ns: str | None) -> Any:
        if isinstance(t, str):
            if ns and "." not in t and f"{ns}.{t}" in named:
                return named[f"{ns}.{t}"]
            if t in named:
                return named[t]
        return t

    @staticmethod
    def _kind(t: Any) -> str:
        if isinstance(t, list):
            return "union"
        if isinstance(t, dict):
            inner = t.get("type")
            return inner if isinstance(inner, str) else _Resolution._kind(inner)
        return str(t)

    def branch_for(self, w: Any, branches: list[Any], wns: str | None, rns: str | None) -> Any:
        """The reader union branch Avro resolution picks for writer type ``w``, or None.

        The first branch of the same type (named types: the same name) wins,
        else the first the writer's type promotes to.
        """
        w = self._resolve(w, self.wnamed, wns)
        wk = self._kind(w)
        resolved = [self._resolve(b, self.rnamed, rns) for b in branches]
        for b in resolved:
            if self._kind(b) == wk:
                if wk not in ("record", "error", "enum", "fixed"):
                    return b
                if (
                    str(b.get("name", "")).rpartition(".")[2]
                    == str(w.get("name", "")).rpartition(".")[2]
                ):
                    return b
        for b in resolved:
            if self._kind(b) in _PROMOTIONS.get(wk, frozenset()):
                return b
        return None

    def check(self, w: Any, r: Any, path: str, wns: str | None, rns: str | None) -> None:
        w = self._resolve(w, self.wnamed, wns)
        r = self._resolve(r, self.rnamed, rns)
        if isinstance(w, dict) and isinstance(w.get("type"), dict | list):
            w = w["type"]
        if isinstance(r, dict) and isinstance(r.get("type"), dict | list):
            r = r["type"]
        wk, rk = self._kind(w), self._kind(r)
        where = path or "schema"
        if wk == "union":
            for branch in w:
                self.check(branch, r, path, wns, rns)
            return
        if rk == "union":
            branch = self.branch_for(w, r, wns, rns)
            if branch is None:
                self.problems.append(f"{where}: {_describe(w)} is now {_describe(r)}")
            else:
                self.check(w, branch, path, wns, rns)
            return
        if wk != rk:
            if rk not in _PROMOTIONS.get(wk, frozenset()):
                self.problems.append(f"{where}: {_describe(w)} is now {_describe(r)}")
            return
        if wk in ("record", "error"):
            wfull, rfull = full_name(w, wns), full_name(r, rns)
            if (wfull, rfull) in self._done:
                return
            self._done.add((wfull, rfull))
            short = rfull.rpartition(".")[2]
            wfields = {f["name"]: f for f in w.get("fields", ())}
            for rf in r.get("fields", ()):
                names = [rf["name"], *rf.get("aliases", ())]
                wf = next((wfields[n] for n in names if n in wfields), None)
                fpath = f"{short}.{rf['name']}"
                if wf is None:
                    if "default" not in rf:
                        self.problems.append(f"{fpath}: added without a default")
                    continue
                self.check(
                    wf["type"], rf["type"], fpath,
                    wfull.rpartition(".")[0] or None, rfull.rpartition(".")[0] or None,
                )  # fmt: skip
        elif wk == "enum":
            gone = set(w.get("symbols", ())) - set(r.get("symbols", ()))
            if gone and "default" not in r:
                self.problems.append(f"{where}: enum symbols {sorted(gone)} removed")
        elif wk == "fixed":
            if w.get("size") != r.get("size"):
                self.problems.append(f"{where}: fixed size {w.get('size')} is now {r.get('size')}")
        elif wk == "array":
            self.check(w.get("items"), r.get("items"), f"{where}[]", wns, rns)
        elif wk == "map":
            self.check(w.get("values"), r.get("values"), f"{where}{{}}", wns, rns)


def _describe(t: Any) -> str:
    if isinstance(t, list):
        return "[" + ", ".join(_describe(x) for x in t) + "]"
    if isinstance(t, dict):
        kind = t.get("type")
        if kind in ("record", "enum", "fixed", "error"):
            return f"{kind} {t.get('name')}"
        name = t.get("connect.name") or t.get("logicalType")
        return f"{kind} ({name})" if name else str(kind)
    return str(t)


# --------------------------------------------------------------------------- HTTP client


class _Answer:
    __slots__ = ("body", "status")

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body

    def message(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("message", self.body))
        return str(self.body)

    def error_code(self) -> int | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error_code"), int):
            return int(self.body["error_code"])
        return None


class RegistryClient:
    """A Confluent-REST schema registry client with bounded time and caches.

    ``url`` is the API base (``http://host:port/apis/ccompat/v7`` for Apicurio,
    ``http://host:8081`` for Confluent). Credentials may be given explicitly
    or as ``user:password@`` in the URL; they are sent as HTTP basic auth and
    never appear in ``repr``, logs or error messages.
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        deadline: float = 10.0,
        cafile: str | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SchemaError(
                f"schema registry URL must be http(s)://host[:port][/path], got {url!r}"
            )
        if parts.username is not None:
            username = username or urllib.parse.unquote(parts.username)
            password = password or urllib.parse.unquote(parts.password or "")
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
            parts = parts._replace(netloc=netloc)
        self.url = urllib.parse.urlunsplit(parts)
        self.username = username
        self.__auth = (
            None
            if username is None
            else "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        )
        self.timeout = timeout
        self.deadline = deadline
        # https: verify the registry against this CA bundle (None: the system's).
        try:
            self._tls = ssl.create_default_context(cafile=cafile) if cafile is not None else None
        except (OSError, ssl.SSLError) as e:
            raise SchemaError(f"cannot read the registry's CA bundle {cafile}: {e}",
                              hint="check schema_registry.ssl_ca_location") from e
        self._lock = Lock()
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}

    def __repr__(self) -> str:
        user = f", username={self.username!r}" if self.username else ""
        return f"RegistryClient({self.url!r}{user})"

    # -- the SchemaRegistry protocol

    def register(self, subject: str, schema: str) -> int:
        with self._lock:
            hit = self._ids.get((subject, schema))
        if hit is not None:
            return hit
        answer = self._call("POST", f"/subjects/{_q(subject)}/versions", {"schema": schema})
        if answer.status == 200 and isinstance(answer.body, dict) and "id" in answer.body:
            schema_id = int(answer.body["id"])
            with self._lock:
                self._ids[(subject, schema)] = schema_id
                self._schemas.setdefault(schema_id, schema)
            log.info("registered schema id %d for subject %s", schema_id, subject)
            return schema_id
        if answer.status == 409:
            raise self._incompatible(subject, schema, answer)
        if answer.status == 422:
            raise SchemaError(
                f"schema registry {self.url} rejected the schema for subject {subject!r} as "
                f"invalid: {answer.message()}"
            )
        raise self._unexpected(f"registering a schema for subject {subject!r}", answer)

    def get_schema(self, schema_id: int) -> str:
        with self._lock:
            hit = self._schemas.get(schema_id)
        if hit is not None:
            return hit
        answer = self._call("GET", f"/schemas/ids/{int(schema_id)}")
        if answer.status == 200 and isinstance(answer.body, dict) and "schema" in answer.body:
            kind = answer.body.get("schemaType", "AVRO")
            if kind != "AVRO":
                raise SchemaError(f"schema id {schema_id} is a {kind} schema, not Avro")
            text = str(answer.body["schema"])
            with self._lock:
                self._schemas[schema_id] = text
            return text
        if answer.status == 404:
            raise SchemaError(
                f"schema id {schema_id} is not in the registry at {self.url}",
                hint="the record was written against another registry, or the registry lost "
                "its storage; point cdc at the registry the producer used",
            )
        raise self._unexpected(f"fetching schema id {schema_id}", answer)

    # -- more of the API

    def latest(self, subject: str) -> RegisteredSchema | None:
        answer = self._call("GET", f"/subjects/{_q(subject)}/versions/latest")
        if answer.status == 404:
            return None
        if answer.status == 200 and isinstance(answer.body, dict):
            b = answer.body
            return RegisteredSchema(subject, int(b["version"]), int(b["id"]), str(b["schema"]))
        raise self._unexpected(f"reading the latest version of {subject!r}", answer)

    def compatibility_messages(self, subject: str, schema: str) -> tuple[bool, list[str]]:
        """The registry's verdict on ``schema`` against the latest version, and its reasons."""
        answer = self._call(
            "POST",
            f"/compatibility/subjects/{_q(subject)}/versions/latest?verbose=true",
            {"schema": schema},
        )
        if answer.status == 404:
            return True, []
        if answer.status == 200 and isinstance(answer.body, dict):
            messages = answer.body.get("messages") or []
            return bool(answer.body.get("is_compatible")), [str(m) for m in messages]
        raise self._unexpected(f"checking compatibility for {subject!r}", answer)

    def subjects(self) -> list[str]:
        """Registered subjects. Apicurio 3.3 returns at most 1000: use ``latest`` to probe one."""
        answer = self._call("GET", "/subjects")
        if answer.status == 200 and isinstance(answer.body, list):
            return [str(s) for s in answer.body]
        raise self._unexpected("listing subjects", answer)

    # -- internals

    def _incompatible(self, subject: str, schema: str, answer: _Answer) -> SchemaError:
        latest = self.latest(subject)
        fields = backward_incompatibilities(latest.schema, schema) if latest else []
        try:
            _, messages = self.compatibility_messages(subject, schema)
        except SchemaError:
            messages = []  # the registry's reasons are a bonus; our own diff is the message
        reasons = messages or [answer.message()]
        table = subject.removesuffix("-value").removesuffix("-key")
        against = f" version {latest.version}" if latest else ""
        what = "; ".join(fields) if fields else "see the registry's reasons"
        return SchemaError(
            f"schema change for table topic {table!r} (subject {subject!r}) is incompatible with "
            f"registered{against}: {what}. Registry: {'; '.join(reasons)}",
            hint="add new columns as nullable (or with a default) and change column types only "
            "to wider ones; otherwise give the table a new topic or relax the subject's "
            "compatibility level deliberately",
        )

    def _unexpected(self, doing: str, answer: _Answer) -> SchemaError:
        if answer.status in (401, 403):
            return SchemaError(
                f"schema registry {self.url} refused access (HTTP {answer.status}) when {doing}",
                hint="check the registry username and password",
            )
        return SchemaError(
            f"schema registry {self.url} answered HTTP {answer.status} when {doing}: "
            f"{answer.message()}"
        )

    def _call(self, method: str, path: str, body: Any = None) -> _Answer:
        """One API call, retried on network errors and 5xx until the deadline."""
        end = time.monotonic() + self.deadline
        backoff = 0.1
        while True:
            remaining = end - time.monotonic()
            try:
                answer = self._once(method, path, body, max(0.1, min(self.timeout, remaining)))
                if answer.status < 500:
                    return answer
                problem = f"HTTP {answer.status}: {answer.message()}"
            except (OSError, http.client.HTTPException) as e:
                problem = f"{type(e).__name__}: {e}"
            remaining = end - time.monotonic()
            if remaining <= backoff:
                raise UnreachableError(
                    f"schema registry at {self.url} did not answer {method} {path.split('?')[0]} "
                    f"within {self.deadline:g}s ({problem})",
                    hint="check that the registry is running and that the URL (including its "
                    "API path, e.g. /apis/ccompat/v7 for Apicurio) is right",
                )
            log.debug("schema registry %s: %s; retrying in %.1fs", self.url, problem, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _once(self, method: str, path: str, body: Any, timeout: float) -> _Answer:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": _CONTENT_TYPE}
        if data is not None:
            headers["Content-Type"] = _CONTENT_TYPE
        if self.__auth is not None:
            headers["Authorization"] = self.__auth
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._tls) as response:
                return _Answer(response.status, _json_or_text(response.read()))
        except urllib.error.HTTPError as e:
            with e:
                return _Answer(e.code, _json_or_text(e.read()))


def _json_or_text(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _q(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


# --------------------------------------------------------------------------- in memory


class InMemorySchemaRegistry:
    """A registry in a dict, BACKWARD-checking like a default Confluent registry.

    For unit tests and for pipelines that never leave the process; ids count
    up from 1 and are shared across subjects, as a real registry's are.
    """

    def __init__(self, *, compatibility: str = "BACKWARD") -> None:
        if compatibility not in ("BACKWARD", "NONE"):
            raise SchemaError(
                f"InMemorySchemaRegistry supports BACKWARD or NONE, not {compatibility}"
            )
        self.compatibility = compatibility
        self._lock = Lock()
        self._by_text: dict[str, int] = {}
        self._texts: dict[int, str] = {}
        self._versions: dict[str, list[int]] = {}

    def register(self, subject: str, schema: str) -> int:
        with self._lock:
            versions = self._versions.setdefault(subject, [])
            schema_id = self._by_text.get(schema)
            if schema_id is not None and schema_id in versions:
                return schema_id
            if versions and self.compatibility == "BACKWARD":
                problems = backward_incompatibilities(self._texts[versions[-1]], schema)
                if problems:
                    raise SchemaError(
                        f"schema change for subject {subject!r} is incompatible with registered "
                        f"version {len(versions)}: {'; '.join(problems)}"
                    )
            if schema_id is None:
                schema_id = len(self._texts) + 1
                self._by_text[schema] = schema_id
                self._texts[schema_id] = schema
            versions.append(schema_id)
            return schema_id

    def get_schema(self, schema_id: int) -> str:
        with self._lock:
            text = self._texts.get(schema_id)
        if text is None:
            raise SchemaError(f"schema id {schema_id} is not registered")
        return text

    def versions(self, subject: str) -> list[int]:
        with self._lock:
            return list(self._versions.get(subject, ()))
