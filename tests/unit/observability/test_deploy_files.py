"""deploy/observability checked with real tools: promtool for the alert rules (syntax
and unit tests) and for every PromQL expression of the Grafana dashboard; every
metric they name is one the code exports (or the WAL guardrail's agreed names),
and docs/METRICS.md lists them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.observability import observability_tools

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy" / "observability"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
# Exported by the WAL guardrail (another module; agreed by name) and by Prometheus itself.
ELSEWHERE = {"cdc_source_retained_wal_bytes", "cdc_source_wal_budget_bytes", "up"}
FUNCTIONS = {"sum", "max", "min", "by", "rate", "increase", "histogram_quantile", "or", "and",
             "on", "unless", "le", "source", "sink", "topic", "partition", "kind", "role", "name",
             "instance", "job", "module"}


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] if p["type"] != "row"
            for t in p["targets"]]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def exported_names() -> set[str]:
    """Metric names the collectors build (with the suffixes Prometheus adds)."""
    names: set[str] = set()
    for f in ("cdc/observability/metrics.py", "cdc/observability/sink_metrics.py",
              "cdc/observability/server.py"):
        text = (ROOT / f).read_text()
        for name in re.findall(r'"(cdc_[a-z0-9_]+)"', text):
            names.add(name)
        for name in re.findall(r'counter\("(cdc_[a-z0-9_]+)"', text):
            names.add(name + "_total")
        for name in re.findall(r'CounterMetricFamily\("(cdc_[a-z0-9_]+)"', text):
            names.add(name + "_total")
        for name in re.findall(r'_histogram\("(cdc_[a-z0-9_]+)"', text):
            names.update({name + "_bucket", name + "_sum", name + "_count"})
    # connector gauges: cdc_source_<key of ReportsMetrics.metrics()>
    for f in ROOT.glob("connectors/*/source/connector.py"):
        for key in re.findall(r'return \{"([a-z_]+)":', f.read_text()):
            names.add(f"cdc_source_{key}")
    return names


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'\{[^}]*\}', "", re.sub(r"\[[^]]*\]", "", expr))
    return {w for w in re.findall(r"[a-z_][a-z0-9_]*", expr) if w not in FUNCTIONS}


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = observability_tools()["promtool"]
    check = subprocess.run([promtool, "check", "rules", str(DEPLOY / "alerts.yml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 12 rules found" in check.stdout
    tests = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=DEPLOY,
                           capture_output=True, text=True, timeout=60)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    config = subprocess.run([promtool, "check", "config", "prometheus.example.yml"], cwd=DEPLOY,
                            capture_output=True, text=True, timeout=60)
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    promtool = observability_tools()["promtool"]
    queries = dashboard_queries()
    assert len(queries) >= 20
    # promtool parses PromQL in rule files: one recording rule per panel query.
    rules: dict[str, Any] = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)
    ]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(queries)} rules found" in check.stdout
    # and a broken query would fail: the check is real
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x:y", "expr": "sum by (sink (rate(cdc_sink_batches_total[1m]))"}]}]}))
    bad = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0


def test_dashboard_and_alerts_name_only_exported_metrics() -> None:
    exported = exported_names() | ELSEWHERE
    assert {"cdc_sink_rows_applied_total", "cdc_sink_e2e_lag_seconds_bucket",
            "cdc_source_events_total", "cdc_worker_ready"} <= exported
    used: set[str] = set()
    for _title, expr in dashboard_queries():
        used |= metric_names(expr)
    for expr in alert_exprs():
        used |= metric_names(expr)
    assert used - exported == set()
    docs = (ROOT / "docs" / "METRICS.md").read_text()
    documented = set(re.findall(r"`(cdc_[a-z0-9_]+)`", docs))
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported
                if n.startswith("cdc_")} - ELSEWHERE
    missing = {n for n in families if n not in documented and n + "_total" not in documented}
    assert missing == set(), f"not in docs/METRICS.md: {sorted(missing)}"


def test_dashboard_has_source_and_sink_panels() -> None:
    dash = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert rows == ["Sources", "Sinks", "Workers"]
    titles = {p["title"] for p in dash["panels"]}
    for wanted in ("Source events/s", "Sink rows applied/s", "Sink consumer lag (records)",
                   "Sink consumer lag (seconds)", "End-to-end latency", "Source checkpoint age",
                   "Retained WAL", "Dead letters and skipped records", "Sink errors",
                   "Native modules"):
        assert wanted in titles
