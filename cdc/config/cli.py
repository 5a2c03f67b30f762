"""``cdc config ...``: check a configuration file, print its schema or reference.

Registered by ``cdc/cli.py`` with ``main.add_command(config_group)``. ``check``
exits 2 on an invalid file (like a usage error) so scripts and CI can tell
"bad config" from "ran and failed".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from cdc.config.docs import DOC_PATH, render_markdown
from cdc.config.loader import config_model, inspect_config
from cdc.config.pipeline import CdcConfig
from cdc.config.problems import ConfigValidationError
from cdc.errors import ConfigError

EXIT_INVALID = 2


@click.group("config")
def config_group() -> None:
    """Validate and describe pipeline configuration files."""


def _summary(config: CdcConfig) -> list[str]:
    lines = [
        f"kafka: {config.kafka.bootstrap_servers}   schema registry: {config.schema_registry.url}"
    ]
    lines.append(f"sources ({len(config.sources)}):")
    for s in config.sources:
        lines.append(f"  {s.name} [{s.kind}] -> topics {s.topic_prefix}.*")
    lines.append(f"sinks ({len(config.sinks)}):")
    for k in config.sinks:
        selection = k.topic_regex if k.topic_regex is not None else ", ".join(k.topics)
        lines.append(f"  {k.name} [{k.kind}] <- {selection} (group {k.consumer_group})")
    return lines


def print_invalid(file: Path, e: ConfigError) -> None:
    """Print why ``file`` is not a valid configuration (every problem, if known)."""
    if isinstance(e, ConfigValidationError):
        n = len(e.problems)
        click.echo(f"{file}: {n} problem{'s' if n != 1 else ''}")
        for p in e.problems:
            click.echo(f"  error: {p}")
    else:
        click.echo(f"{file}: error: {e}")


@config_group.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--no-env", is_flag=True, help="Ignore CDC_* overrides and ${VAR} values from the environment."
)
def check(file: Path, no_env: bool) -> None:
    """Validate FILE; print every problem (exit 2) or a summary (exit 0).

    Reads only the file: no server is contacted (`cdc check FILE` does that).
    """
    env = {} if no_env else os.environ
    try:
        report = inspect_config(file, env)
    except ConfigError as e:
        print_invalid(file, e)
        raise SystemExit(EXIT_INVALID) from None
    click.echo(f"{file}: valid")
    for line in _summary(report.config):
        click.echo(f"  {line}")
    for w in report.warnings:
        click.echo(f"  warning: {w}")


@config_group.command("schema")
def schema() -> None:
    """Print the JSON Schema of configuration files (for editors and CI)."""
    click.echo(json.dumps(config_model().model_json_schema(), indent=2, sort_keys=True))


@config_group.command("docs")
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"Write here instead of printing (the committed copy is {DOC_PATH}).",
)
def docs(output: Path | None) -> None:
    """Print (or write) the configuration reference generated from the models."""
    text = render_markdown(config_model())
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
