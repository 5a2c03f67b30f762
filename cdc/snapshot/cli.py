"""``cdc snapshot run|status|list``: snapshot replication on demand, and its run records.

``run`` performs one run of a snapshot-replication source (``--source``, or
the config's only one) and switches every replica subscribed to it (each
under its loader lock: when ``cdc run`` is switching one already, this waits
for its outcome); exit 0 once every replica has switched, 1 when one failed
or did not switch within ``switch_timeout_s``, 2 for a usage error.
``status`` shows each source's latest run and where each replica stands;
``list`` every recorded run (``--json`` for machines).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cdc.config import CdcConfig, SourceConfigBase, load_config
from cdc.config.sinks import SinkConfigBase
from cdc.errors import CdcError, ConfigError
from cdc.observability.logging import setup_logging
from cdc.snapshot.runs import ReplicaRecord, RunLog, RunRecord, RunStore
from cdc.snapshot.wiring import find_snapshot_source, replicas_of, run_store, snapshot_sources


@click.group("snapshot")
def snapshot_group() -> None:
    """Snapshot replication: run a copy now, and show the recorded runs."""


def _load(path: Path) -> CdcConfig:
    try:
        config = load_config(path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    setup_logging(config.log.level, config.log.format)
    return config


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _switch(config: CdcConfig, sink: SinkConfigBase, source: SourceConfigBase, run: RunRecord,
            store: RunStore, deadline: float) -> tuple[str, str]:
    """Switch one replica to ``run``: ``(state, detail)``."""
    from cdc.snapshot.replica import ReplicaLoader

    loader = ReplicaLoader(config, sink, source, store)
    while True:
        try:
            outcome = loader.apply(run)
        except CdcError as e:
            return "failed", str(e)
        except Exception as e:  # a database error: reported, the copy stays as it was
            return "failed", f"{type(e).__name__}: {e}"
        if outcome.record is not None:
            return outcome.record.state, f"{outcome.record.rows} rows"
        if outcome.reason.startswith("already"):
            return "switched", outcome.reason
        if time.monotonic() > deadline:
            return "timeout", outcome.reason
        time.sleep(1.0)


@snapshot_group.command("run")
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", "source_name", default=None,
              help="The snapshot-replication source (default: the config's only one).")
def run_command(config_file: Path, source_name: str | None) -> None:
    """Perform one snapshot-replication run now and switch every replica to it."""
    from cdc.snapshot.publish import publish_run

    config = _load(config_file)
    try:
        source = find_snapshot_source(config, source_name)
        replicas = replicas_of(config, source)
        store = run_store(config, source)
        assert source.snapshot_replication is not None
        timeout = source.snapshot_replication.switch_timeout_s
        run = publish_run(config, source, stop=threading.Event(), trigger="manual", store=store)
    except CdcError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"run {run.run_id} of {source.name}: {run.rows} rows of {len(run.tables)} "
               f"tables published in {run.duration_s or 0:.1f}s (consistent at "
               f"{json.dumps(dict(run.position or {}), sort_keys=True)})")
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(max_workers=max(1, len(replicas))) as pool:
        futures = {k.name: pool.submit(_switch, config, k, source, run, store, deadline)
                   for k in replicas}
        results = {name: f.result() for name, f in futures.items()}
    store.close()
    for name, (state, detail) in results.items():
        click.echo(f"  replica {name}: {state} ({detail})")
    if not replicas:
        click.echo("  no sink subscribes to this source's topics")
    if any(state != "switched" for state, _ in results.values()):
        sys.exit(1)


def _rows(log: RunLog, sources: list[SourceConfigBase]) -> list[dict[str, Any]]:
    out = []
    for s in sources:
        for run in log.runs_of(s.name):
            out.append(_run_dict(run, log.replicas_of(s.name, run.run_id)))
    return out


def _run_dict(run: RunRecord, replicas: dict[str, ReplicaRecord]) -> dict[str, Any]:
    return {
        "source": run.source, "run_id": run.run_id, "state": run.state, "trigger": run.trigger,
        "started": _when(run.started_ms), "duration_s": run.duration_s, "rows": run.rows,
        "tables": {t.table: t.rows for t in run.tables},
        "position": dict(run.position) if run.position is not None else None,
        "error": run.error,
        "replicas": {k: {"state": r.state, "rows": r.rows, "duration_s": r.duration_s,
                         "error": r.error} for k, r in sorted(replicas.items())},
    }


def _read(config: CdcConfig, source_name: str | None) -> tuple[list[SourceConfigBase], RunLog]:
    sources = ([find_snapshot_source(config, source_name)] if source_name
               else snapshot_sources(config))
    if not sources:
        raise ConfigError("the config has no snapshot-replication source",
                          hint="add a snapshot_replication block to a source")
    log = RunLog()
    for topic in dict.fromkeys(s.snapshot_replication.runs_topic for s in sources
                               if s.snapshot_replication is not None):
        store = run_store(config, next(s for s in sources if s.snapshot_replication is not None
                                       and s.snapshot_replication.runs_topic == topic))
        part = store.read()
        store.close()
        log.runs.update(part.runs)
        log.replicas.update(part.replicas)
    return sources, log


def _line(d: dict[str, Any]) -> str:
    dur = "-" if d["duration_s"] is None else f"{d['duration_s']:.1f}s"
    reps = ", ".join(f"{k} {r['state']}" for k, r in d["replicas"].items()) or "no replica yet"
    return (f"{d['source']:<16} {d['run_id']:<26} {d['state']:<9} {d['trigger']:<8} "
            f"{d['started']:<19} {dur:>8} {d['rows']:>10}  {reps}")


_HEADER = (f"{'SOURCE':<16} {'RUN':<26} {'STATE':<9} {'TRIGGER':<8} {'STARTED (UTC)':<19} "
           f"{'DURATION':>8} {'ROWS':>10}  REPLICAS")


@snapshot_group.command("list")
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", "source_name", default=None, help="Only this source's runs.")
@click.option("--limit", type=click.IntRange(1, None), default=20, show_default=True,
              help="The most recent runs per listing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def list_command(config_file: Path, source_name: str | None, limit: int, as_json: bool) -> None:
    """Every recorded run: id, state, start, duration, rows, position and each replica."""
    config = _load(config_file)
    try:
        sources, log = _read(config, source_name)
    except CdcError as e:
        raise click.ClickException(str(e)) from None
    rows = _rows(log, sources)[-limit:]
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    click.echo(_HEADER)
    for d in rows:
        click.echo(_line(d))


@snapshot_group.command("status")
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", "source_name", default=None, help="Only this source.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def status_command(config_file: Path, source_name: str | None, as_json: bool) -> None:
    """Each source's current or last run, and the run each replica has switched to."""
    config = _load(config_file)
    try:
        sources, log = _read(config, source_name)
    except CdcError as e:
        raise click.ClickException(str(e)) from None
    out: list[dict[str, Any]] = []
    for s in sources:
        runs = log.runs_of(s.name)
        last = runs[-1] if runs else None
        published = log.latest_published(s.name)
        replicas: dict[str, dict[str, Any]] = {}
        for k in replicas_of(config, s):
            switched = [r for (src, _, sink), r in log.replicas.items()
                        if src == s.name and sink == k.name and r.state == "switched"]
            latest = max(switched, key=lambda r: r.run_id) if switched else None
            replicas[k.name] = {
                "switched_to": latest.run_id if latest else None,
                "up_to_date": bool(latest and published and latest.run_id == published.run_id),
            }
        out.append({
            "source": s.name,
            "last_run": _run_dict(last, log.replicas_of(s.name, last.run_id)) if last else None,
            "last_published": published.run_id if published else None,
            "replicas": replicas,
        })
    if as_json:
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    for d in out:
        click.echo(f"source {d['source']}: last published run {d['last_published'] or 'none'}")
        if d["last_run"] is not None:
            click.echo("  last run: " + _line(d["last_run"]).strip())
        for sink_name, r in d["replicas"].items():
            state = "up to date" if r["up_to_date"] else "behind"
            click.echo(f"  replica {sink_name}: at run {r['switched_to'] or 'none'} ({state})")
