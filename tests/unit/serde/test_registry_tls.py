"""`schema_registry.ssl_ca_location`: an https registry is verified against that CA bundle.

The server here only answers `GET /subjects` over TLS with a certificate no
system CA signed: what is tested is the client's certificate verification,
not registry behaviour (the integration tests use the real Apicurio).
"""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cdc.errors import CdcError, SchemaError
from cdc.runtime.pipeline import registry_client
from cdc.serde.registry import RegistryClient
from tests.unit.config.conftest import MINIMAL


class _Subjects(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'["orders-value"]'
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def https_registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Subjects)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_configured_ca_bundle_verifies_the_registry(
    https_registry: tuple[str, Path],
) -> None:
    url, cert = https_registry
    with pytest.raises(CdcError):  # not signed by a system CA: refused
        RegistryClient(url, timeout=2, deadline=2).subjects()
    assert RegistryClient(url, cafile=str(cert)).subjects() == ["orders-value"]


def test_the_pipeline_passes_ssl_ca_location_on(https_registry: tuple[str, Path]) -> None:
    from cdc.config.pipeline import CdcConfig

    url, cert = https_registry
    config = CdcConfig.model_validate(
        {"kafka": MINIMAL["kafka"], "schema_registry": {"url": url, "ssl_ca_location": str(cert)}}
    )
    assert registry_client(config).subjects() == ["orders-value"]


def test_an_unreadable_ca_bundle_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"schema_registry\.ssl_ca_location"):
        RegistryClient("https://127.0.0.1:1/x", cafile=str(tmp_path / "missing.pem"))
