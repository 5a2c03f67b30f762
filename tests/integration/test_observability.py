"""Health endpoints and the dashboard against live workers of the local stack.

* A source answers /readyz 503 ("starting") while its replication slot waits
  for a running transaction (its consistent point), /healthz 200; once it
  snapshots and streams, /readyz 200.
* A sink answers /readyz 200 once connected and assigned; 503 while its replica
  is unreachable (a TCP proxy in front of the replica, cut), /healthz 200 all
  along (the worker keeps polling); 200 again after the replica is back.
* Acceptance: a live pipeline (`cdc run`: one PostgreSQL source -> PostgreSQL
  replica sink) scraped by a real Prometheus (Debian's binary) that also loads
  deploy/observability/alerts.yml; deploy/observability/dashboard.html renders
  every panel of the Grafana dashboard JSON from Prometheus's API in headless
  Chromium: a screenshot is saved (.cdc-local/artefacts/) and the DOM shows
  data in the source and sink panels.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.observability import (
    Prometheus,
    TcpProxy,
    chromium,
    free_port,
    observability_tools,
    probe,
    static_server,
    wait_for,
)
from tests.fixtures.processes import replica_count

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CDC = [sys.executable, "-m", "cdc.cli"]
DEPLOY = ROOT / "deploy" / "observability"
ARTEFACTS = ROOT / ".cdc-local" / "artefacts"


def config_for(run: str, kafka: str, registry: str, pg_source: str, replica: dict[str, Any],
               table: str, metrics_port: int) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap_servers": kafka, "offsets_topic": f"{run}.offsets",
                  "producer": {"linger_ms": 5}, "consumer": {"session_timeout_ms": 6000},
                  "topics": {"partitions": 2, "replication_factor": 1}},
        "schema_registry": {"url": registry},
        "sources": [{"name": f"{run}_pg", "kind": "postgres", "connection": {"dsn": pg_source},
                     "tables": {"include": [f"public.{table}"]}, "heartbeat_interval_s": 1,
                     "slot_name": f"{run}_slot", "publication_name": f"{run}_pub"}],
        "sinks": [{"name": f"{run}_rep", "kind": "postgres", "topics": [f"{run}_pg.public.*"],
                   "target": replica, "batch": {"max_wait_ms": 100},
                   "errors": {"retry": {"initial_backoff_s": 0.2, "max_backoff_s": 1.0}}}],
        "metrics": {"host": "127.0.0.1", "port": metrics_port},
        "log": {"level": "INFO"},
    }


def replica_target(dsn: str, port: int | None = None) -> dict[str, Any]:
    u = urlparse(dsn)
    return {"host": "127.0.0.1", "port": port or u.port, "user": u.username or "postgres",
            "database": u.path.strip("/")}


class Workers:
    """Worker processes of one test, each with its log; all stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{label}.log"
        proc = subprocess.Popen([*CDC, *args], cwd=ROOT, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs[label] = proc
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}"
                         for p in sorted(self.tmp.glob("*.log")))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture()
def table(pg_source_dsn: str, pg_replica_dsn: str, unique_name: str) -> Iterator[str]:
    name = f"{unique_name}_obs"
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
        conn.execute(f"INSERT INTO {name} SELECT g, 'v' || g FROM generate_series(1, 20) g")
    yield name
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
    with psycopg.connect(pg_replica_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def release(config: Path, source: str) -> None:
    subprocess.run([*CDC, "reset-source", str(config), "--name", source, "--release", "--yes"],
                   cwd=ROOT, capture_output=True, timeout=60)


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    code, body = probe(f"http://127.0.0.1:{port}/readyz")
    return code, (json.loads(body) if body.startswith("{") else {})


def test_source_is_not_ready_until_it_streams(
        kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
        unique_name: str, table: str, tmp_path: Path) -> None:
    run = "ob" + unique_name.rsplit("_", 1)[1]
    port = free_port()
    config = tmp_path / "cdc.yaml"
    config.write_text(yaml.safe_dump(config_for(run, kafka_bootstrap, schema_registry_url,
                                                pg_source_dsn, replica_target(pg_replica_dsn),
                                                table, port)))
    workers = Workers(tmp_path)
    # A running transaction with an xid: creating the slot waits for it to end.
    blocker = psycopg.connect(pg_source_dsn)
    blocker.execute(f"UPDATE {table} SET v = v WHERE id = 1")
    try:
        proc = workers.start("source", "source", str(config), "--name", f"{run}_pg",
                             "--metrics-port", str(port))
        wait_for("the slot creation to wait for the open transaction", lambda: _slot_waits(
            pg_source_dsn), 60, workers.logs)
        code, body = readyz(port)
        assert code == 503, body
        assert body["reasons"] == ["starting"] and body["role"] == "source"
        assert probe(f"http://127.0.0.1:{port}/healthz")[0] == 200
        blocker.commit()
        code, body = wait_for("/readyz 200", lambda: (r := readyz(port))[0] == 200 and r, 60,
                              workers.logs)
        assert body["state"] in ("snapshotting", "streaming")
        wait_for("state streaming", lambda: readyz(port)[1].get("state") == "streaming", 30,
                 workers.logs)
        code, text = probe(f"http://127.0.0.1:{port}/metrics")
        assert code == 200
        assert sample(text, "cdc_source_snapshot_rows_total", source=f"{run}_pg") == 20
        assert sample(text, "cdc_worker_ready", role="source", name=f"{run}_pg") == 1.0
        assert proc.poll() is None
    finally:
        blocker.close()
        workers.stop()
        release(config, f"{run}_pg")


def sample(text: str, metric: str, **labels: str) -> float | None:
    """The value of one sample of a /metrics answer (None when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def _slot_waits(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender' "
            "AND wait_event_type = 'Lock'").fetchone()
        return bool(row and row[0])


def test_sink_ready_when_assigned_and_not_while_its_replica_is_unreachable(
        kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
        unique_name: str, table: str, tmp_path: Path) -> None:
    run = "ob" + unique_name.rsplit("_", 1)[1]
    source_port, sink_port = free_port(), free_port()
    replica = urlparse(pg_replica_dsn)
    proxy = TcpProxy(("127.0.0.1", replica.port or 5432))
    config = tmp_path / "cdc.yaml"
    config.write_text(yaml.safe_dump(config_for(
        run, kafka_bootstrap, schema_registry_url, pg_source_dsn,
        replica_target(pg_replica_dsn, proxy.port), table, source_port)))
    workers = Workers(tmp_path)
    try:
        # The replica is unreachable from the start: alive, not ready.
        workers.start("sink", "sink", str(config), "--name", f"{run}_rep",
                      "--metrics-port", str(sink_port))
        code, body = wait_for("/readyz 503 from the sink",
                              lambda: (r := readyz(sink_port))[0] == 503 and r, 30, workers.logs)
        wait_for("a retry of the replica connection",
                 lambda: "replica: replica unreachable" in readyz(sink_port)[1].get("reasons", []),
                 30, workers.logs)
        code, body = readyz(sink_port)
        assert code == 503 and "assignment: waiting for partition assignment" in body["reasons"]
        assert probe(f"http://127.0.0.1:{sink_port}/healthz")[0] == 200

        proxy.restore()
        wait_for("/readyz 200 after connecting and the assignment",
                 lambda: readyz(sink_port)[0] == 200, 60, workers.logs)
        workers.start("source", "source", str(config), "--name", f"{run}_pg")
        wait_for("the snapshot in the replica", lambda: replica_count(pg_replica_dsn, table) == 20,
                 60, workers.logs)
        assert readyz(sink_port)[0] == 200
        wait_for("lag of both partitions", lambda: sample(
            probe(f"http://127.0.0.1:{sink_port}/metrics")[1], "cdc_sink_assigned_partitions",
            sink=f"{run}_rep") == 2, 30, workers.logs)

        proxy.cut()
        with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {table} SELECT g, 'w' FROM generate_series(21, 30) g")
        code, body = wait_for("/readyz 503 while the replica is unreachable",
                              lambda: (r := readyz(sink_port))[0] == 503 and r, 60, workers.logs)
        assert any("unavailable" in r or "unreachable" in r for r in body["reasons"]), body
        assert probe(f"http://127.0.0.1:{sink_port}/healthz")[0] == 200
        code, text = probe(f"http://127.0.0.1:{sink_port}/metrics")
        assert (sample(text, "cdc_sink_errors_total", sink=f"{run}_rep", kind="unavailable")
                or 0) >= 1, text

        proxy.restore()
        wait_for("the rows after the replica came back",
                 lambda: replica_count(pg_replica_dsn, table) == 30, 60, workers.logs)
        wait_for("/readyz 200 again", lambda: readyz(sink_port)[0] == 200, 40, workers.logs)
        code, text = probe(f"http://127.0.0.1:{sink_port}/metrics")
        assert sample(text, "cdc_sink_rows_applied_total", sink=f"{run}_rep") == 30, text
        assert all(p.poll() is None for p in workers.procs.values()), workers.logs()
    finally:
        proxy.cut()
        workers.stop()
        release(config, f"{run}_pg")


class Panels(HTMLParser):
    """The dashboard page's panel elements and their data-* attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.panels: dict[str, dict[str, str]] = {}
        self.body: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        elif tag == "section" and "panel" in a.get("class", ""):
            self.panels[a.get("data-title", "")] = a


def test_dashboard_page_shows_a_live_pipeline(
        kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str, pg_replica_dsn: str,
        unique_name: str, table: str, tmp_path: Path) -> None:
    tools = observability_tools()
    run = "ob" + unique_name.rsplit("_", 1)[1]
    base = free_port()
    while probe(f"http://127.0.0.1:{base + 1}/")[0] or base + 1 > 65535:
        base = free_port()
    config = tmp_path / "cdc.yaml"
    config.write_text(yaml.safe_dump(config_for(run, kafka_bootstrap, schema_registry_url,
                                                pg_source_dsn, replica_target(pg_replica_dsn),
                                                table, base)))
    workers = Workers(tmp_path)
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    prometheus = Prometheus(tools["prometheus"], prom_dir,
                            [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"], DEPLOY / "alerts.yml")
    try:
        proc = workers.start("run", "run", str(config))
        wait_for("the snapshot in the replica", lambda: replica_count(pg_replica_dsn, table) == 20,
                 60, workers.logs)
        # A steady trickle of changes until Prometheus has rates and latency quantiles.
        n = 20
        with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
            def busy() -> bool:
                nonlocal n
                conn.execute(f"INSERT INTO {table} SELECT g, 'x' FROM generate_series(%s::int, %s::int) g",
                             (n + 1, n + 5))
                n += 5
                time.sleep(0.3)
                e2e = prometheus.query(
                    "histogram_quantile(0.99, sum by (sink, le) "
                    "(rate(cdc_sink_e2e_lag_seconds_bucket[5m])))")
                rows = prometheus.query("sum(rate(cdc_sink_rows_applied_total[1m])) > 0")
                events = prometheus.query("sum(rate(cdc_source_events_total[1m])) > 0")
                # Per-partition lag appears once the worker has refreshed it after a scrape.
                lag = prometheus.query("cdc_sink_consumer_lag_records") and prometheus.query(
                    "cdc_sink_consumer_lag_seconds")
                return bool(rows and events and lag and e2e and e2e[0]["value"][1] != "NaN")
            wait_for("Prometheus to see events, rows applied, lag and end-to-end latency", busy, 60,
                     lambda: workers.logs() + prometheus.tail())
        assert prometheus.query('up{job="cdc"} == 1') and len(
            prometheus.query('up{job="cdc"} == 1')) == 2
        # The alert rules load and evaluate in the real Prometheus.
        _, body = probe(prometheus.url + "/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        assert {g["name"] for g in groups} == {"cdc-sink", "cdc-source", "cdc-workers"}
        assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups

        wanted = ("Source events/s", "Source checkpoint age", "Retained WAL",
                  "Sink rows applied/s", "Sink consumer lag (records)",
                  "Sink consumer lag (seconds)", "End-to-end latency",
                  "Batch apply latency", "Dead letters and skipped records", "Sink errors",
                  "Workers ready", "Workers up", "Native modules")
        with static_server(DEPLOY) as site:
            url = f"{site}/dashboard.html?prometheus={quote(prometheus.url)}&minutes=5"
            page = Panels()
            dumps = 0

            def rendered() -> bool:
                # A panel fills once Prometheus has scraped its series; the page is
                # loaded again until every wanted panel has points (or the deadline).
                nonlocal page, dumps
                dumps += 1
                dom = chromium(tools["chromium"], tmp_path / f"profile-dom-{dumps}", url, "--dump-dom")
                page = Panels()
                page.feed(dom.stdout)
                assert page.body.get("data-state") == "done", dom.stdout[-3000:] + dom.stderr[-2000:]
                return all(page.panels.get(t, {}).get("data-state") == "ok"
                           and int(page.panels[t].get("data-points", "0")) > 0 for t in wanted)
            wait_for("every wanted dashboard panel to show data", rendered, 90,
                     lambda: repr(page.panels))
            ARTEFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTEFACTS / "observability-dashboard.png"
            shot.unlink(missing_ok=True)
            chromium(tools["chromium"], tmp_path / "profile-shot", url,
                     f"--screenshot={shot}", "--window-size=1400,1900", "--hide-scrollbars")
        dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
        titles = [p["title"] for p in dash["panels"] if p["type"] != "row"]
        assert sorted(page.panels) == sorted(titles)
        errors = {t: p for t, p in page.panels.items() if p.get("data-state") == "error"}
        assert not errors, errors
        with_data = {t for t, p in page.panels.items() if p.get("data-state") == "ok"
                     and int(p.get("data-points", "0")) > 0}
        groups_with_data = {page.panels[t]["data-group"] for t in with_data}
        assert {"Sources", "Sinks", "Workers"} <= groups_with_data
        for title in wanted:
            assert title in with_data, (title, page.panels.get(title))
        assert shot.exists() and shot.stat().st_size > 10_000
        assert proc.poll() is None, workers.logs()
    finally:
        workers.stop()
        prometheus.close()
        release(config, f"{run}_pg")
