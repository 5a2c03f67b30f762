"""The ``cdc`` command line: one entry point for operators and developers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cdc import __version__
from cdc.config import CdcConfig, load_config
from cdc.errors import EXIT_NEEDS_OPERATOR, CdcError, ConfigError, NeedsOperatorError
from cdc.observability.logging import setup_logging

if TYPE_CHECKING:
    from cdc.observability.server import WorkerEndpoint


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``cdc --version``: the version and which code path runs (native or python)."""
    if not value or ctx.resilient_parsing:
        return
    from cdc import native

    click.echo(f"cdc {__version__}")
    click.echo(native.summary())
    ctx.exit()


# Command groups live beside their subsystems and are imported when their command runs:
# `cdc source` does not load the sink's modules, nor `cdc sink` the others (memory).
_LAZY_COMMANDS = {
    "config": "cdc.config.cli:config_group",
    "sink": "cdc.sink.cli:sink_command",
    "snapshot": "cdc.cli:_snapshot_group",
    "status": "cdc.status:status_command",
    "verify": "cdc.verify:verify_command",
}


def _snapshot_group() -> click.Command:
    from cdc.runtime.incremental_cli import incremental_command
    from cdc.snapshot.cli import snapshot_group

    if "incremental" not in snapshot_group.commands:
        snapshot_group.add_command(incremental_command)
    return snapshot_group


class _LazyGroup(click.Group):
    """A click group whose ``_LAZY_COMMANDS`` are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _LAZY_COMMANDS:
            import importlib

            module, _, attr = _LAZY_COMMANDS[cmd_name].partition(":")
            found = getattr(importlib.import_module(module), attr)
            cmd = found() if attr.startswith("_") else found
            self.add_command(cmd, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show the version and the code path (native/python).")
def main() -> None:
    """Change data capture and database replication on Apache Kafka."""


def _stack_script() -> Path:
    """The local-stack script of the checkout this cdc runs from."""
    here = Path(__file__).resolve().parents[1] / "deploy" / "local" / "stack.py"
    if not here.exists():
        raise click.ClickException(
            "`cdc dev` manages the local development stack and needs a source checkout "
            "(deploy/local/stack.py was not found next to this installation)"
        )
    return here


@main.group()
def dev() -> None:
    """Local development stack: Kafka, schema registry, PostgreSQL, MariaDB."""


def _run_stack(*args: str) -> None:
    rc = subprocess.call([sys.executable, str(_stack_script()), *args], env=os.environ.copy())
    if rc:
        sys.exit(rc)


@dev.command()
def up() -> None:
    """Install (cached) and start every service; idempotent."""
    _run_stack("up")


@dev.command()
def down() -> None:
    """Stop every service; leaves no process behind."""
    _run_stack("down")


@dev.command()
def status() -> None:
    """Show each service's address and health; exit 1 unless all are healthy."""
    _run_stack("status")


@dev.command()
def env() -> None:
    """Print the connection settings (KAFKA_BOOTSTRAP, PG_SOURCE_DSN, ...)."""
    _run_stack("env")


@dev.command(name="service")
@click.argument("action", type=click.Choice(["start", "stop", "kill", "restart"]))
@click.argument("services", nargs=-1, required=True)
def service(action: str, services: tuple[str, ...]) -> None:
    """Start, stop, kill -9 or restart single services (fault injection)."""
    _run_stack(action, *services)


def _load(config_file: Path) -> CdcConfig:
    try:
        config = load_config(config_file)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    setup_logging(config.log.level, config.log.format)
    return config


def _log_code_path(what: str) -> None:
    from cdc import native

    logging.getLogger("cdc").info("%s: %s", what, native.summary())


@main.command()
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The source's name in the config.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve metrics on this port instead of metrics.port (cdc run sets it).")
def source(config_file: Path, name: str, metrics_port: int | None) -> None:
    """Run one source: snapshot if needed, then stream changes into Kafka."""
    from cdc.observability.metrics import serve_source_metrics
    from cdc.runtime.gcpolicy import settle_heap
    from cdc.runtime.lease import fence, start_lease
    from cdc.runtime.pipeline import build_source_runner, stop_on_signals

    config = _load(config_file)
    _log_code_path(f"source {name}")
    stop = threading.Event()
    stop_on_signals(stop)
    if _snapshot_replication(config, name, stop, metrics_port):
        return
    lease = None
    try:
        # sources[].ha: waits as a standby, alive (/healthz) but not ready (/readyz)
        waiting = _serve_standby(config, name, metrics_port)
        try:
            lease = start_lease(config, name, stop)
        finally:
            if waiting is not None:
                waiting.close()  # the runner's own endpoint takes the port over
        if lease is not None and not lease.valid():
            return  # stopped while standing by
        runner = build_source_runner(config, name, stop)
        if lease is not None:
            fence(runner, lease)  # produces and records offsets only while the lease holds
        serve_source_metrics(runner, config.metrics, metrics_port)
        settle_heap()
        runner.run()
    except NeedsOperatorError as e:
        logging.getLogger("cdc").error("source %s stopped: %s", name, e)
        sys.exit(EXIT_NEEDS_OPERATOR)
    except CdcError as e:
        raise click.ClickException(f"source {name}: {e}") from e
    finally:
        if lease is not None:
            lease.release()


def _snapshot_replication(config: CdcConfig, name: str, stop: threading.Event,
                          metrics_port: int | None) -> bool:
    """Run the schedule of a snapshot-replication source (True), else False."""
    source_cfg = next((s for s in config.sources if s.name == name), None)
    if source_cfg is None or source_cfg.snapshot_replication is None:
        return False
    # imported only here: about 3 MB resident that a streaming source does not need
    from cdc.snapshot.service import run_scheduler

    try:
        run_scheduler(config, source_cfg, stop, metrics_port)
    except CdcError as e:
        raise click.ClickException(f"source {name}: {e}") from e
    return True


def _serve_standby(config: CdcConfig, name: str, port: int | None) -> WorkerEndpoint | None:
    """The probes of a source of an HA pair while it waits for the lease (None: no HA)."""
    from cdc.observability.health import STANDBY, Health
    from cdc.observability.server import serve_worker

    source = next((s for s in config.sources if s.name == name), None)
    if source is None or not source.ha.enabled:
        return None
    health = Health("source", name, initial=STANDBY)
    health.set_state(STANDBY)
    return serve_worker([], health, config.metrics, port)


@main.command(name="reset-source")
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The source's name in the config.")
@click.option("--release", is_flag=True,
              help="Also drop what the source holds on the server (PostgreSQL: its slot).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset_source(config_file: Path, name: str, release: bool, yes: bool) -> None:
    """Forget a source's stored position: its next start snapshots anew.

    cdc never drops a replication slot by itself; --release does, on purpose.
    """
    from cdc.offsets.store import OffsetStore
    from cdc.registry import get_connector
    from cdc.runtime.pipeline import find_source

    config = _load(config_file)
    try:
        source_cfg = find_source(config, name)
        what = "offsets" + (" and server-side state (replication slot)" if release else "")
        if not yes:
            click.confirm(f"Reset {what} of source {name}?", abort=True)
        if release:
            done = get_connector(source_cfg.kind).release_source(source_cfg, name=name)
            click.echo(done or "nothing held on the server")
        kafka = config.kafka
        client = dict(kafka.common_client_config())  # security settings included
        client.pop("bootstrap.servers", None)
        OffsetStore(kafka.bootstrap_servers, kafka.offsets_topic, settings=client,
                    replication_factor=kafka.topics.replication_factor).reset(name)
        click.echo(f"offsets of {name} reset")
    except CdcError as e:
        raise click.ClickException(str(e)) from e


@main.command(name="check")
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=Path))
def check(config_file: Path) -> None:
    """Check FILE against the live servers: sources, replicas, Kafka, registry.

    Runs every check of `cdc config check`, then contacts every server the
    file names (each source connector's preflight, each replica, Kafka with
    the configured security settings, the schema registry) and looks for
    topics that would write one replica table; with master_master, warns of
    nodes that can generate the same key and tables without full
    before-images. Exit 0: ready (warnings allowed); 2: problems.
    """
    from cdc.config.cli import EXIT_INVALID, print_invalid
    from cdc.config.loader import inspect_config
    from cdc.config.problems import ConfigValidationError
    from cdc.multiwriter import multi_writer_warnings
    from cdc.preflight import check_live

    try:
        report = inspect_config(config_file, os.environ)
    except (ConfigValidationError, ConfigError) as e:
        print_invalid(config_file, e)
        raise SystemExit(EXIT_INVALID) from None
    setup_logging("WARNING", report.config.log.format)
    problems = check_live(report.config)
    for w in [*report.warnings, *multi_writer_warnings(report.config)]:
        click.echo(f"  warning: {w}")
    if problems:
        n = len(problems)
        click.echo(f"{config_file}: {n} problem{'s' if n != 1 else ''} on the live servers")
        for p in problems:
            note = " (not fatal: the source would start)" if p.warning else ""
            click.echo(f"  error: {p}{note}")
        raise SystemExit(EXIT_INVALID)
    click.echo(f"{config_file}: ready (sources, replicas, Kafka and the schema registry checked)")


@main.command()
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--only", multiple=True, help="Run only these sources/sinks (repeatable).")
@click.option("--restart", "restart", type=click.Choice(["on-failure", "never"]),
              default="on-failure", show_default=True,
              help="on-failure: restart a failed process with capped exponential backoff "
                   "(1 s doubling to 60 s), the others go on. never: the first failure stops "
                   "every process and cdc run exits with its code (for orchestrators).")
def run(config_file: Path, only: tuple[str, ...], restart: str) -> None:
    """Run the whole pipeline: every source and sink in its own process.

    A process that exits 0 (an initial_only source) has finished; cdc run exits
    0 when all have. SIGTERM/SIGINT stop every process gracefully.
    """
    from cdc.runtime.pipeline import RestartPolicy, supervise

    config = _load(config_file)
    try:
        rc = supervise(config_file, config, only, RestartPolicy(restart))
    except CdcError as e:
        raise click.ClickException(str(e)) from e
    sys.exit(rc)


if __name__ == "__main__":
    main()
