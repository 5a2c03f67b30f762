"""Error taxonomy: every failure is either retriable or fatal, never silent.

Retriable errors (a broker or database that is briefly away) are retried with
bounded backoff by the runtime; fatal ones stop the pipeline with a message
that names the component and says what to do.
"""

from __future__ import annotations

from typing import Final

EXIT_NEEDS_OPERATOR: Final = 78
"""Exit status of a process stopped by an error that restarting cannot fix (the
``EX_CONFIG`` of sysexits): a supervisor should not restart it until someone acts."""


class CdcError(Exception):
    """Base of all cdc errors. ``hint`` tells the operator what to do."""

    retriable: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base


class ConfigError(CdcError):
    """The configuration is invalid; the message names the key."""


class PositionError(CdcError):
    """A position could not be parsed, compared or restored."""


class SchemaError(CdcError):
    """A table or record schema cannot be mapped, registered or evolved."""


class DdlRefused(CdcError):
    """The replica refused a DDL statement the sink planned (create, add or widen a
    column). Restarting cannot help: the process stops with :data:`EXIT_NEEDS_OPERATOR`."""

    def __init__(
        self, message: str, *, statement: str, column: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.statement = statement
        self.column = column

    def one_line(self) -> str:
        """The message and the hint on one line (for one log record)."""
        base = Exception.__str__(self)
        return f"{base}; hint: {self.hint}" if self.hint else base


class SerializationError(CdcError):
    """A value or message could not be encoded or decoded."""


class UnreachableError(CdcError):
    """A service (broker, registry, database) did not answer in time."""

    retriable = True


class DeliveryError(CdcError):
    """Kafka refused or failed to deliver a record; the pipeline must stop."""


class PrerequisiteError(CdcError):
    """A database is not set up for CDC (wal_level, binlog format, privileges...)."""


class RetriableError(CdcError):
    """A transient failure worth retrying (lost connection, deadlock...)."""

    retriable = True


class NeedsOperatorError(CdcError):
    """A guardrail stopped the process on purpose (a retained-log budget reached, a
    lease lost): restarting into the same state cannot help. ``cdc source`` exits
    with :data:`EXIT_NEEDS_OPERATOR`; the message says what to do."""
