"""Registry clients: caching, compatibility diagnosis, bounded failure, secrets.

The HTTP client is exercised against a small in-process server speaking the
Confluent REST API the way Apicurio's ccompat API answers (measured on
Apicurio 3.3.3: no verbose compatibility messages, 409 with a JSON-pointer
message on a rule violation).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cdc.errors import SchemaError, UnreachableError
from cdc.events import Column, ColumnType, Kind, TableSchema
from cdc.serde import AvroSerde, InMemorySchemaRegistry
from cdc.serde.envelope import build_schemas
from cdc.serde.registry import RegistryClient, backward_incompatibilities
from tests.unit.serde.strategies import pg_source
from tests.unit.serde.test_codec_errors import event, orders, row


def record(*fields: dict[str, Any]) -> str:
    return json.dumps({"type": "record", "name": "R", "namespace": "n", "fields": list(fields)})


def test_backward_rules() -> None:
    old = record({"name": "a", "type": "int"})
    assert backward_incompatibilities(old, record({"name": "a", "type": "long"})) == []
    assert (
        backward_incompatibilities(
            old,
            record(
                {"name": "a", "type": "int"},
                {"name": "b", "type": ["null", "int"], "default": None},
            ),
        )
        == []
    )
    assert backward_incompatibilities(old, record({"name": "a", "type": "string"})) == [
        "R.a: int is now string"
    ]
    assert backward_incompatibilities(
        old, record({"name": "a", "type": "int"}, {"name": "b", "type": "int"})
    ) == ["R.b: added without a default"]
    assert backward_incompatibilities(old, record({"name": "a", "type": ["null", "int"]})) == []
    assert backward_incompatibilities(
        record({"name": "a", "type": ["null", "string"]}),
        record({"name": "a", "type": ["null", "int"]}),
    ) == ["R.a: string is now [null, int]"]


def test_column_type_change_names_the_column_in_the_envelope() -> None:
    old = build_schemas(orders(), prefix="p", connector="postgresql")
    cols = list(orders().columns)
    cols[1] = Column("qty", ColumnType(Kind.STRING, "text"), nullable=False)
    new = build_schemas(TableSchema(orders().table, tuple(cols), ("id",)), prefix="p",
                        connector="postgresql")  # fmt: skip
    assert backward_incompatibilities(old.value_text, new.value_text) == [
        "Value.qty: int is now string"
    ]


def test_in_memory_registry_versions_and_incompatibility() -> None:
    reg = InMemorySchemaRegistry()
    serde = AvroSerde(reg)
    serde.encode_value(event())
    serde.encode_value(event())
    assert reg.versions("srv.public.orders-value") == [1]
    grown = TableSchema(orders().table, (*orders().columns, Column("extra", ColumnType(Kind.INT32))),
                        ("id",))  # fmt: skip
    serde.encode_value(event(row(extra=None), schema=grown))
    assert len(reg.versions("srv.public.orders-value")) == 2
    cols = list(orders().columns)
    cols[1] = Column("qty", ColumnType(Kind.STRING, "text"), nullable=False)
    changed = TableSchema(orders().table, tuple(cols), ("id",))
    with pytest.raises(
        SchemaError, match=r"srv\.public\.orders-value.*Value\.qty: int is now string"
    ):
        serde.encode_value(event(row(qty="2"), schema=changed))


def test_old_records_still_decode_after_evolution() -> None:
    reg = InMemorySchemaRegistry()
    serde = AvroSerde(reg)
    old = serde.encode(event())
    grown = TableSchema(orders().table, (*orders().columns, Column("extra", ColumnType(Kind.INT32))),
                        ("id",))  # fmt: skip
    new = serde.encode(event(row(extra=5), schema=grown))
    reader = AvroSerde(reg)  # a sink with cold caches
    a, b = reader.decode(old.key, old.value), reader.decode(new.key, new.value)
    assert a.after is not None and "extra" not in a.after  # type: ignore[union-attr]
    assert b.after is not None and b.after["extra"] == 5  # type: ignore[union-attr]


# --------------------------------------------------------------------------- HTTP client


class _FakeRegistry(BaseHTTPRequestHandler):
    """Apicurio-like ccompat answers, enough for the client's calls."""

    subjects: dict[str, list[tuple[int, str]]]
    auth_seen: list[str | None]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.auth_seen.append(self.headers.get("Authorization"))
        path = self.path.removeprefix("/apis/ccompat/v7")
        if path.startswith("/schemas/ids/"):
            sid = int(path.rsplit("/", 1)[1])
            for versions in self.subjects.values():
                for i, text in versions:
                    if i == sid:
                        return self._send(200, {"schema": text})
            return self._send(404, {"error_code": 40403, "message": f"Schema {sid} not found."})
        if path.endswith("/versions/latest"):
            subject = path.split("/")[2]
            found = self.subjects.get(subject)
            if not found:
                return self._send(404, {"error_code": 40401, "message": "Subject not found"})
            sid, text = found[-1]
            return self._send(200, {"subject": subject, "version": len(found), "id": sid,
                                    "schema": text})  # fmt: skip
        return self._send(404, {"error_code": 404, "message": "no route"})

    def do_POST(self) -> None:
        self.auth_seen.append(self.headers.get("Authorization"))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        path = self.path.removeprefix("/apis/ccompat/v7")
        if path.startswith("/compatibility/"):
            return self._send(200, {"is_compatible": False})  # Apicurio: no messages
        subject = path.split("/")[2]
        versions = self.subjects.setdefault(subject, [])
        for sid, text in versions:
            if text == body["schema"]:
                return self._send(200, {"id": sid})
        if versions and backward_incompatibilities(versions[-1][1], body["schema"]):
            return self._send(409, {
                "error_code": 409,
                "message": "RuleViolationException: Incompatible artifact: list of diff types: "
                "[reader type: STRING not compatible with writer type: INT at /fields/1/type]",
            })  # fmt: skip
        sid = 100 + sum(len(v) for v in self.subjects.values())
        versions.append((sid, body["schema"]))
        return self._send(200, {"id": sid})


@pytest.fixture()
def fake_registry() -> Iterator[tuple[str, type[_FakeRegistry]]]:
    handler = type("Handler", (_FakeRegistry,), {"subjects": {}, "auth_seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_register_caches_and_fetches(fake_registry: tuple[str, type[_FakeRegistry]]) -> None:
    url, handler = fake_registry
    client = RegistryClient(url)
    text = record({"name": "a", "type": "int"})
    sid = client.register("t-value", text)
    assert client.register("t-value", text) == sid
    assert len(handler.auth_seen) == 1  # the second call came from the cache
    assert client.get_schema(sid) == text
    fresh = RegistryClient(url)
    assert fresh.get_schema(sid) == text
    with pytest.raises(SchemaError, match="schema id 999 is not in the registry"):
        fresh.get_schema(999)


def test_incompatible_change_names_subject_and_field(
    fake_registry: tuple[str, type[_FakeRegistry]],
) -> None:
    url, _ = fake_registry
    client = RegistryClient(url)
    client.register("shop.public.orders-value",
                    record({"name": "id", "type": "long"}, {"name": "qty", "type": "int"}))  # fmt: skip
    with pytest.raises(SchemaError) as e:
        client.register("shop.public.orders-value",
                        record({"name": "id", "type": "long"}, {"name": "qty", "type": "string"}))  # fmt: skip
    message = str(e.value)
    assert "shop.public.orders" in message
    assert "R.qty: int is now string" in message
    assert "/fields/1/type" in message  # the registry's own words too
    assert e.value.hint is not None


def test_basic_auth_is_sent_but_never_shown(fake_registry: tuple[str, type[_FakeRegistry]]) -> None:
    url, handler = fake_registry
    with_secret = url.replace("http://", "http://alice:s3cr3t@")
    client = RegistryClient(with_secret)
    client.register("s-value", record({"name": "a", "type": "int"}))
    assert handler.auth_seen[-1] == "Basic YWxpY2U6czNjcjN0"
    assert "s3cr3t" not in repr(client) and "s3cr3t" not in client.url
    assert "alice" in repr(client)
    dead = RegistryClient("http://bob:hunter2@127.0.0.1:9/x", deadline=0.3)
    with pytest.raises(UnreachableError) as e:
        dead.get_schema(1)
    assert "hunter2" not in str(e.value) and "hunter2" not in repr(dead)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_registry_fails_in_bounded_time() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/apis/ccompat/v7"
    client = RegistryClient(url, deadline=2.0)
    start = time.monotonic()
    with pytest.raises(UnreachableError) as e:
        client.register("s-value", record({"name": "a", "type": "int"}))
    assert time.monotonic() - start < 4.0
    assert url in str(e.value)
    assert e.value.retriable


def test_silent_registry_times_out() -> None:
    """A registry that accepts connections but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client = RegistryClient(url, timeout=0.5, deadline=1.5)
        start = time.monotonic()
        with pytest.raises(UnreachableError, match="did not answer"):
            client.get_schema(1)
        assert time.monotonic() - start < 3.5


def test_facade_over_http(fake_registry: tuple[str, type[_FakeRegistry]]) -> None:
    url, _ = fake_registry
    serde = AvroSerde(RegistryClient(url))
    out = serde.encode(event())
    decoded = AvroSerde(RegistryClient(url)).decode(out.key, out.value)
    assert decoded.after == row()  # type: ignore[union-attr]
    assert decoded.position == pg_source().position  # type: ignore[union-attr]


def test_bad_url_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="http"):
        RegistryClient("localhost:8081")
