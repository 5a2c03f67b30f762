"""``cdc snapshot incremental``: start (or stop) an incremental snapshot by a signal row.

The command only writes an ``execute-snapshot`` (``--stop``: ``stop-snapshot``)
row into the source's signal table, the way an operator could with SQL; the
running source sees it in its change stream and copies the tables while it
streams (:mod:`cdc.runtime.incremental`). It belongs to the ``cdc snapshot``
group; registered with one line where that group is defined.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import click

from cdc.config import load_config
from cdc.errors import CdcError, ConfigError
from cdc.runtime.incremental import EXECUTE, STOP, execute_data, stop_data


@click.command(name="incremental")
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", "source_name", required=True, help="The source's name in the config.")
@click.option("--table", "tables", multiple=True,
              help="A captured table to copy, schema.table (database.table on MySQL); "
              "repeat for several. With --stop and no --table: stop every table.")
@click.option("--filter", "condition", default=None,
              help="SQL condition on the rows to copy (applies to every --table), "
              "e.g. \"region = 'eu'\".")
@click.option("--stop", is_flag=True, help="Stop the incremental snapshot of these tables.")
def incremental_command(config_file: Path, source_name: str, tables: tuple[str, ...],
                        condition: str | None, stop: bool) -> None:
    """Copy tables into a running pipeline without pausing its stream (a signal row).

    The source must have `signal.table` configured and be running (or start
    later: the signal waits in its stream). Rows already in the replica are
    upserted; rows only in the replica are left alone.
    """
    from cdc.registry import get_connector
    from cdc.runtime.pipeline import find_source
    from cdc.spi import SnapshotsIncrementally

    if not tables and not stop:
        raise click.UsageError("name at least one --table")
    try:
        config = load_config(config_file)
        cfg = find_source(config, source_name)
        if cfg.signal is None:
            raise ConfigError(f"source {source_name} has no signal table",
                              hint=f"set sources[{source_name}].signal.table, e.g. "
                              "{table: public.cdc_signal}, include it in tables.include, "
                              "and restart the source")
        source = get_connector(cfg.kind).create_source(cfg, name=cfg.name)
        try:
            if not isinstance(source, SnapshotsIncrementally):
                raise ConfigError(f"a {cfg.kind} source cannot take incremental snapshots")
            if not stop:
                for t in tables:
                    if source.resolve_table(t) is None:
                        raise ConfigError(
                            f"table {t} does not exist or source {source_name} does not "
                            "capture it", hint="add it to the source's tables.include and "
                            "restart the source first (PostgreSQL: it joins the publication)")
            signal_id = uuid.uuid4().hex
            if stop:
                source.write_signal(signal_id, STOP, stop_data(tables))
            else:
                data = execute_data(tables, {t: condition for t in tables} if condition else None)
                source.write_signal(signal_id, EXECUTE, data)
        finally:
            source.close()
    except CdcError as e:
        raise click.ClickException(str(e)) from e
    what = "stop-snapshot" if stop else "execute-snapshot"
    click.echo(f"{what} signal {signal_id} written to {cfg.signal.table}")
