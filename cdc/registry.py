"""Connectors by kind, found through the ``cdc.connectors`` entry-point group.

The engine never imports a connector by name: a config's ``kind: postgres``
is looked up here, so a new database is a new package declaring an entry
point, with no engine change. Entry points are loaded on first use and
cached; a kind nobody registered gets an error listing the kinds that exist.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from cdc.errors import ConfigError, PositionError, SchemaError
from cdc.spi import Connector, PositionCodec, SourceBlock

if TYPE_CHECKING:  # cdc.config imports this module; keep the import one-way at run time
    from cdc.config.sinks import SinkConfigBase
    from cdc.config.sources import SourceConfigBase

GROUP = "cdc.connectors"


class ConnectorRegistry:
    """Connectors by kind: from entry points (loaded lazily) or given directly.

    Giving connectors directly is for tests and embedding; a deployment uses
    :func:`default_registry`, which reads the installed entry points.
    """

    def __init__(
        self, entry_points: Iterable[EntryPoint] = (), *, connectors: Iterable[Connector] = ()
    ) -> None:
        self._entry_points: dict[str, EntryPoint] = {}
        self._conflicts: dict[str, set[str]] = {}
        for ep in entry_points:
            prev = self._entry_points.get(ep.name)
            if prev is not None and prev.value != ep.value:
                # Two distributions claim one kind: refusing beats picking one at random.
                self._conflicts.setdefault(ep.name, {prev.value}).add(ep.value)
            self._entry_points[ep.name] = ep
        self._loaded: dict[str, Connector] = {c.kind: c for c in connectors}
        self._lock = threading.Lock()
        self._codecs: dict[str, PositionCodec] = {}
        self._blocks: dict[str, SourceBlock] | None = None
        self._broken_blocks: tuple[str, ...] = ()

    @classmethod
    def from_entry_points(cls, group: str = GROUP) -> ConnectorRegistry:
        return cls(entry_points(group=group))

    def kinds(self) -> tuple[str, ...]:
        """Every registered kind, sorted (loading none of them)."""
        return tuple(sorted(set(self._entry_points) | set(self._loaded)))

    def __contains__(self, kind: object) -> bool:
        return kind in self._loaded or kind in self._entry_points

    def get(self, kind: str) -> Connector:
        """The connector for ``kind``; ConfigError if unknown or broken."""
        with self._lock:
            found = self._loaded.get(kind)
            if found is not None:
                return found
            ep = self._entry_points.get(kind)
            if ep is None:
                raise self._unknown(kind)
            if kind in self._conflicts:
                raise ConfigError(
                    f"connector kind {kind!r} is registered by several packages: "
                    f"{', '.join(sorted(self._conflicts[kind]))}",
                    hint="uninstall all but one of them",
                )
            connector = self._load(ep)
            self._loaded[kind] = connector
            return connector

    def connectors(self) -> tuple[Connector, ...]:
        """Every registered connector, loaded, in kind order."""
        return tuple(self.get(k) for k in self.kinds())

    def position_codec(self, kind: str) -> PositionCodec:
        """The position codec of ``kind``'s connector; PositionError naming the kind
        and the installed kinds when no connector of that kind is installed."""
        codec = self._codecs.get(kind)
        if codec is not None:
            return codec
        if kind not in self:
            raise PositionError(
                f"unknown position kind {kind!r} (its connector is not installed); installed "
                f"kinds: {', '.join(self.kinds()) or 'none'}"
            )
        codec = self.get(kind).position_codec()
        if codec.kind != kind:
            raise ConfigError(
                f"connector {kind!r} returns a position codec of kind {codec.kind!r}",
                hint="a connector's positions have its own kind: fix the connector package",
            )
        self._codecs[kind] = codec
        return codec

    def source_block(self, connector: str) -> SourceBlock:
        """The source block named ``connector`` (SourceInfo.connector) among every
        installed connector's; SchemaError naming the known ones when none is."""
        blocks = self._blocks
        if blocks is None:
            # Every connector is asked; one that fails to load costs only its own blocks.
            found: dict[str, SourceBlock] = {}
            broken: list[str] = []
            for kind in self.kinds():
                try:
                    owned = self.get(kind).source_blocks()
                except ConfigError as e:
                    broken.append(f"{kind} ({e})")
                    continue
                for block in owned:
                    found.setdefault(block.connector, block)
            blocks = self._blocks = found
            self._broken_blocks = tuple(broken)
        found_block = blocks.get(connector)
        if found_block is None:
            unloadable = (
                f"; connectors that failed to load: {', '.join(self._broken_blocks)}"
                if self._broken_blocks
                else ""
            )
            raise SchemaError(
                f"unknown connector {connector!r} in SourceInfo; installed source blocks: "
                f"{', '.join(sorted(blocks)) or 'none'}{unloadable}"
            )
        return found_block

    def source_config_model(self, kind: str) -> type[SourceConfigBase] | None:
        """The kind's source model, or None if the connector has no source."""
        from cdc.config.sources import SourceConfigBase

        model: type[SourceConfigBase] | None = _model(
            self.get(kind), "source_config_model", SourceConfigBase
        )
        return model

    def sink_config_model(self, kind: str) -> type[SinkConfigBase] | None:
        """The kind's sink model, or None if the connector has no sink."""
        from cdc.config.sinks import SinkConfigBase

        model: type[SinkConfigBase] | None = _model(
            self.get(kind), "sink_config_model", SinkConfigBase
        )
        return model

    def _unknown(self, kind: str) -> ConfigError:
        known = self.kinds()
        if not known:
            return ConfigError(
                f"unknown connector kind {kind!r}: no connectors are registered",
                hint=f"install cdc (pip install -e .) so its {GROUP!r} entry points exist",
            )
        close = difflib.get_close_matches(kind, known, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        return ConfigError(
            f"unknown connector kind {kind!r}", hint=f"{guess}known kinds: {', '.join(known)}"
        )

    @staticmethod
    def _load(ep: EntryPoint) -> Connector:
        try:
            obj = ep.load()
        except Exception as e:
            raise ConfigError(
                f"connector {ep.name!r} ({ep.value}) failed to load: {type(e).__name__}: {e}",
                hint="reinstall the package that provides it, or remove the sources and sinks "
                "of this kind",
            ) from e
        if not isinstance(obj, Connector):
            raise ConfigError(
                f"entry point {ep.name!r} ({ep.value}) is not a cdc.spi.Connector",
                hint="the entry point must name the connector object, e.g. connectors.x:CONNECTOR",
            )
        if obj.kind != ep.name:
            raise ConfigError(
                f"entry point {ep.name!r} loads a connector of kind {obj.kind!r}",
                hint="make the entry-point name and the connector's kind the same",
            )
        return obj


def _model(connector: Connector, method: str, base: type[Any]) -> Any:
    try:
        model = getattr(connector, method)()
    except NotImplementedError:
        return None
    if not (isinstance(model, type) and issubclass(model, base)):
        raise ConfigError(
            f"connector {connector.kind!r}: {method}() returned {model!r}, not a {base.__name__} subclass",
            hint="fix the connector package",
        )
    return model


_default: ConnectorRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> ConnectorRegistry:
    """The registry of installed connectors, read once per process."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ConnectorRegistry.from_entry_points()
        return _default


def set_default_registry(registry: ConnectorRegistry | None) -> None:
    """Replace the process-wide registry (tests, embedding); None re-reads entry points."""
    global _default
    with _default_lock:
        _default = registry


def source_block(connector: str) -> SourceBlock:
    """The installed source block named ``connector`` (SourceInfo.connector)."""
    return default_registry().source_block(connector)


def get_connector(kind: str) -> Connector:
    """The installed connector for ``kind``; ConfigError listing known kinds if none."""
    return default_registry().get(kind)
