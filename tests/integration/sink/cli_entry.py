"""``cdc sink`` / ``cdc verify`` as a test process would run them.

    python -m tests.integration.sink.cli_entry sink|verify ARGS...

Until the connectors return their sink dialects from ``create_dialect()``
(wired by the lead), this installs a connector registry whose connectors
do (in child processes too); everything else is the real command.
"""

from __future__ import annotations

import sys
from typing import Any

from cdc.registry import ConnectorRegistry, set_default_registry
from cdc.spi import SinkDialect


class WithSinkDialect:
    """A connector, with ``create_dialect`` answered by the sink package."""

    def __init__(self, inner: Any, dialect: SinkDialect) -> None:
        self._inner = inner
        self.kind = inner.kind
        self._dialect = dialect

    def source_config_model(self) -> Any:
        return self._inner.source_config_model()

    def sink_config_model(self) -> Any:
        return self._inner.sink_config_model()

    def create_source(self, config: Any, *, name: str) -> Any:
        return self._inner.create_source(config, name=name)

    def create_dialect(self) -> SinkDialect:
        return self._dialect

    def __getattr__(self, name: str) -> Any:
        # Everything else (position codec, source blocks, table ids) is the connector's own.
        return getattr(self._inner, name)


def install() -> None:
    from connectors.mysql import CONNECTOR as MYSQL
    from connectors.mysql.sink import create_dialect as mysql_dialect
    from connectors.postgres import CONNECTOR as POSTGRES
    from connectors.postgres.sink import create_dialect as pg_dialect

    set_default_registry(ConnectorRegistry(connectors=[
        WithSinkDialect(POSTGRES, pg_dialect()), WithSinkDialect(MYSQL, mysql_dialect())]))


# At import time too: `cdc sink` with several sinks spawns child processes, which
# import this (their parent's main) module but do not run main().
install()


def main() -> None:
    command = sys.argv.pop(1)
    if command == "sink":
        from cdc.sink.cli import sink_command

        sink_command(prog_name="cdc sink")
    else:
        from cdc.verify import verify_command

        verify_command(prog_name="cdc verify")


if __name__ == "__main__":
    main()
