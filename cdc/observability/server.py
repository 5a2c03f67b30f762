"""The HTTP endpoint of a worker process: ``/metrics``, ``/healthz`` and ``/readyz`` on one port.

``/metrics`` is the Prometheus text exposition of the process's collectors
(:mod:`cdc.observability.metrics` for sources,
:mod:`cdc.observability.sink_metrics` for sinks), read at scrape time.
``/healthz`` answers 200 while the worker's main loop beats and 503 once it
is silent; ``/readyz`` 200 when the worker is ready, else 503; both with a
short JSON body saying why (:mod:`cdc.observability.health`).

The server runs in daemon threads of its own and never takes a lock the
worker's loop holds for long: a slow scraper cannot block the worker. A port
already in use is logged as a warning and the worker runs without the
endpoint (as with ``metrics.enabled: false``).
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from cdc.observability.health import Health
from cdc.observability.progress import ProgressCollector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cdc.config import MetricsConfig

log = logging.getLogger(__name__)


class HealthCollector:
    """``cdc_worker_alive``, ``cdc_worker_ready`` and ``cdc_worker_standby`` (1/0)."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        h = self.health
        labels = ["role", "name"]
        alive = GaugeMetricFamily("cdc_worker_alive",
                                  "1 while the worker's main loop beats (/healthz).", labels=labels)
        alive.add_metric([h.role, h.name], 1.0 if h.liveness().ok else 0.0)
        yield alive
        ready = GaugeMetricFamily("cdc_worker_ready", "1 when the worker is ready (/readyz).",
                                  labels=labels)
        ready.add_metric([h.role, h.name], 1.0 if h.readiness().ok else 0.0)
        yield ready
        standby = GaugeMetricFamily("cdc_worker_standby",
                                    "1 while the worker waits as the standby of an HA pair.",
                                    labels=labels)
        standby.add_metric([h.role, h.name], 1.0 if h.standby else 0.0)
        yield standby


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            try:
                body = encoder(self.server.registry)
            except Exception as e:  # a collector bug must not kill the endpoint
                log.warning("metrics collection failed: %s", e)
                self._send(500, "text/plain; charset=utf-8", f"collection failed: {e}\n".encode())
                return
            self._send(200, content_type, body)
        elif path in ("/healthz", "/readyz"):
            h = self.server.health
            verdict = h.liveness() if path == "/healthz" else h.readiness()
            body = (json.dumps(verdict.body()) + "\n").encode()
            self._send(200 if verdict.ok else 503, "application/json", body)
        else:
            self._send(404, "text/plain; charset=utf-8",
                       b"not found: try /metrics, /healthz or /readyz\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], registry: CollectorRegistry, health: Health) -> None:
        self.registry = registry
        self.health = health
        super().__init__(addr, _Handler)


class WorkerEndpoint:
    """A running endpoint; ``close()`` stops it (tests, graceful shutdown)."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name=f"cdc-http-{self.port}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_worker(
    collectors: list[Any],
    health: Health,
    cfg: MetricsConfig,
    port: int | None = None,
) -> WorkerEndpoint | None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``port`` (default ``metrics.port``).

    Returns None when metrics are disabled or the port cannot be bound (logged).
    """
    if not cfg.enabled:
        return None
    registry = CollectorRegistry()
    # Snapshot progress of any kind in this process (cdc.observability.progress).
    for c in (*collectors, HealthCollector(health), ProgressCollector()):
        registry.register(c)
    chosen = cfg.port if port is None else port
    try:
        server = _Server((cfg.host, chosen), registry, health)
    except OSError as e:
        log.warning("metrics not served: cannot listen on %s:%d (%s); set metrics.port, or "
                    "metrics.enabled: false", cfg.host, chosen, e)
        return None
    endpoint = WorkerEndpoint(server)
    log.info("metrics, /healthz and /readyz on http://%s:%d/", cfg.host, endpoint.port)
    return endpoint
