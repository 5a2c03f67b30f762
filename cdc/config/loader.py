"""Reading a configuration: YAML file, ``${VAR}`` interpolation, ``CDC_*`` overrides.

The order is: parse the YAML (keeping each key's line for error messages),
replace ``${VAR}`` / ``${VAR:-default}`` in string values (``$${`` is a
literal ``${``), apply environment overrides, then validate everything in one
pass against the model tree assembled from the registered connectors, so a
single run reports every problem at once.

Overrides: ``CDC_<KEY>__<KEY>...=value`` sets a nested key, e.g.
``CDC_KAFKA__BOOTSTRAP_SERVERS=broker:9092``; a list of sources or sinks is
indexed by entry name (or position), e.g.
``CDC_SOURCES__PG_MAIN__CONNECTION__PASSWORD=...``. Only variables whose first
part is a top-level key are overrides (other ``CDC_*`` variables belong to
other tools). Values are strings, converted by validation; a value starting
with ``[`` or ``{`` is parsed as a YAML flow list or mapping (and a mapping is
merged into the existing one).

The model validated against is assembled here as well (:func:`config_model`):
:class:`~cdc.config.pipeline.CdcConfig` with each ``sources``/``sinks`` entry
checked by the model of its ``kind`` among the registered connectors. The
``cdc`` commands read their file through :func:`load_config` (``cdc config
check`` through :func:`inspect_config`, which returns the warnings). This module
contacts no server (``cdc check`` does, in :mod:`cdc.preflight`); checks that
span several entries are in :mod:`cdc.config.checks`, the wording of problems in
:mod:`cdc.config.problems`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BeforeValidator, Discriminator, Field, Tag, ValidationError, create_model
from pydantic_core import PydanticCustomError

from cdc.config import master_master
from cdc.config.checks import cross_check
from cdc.config.pipeline import CdcConfig
from cdc.config.problems import ConfigProblem, ConfigValidationError, Loc, problems_from
from cdc.config.sinks import SinkConfigBase
from cdc.config.sources import SourceConfigBase
from cdc.errors import ConfigError
from cdc.registry import ConnectorRegistry, default_registry

log = logging.getLogger("cdc.config")

ENV_PREFIX = "CDC_"


@dataclass(frozen=True, slots=True)
class ConfigReport:
    """A valid configuration and what looked suspicious in it."""

    config: CdcConfig
    warnings: tuple[ConfigProblem, ...]


# --------------------------------------------------------------------------- model assembly


def _kind_of(value: Any) -> str | None:
    if isinstance(value, Mapping):
        kind = value.get("kind")
        return kind if isinstance(kind, str) else None
    kind = getattr(value, "kind", None)
    return kind if isinstance(kind, str) else None


def _item_type(models: Mapping[str, type[Any]], base: type[Any]) -> Any:
    """A list item validated by the model of its ``kind``."""
    known = ", ".join(sorted(models))
    if not models:

        def refuse(_: Any) -> Any:
            raise PydanticCustomError("unknown_kind", "unknown kind", {"known": ""})

        return Annotated[base, BeforeValidator(refuse)]
    members = tuple(Annotated[m, Tag(k)] for k, m in sorted(models.items()))
    union: Any = members[0] if len(members) == 1 else Union[members]  # noqa: UP007
    return Annotated[
        union,
        Discriminator(
            _kind_of,
            custom_error_type="unknown_kind",
            custom_error_message="unknown kind",
            custom_error_context={"known": known},
        ),
    ]


@functools.lru_cache(maxsize=8)
def _build_model(registry: ConnectorRegistry) -> type[CdcConfig]:
    sources: dict[str, type[SourceConfigBase]] = {}
    sinks: dict[str, type[SinkConfigBase]] = {}
    for kind in registry.kinds():
        if (src := registry.source_config_model(kind)) is not None:
            sources[kind] = src
        if (snk := registry.sink_config_model(kind)) is not None:
            sinks[kind] = snk
    base_fields = CdcConfig.model_fields
    source_list: Any = tuple[_item_type(sources, SourceConfigBase), ...]  # type: ignore[misc]
    sink_list: Any = tuple[_item_type(sinks, SinkConfigBase), ...]  # type: ignore[misc]
    model: type[CdcConfig] = create_model(
        "CdcConfig",
        __base__=CdcConfig,
        __doc__=CdcConfig.__doc__,
        sources=(source_list, Field(default=(), description=base_fields["sources"].description)),
        sinks=(sink_list, Field(default=(), description=base_fields["sinks"].description)),
    )
    return model


def config_model(registry: ConnectorRegistry | None = None) -> type[CdcConfig]:
    """The root model with each registered connector's source and sink models."""
    return _build_model(registry or default_registry())


# --------------------------------------------------------------------------- YAML


def _parse_yaml(text: str, label: str) -> tuple[Any, dict[Loc, int]]:
    """The document and the line of every key and list item, by location."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else {}
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
            # The message only: str(e) quotes the offending line, which may hold a secret.
            what = " ".join(p for p in (e.context, e.problem) if p)
            problem = ConfigProblem(
                (), f"YAML syntax error: {what}", "check indentation and quoting", where
            )
            raise ConfigValidationError([problem], source=label) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{label}: cannot parse YAML: {type(e).__name__}") from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    dupes: list[ConfigProblem] = []
    if node is not None:
        _walk(node, (), lines, dupes, label, 0)
    if dupes:
        raise ConfigValidationError(dupes, source=label)
    return data, lines


def _walk(
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, int],
    dupes: list[ConfigProblem],
    label: str,
    depth: int,
) -> None:
    if depth > 64:  # recursive aliases: positions deeper than this are not worth it
        return
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if (
                not isinstance(key_node, yaml.ScalarNode)
                or key_node.tag == "tag:yaml.org,2002:merge"
            ):
                continue
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                dupes.append(
                    ConfigProblem(
                        (*loc, key),
                        "duplicate key",
                        "remove one: YAML would silently keep the last",
                        f"{label}:{line}",
                    )
                )
            seen.add(key)
            lines[(*loc, key)] = line
            _walk(value_node, (*loc, key), lines, dupes, label, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _walk(item, (*loc, i), lines, dupes, label, depth + 1)


# --------------------------------------------------------------------------- interpolation

_VAR_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VAR_NAME_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


def _interpolate(data: Any, env: Mapping[str, str], loc: Loc, problems: list[ConfigProblem]) -> Any:
    if isinstance(data, dict):
        return {k: _interpolate(v, env, (*loc, k), problems) for k, v in data.items()}
    if isinstance(data, list):
        return [_interpolate(v, env, (*loc, i), problems) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        expr = m.group(1)
        parsed = _VAR_NAME_RE.fullmatch(expr)
        if parsed is None:
            problems.append(
                ConfigProblem(loc, "bad ${...} expression", "write ${NAME} or ${NAME:-default}")
            )
            return ""
        name, default = parsed.groups()
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(
            ConfigProblem(
                loc,
                f"environment variable {name} is not set",
                f"export {name}, or give a default: ${{{name}:-value}}",
            )
        )
        return ""

    return _VAR_RE.sub(sub, data)


# --------------------------------------------------------------------------- env overrides


def _env_value(raw: str) -> Any:
    if raw.lstrip().startswith(("[", "{")):
        return yaml.safe_load(raw)
    return raw


def _merge(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = _merge(out.get(k), v)
        return out
    return new


def _find_item(items: list[Any], seg: str) -> int | None:
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and str(item.get("name", "")).lower() == seg:
            return i
    if seg.isdigit() and int(seg) < len(items):
        return int(seg)
    return None


def _apply_env(
    data: dict[str, Any], env: Mapping[str, str], roots: set[str], problems: list[ConfigProblem]
) -> dict[Loc, str]:
    """Apply ``CDC_*`` overrides in place; returns which variable set which location."""
    provenance: dict[Loc, str] = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX):
            continue
        segs = [s.lower() for s in var[len(ENV_PREFIX) :].split("__")]
        if len(segs) < 2 or segs[0] not in roots:
            continue  # not an override: another tool's CDC_* variable
        origin = f"env {var}"
        if "" in segs:
            problems.append(
                ConfigProblem(
                    (), f"{var}: empty key part", "separate keys with exactly two _", origin
                )
            )
            continue
        try:
            value = _env_value(env[var])
        except yaml.YAMLError:
            problems.append(
                ConfigProblem(
                    (), f"{var}: not a valid YAML list or mapping", "e.g. [a, b] or {k: v}", origin
                )
            )
            continue
        node: Any = data
        loc: Loc = ()
        for depth, seg in enumerate(segs):
            last = depth == len(segs) - 1
            if isinstance(node, list):
                idx = _find_item(node, seg)
                if idx is None:
                    names = [str(x.get("name")) for x in node if isinstance(x, Mapping)]
                    problems.append(
                        ConfigProblem(
                            loc,
                            f"{var}: no entry named '{seg}'",
                            f"entries: {', '.join(names) or '(none)'}; environment variables can "
                            "change entries the file defines, not add them",
                            origin,
                        )
                    )
                    break
                if last:
                    problems.append(
                        ConfigProblem(
                            (*loc, idx),
                            f"{var}: cannot replace a whole entry",
                            f"set keys inside it, e.g. {var}__CONNECTION__HOST",
                            origin,
                        )
                    )
                    break
                node, loc = node[idx], (*loc, idx)
            elif isinstance(node, dict):
                if last:
                    node[seg] = _merge(node.get(seg), value)
                    provenance[(*loc, seg)] = origin
                    break
                child = node.get(seg)
                if child is None:
                    child = node[seg] = {}
                node, loc = child, (*loc, seg)
            else:
                problems.append(
                    ConfigProblem(
                        loc, f"{var}: this key holds a single value, not keys", None, origin
                    )
                )
                break
    return provenance


# --------------------------------------------------------------------------- entry points


def _origin_finder(
    lines: Mapping[Loc, int], provenance: Mapping[Loc, str], label: str
) -> Callable[[Loc], str | None]:
    """Where a key's value came from: the env variable that set it, else its file line."""

    def origin_of(loc: Loc) -> str | None:
        for n in range(len(loc), 0, -1):
            if loc[:n] in provenance:
                return provenance[loc[:n]]
        for n in range(len(loc), 0, -1):
            if loc[:n] in lines:
                return f"{label}:{lines[loc[:n]]}"
        return None

    return origin_of


def _validate(
    data: Any,
    *,
    registry: ConnectorRegistry | None,
    base_dir: Path | None,
    label: str,
    lines: Mapping[Loc, int],
    provenance: Mapping[Loc, str],
    early: list[ConfigProblem],
    masks: frozenset[Loc] = frozenset(),
) -> ConfigReport:
    origin_of = _origin_finder(lines, provenance, label)
    early = [
        p if p.origin else ConfigProblem(p.loc, p.what, p.hint, origin_of(p.loc)) for p in early
    ]
    if not isinstance(data, Mapping):
        early.append(
            ConfigProblem(
                (),
                "the configuration must be a mapping of top-level keys",
                "start with kafka:, schema_registry:, sources:, sinks:",
                label,
            )
        )
        raise ConfigValidationError(early, source=label)
    reg = registry or default_registry()
    data, relocate, expand_problems = master_master.expand(data, _kind_fields(reg))
    early += [ConfigProblem(p.loc, p.what, p.hint, origin_of(p.loc)) for p in expand_problems]
    model = config_model(registry)
    config: CdcConfig | None = None
    failures: list[ConfigProblem] = []
    try:
        config = model.model_validate(data, context={"base_dir": base_dir or Path.cwd()})
    except ValidationError as e:
        failures = _relocated(problems_from(e, model, data, origin_of), relocate, origin_of)
    # Raised outside the except block so the ValidationError (which can quote
    # input values) is not attached to the ConfigError as its context.
    if failures or early:
        # An unset ${VAR} explains any error at that key; don't report it twice.
        failures = [f for f in failures if not any(f.loc[: len(m)] == m for m in masks)]
        raise ConfigValidationError([*early, *failures], source=label)
    assert config is not None
    checked = [
        ConfigProblem(relocate(p.loc), p.what, p.hint, origin_of(relocate(p.loc)), p.warning)
        for p in cross_check(config)
    ]
    errors = [p for p in checked if not p.warning]
    if errors:
        raise ConfigValidationError(errors, source=label)
    return ConfigReport(config, tuple(p for p in checked if p.warning))


def _kind_fields(
    registry: ConnectorRegistry,
) -> Callable[[str], tuple[frozenset[str] | None, frozenset[str] | None]]:
    """The field names of a kind's source and sink models (None: it has none)."""

    def fields(kind: str) -> tuple[frozenset[str] | None, frozenset[str] | None]:
        if kind not in registry:
            return frozenset(), frozenset()  # validation of the generated entries names it
        src = registry.source_config_model(kind)
        snk = registry.sink_config_model(kind)
        return (None if src is None else frozenset(src.model_fields),
                None if snk is None else frozenset(snk.model_fields))

    return fields


def _relocated(
    problems: list[ConfigProblem],
    relocate: Callable[[Loc], Loc],
    origin_of: Callable[[Loc], str | None],
) -> list[ConfigProblem]:
    """Problems of entries generated from ``master_master`` at the keys the user wrote."""
    out: list[ConfigProblem] = []
    for p in problems:
        loc = relocate(p.loc)
        moved = ConfigProblem(loc, p.what, p.hint, origin_of(loc) if loc != p.loc else p.origin,
                              p.warning)
        if moved not in out:  # a node's connection is checked as source and as sink
            out.append(moved)
    return out


def inspect_config(
    path: Path | None,
    env: Mapping[str, str] = os.environ,
    *,
    registry: ConnectorRegistry | None = None,
) -> ConfigReport:
    """Load and validate like :func:`load_config`, returning warnings instead of logging them."""
    label = str(path) if path is not None else "environment"
    data: Any = {}
    lines: dict[Loc, int] = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise ConfigError(
                f"cannot read config file {path}: {reason}", hint="check the path and permissions"
            ) from None
        data, lines = _parse_yaml(text, label)
        if data is None:
            data = {}
    early: list[ConfigProblem] = []
    provenance: dict[Loc, str] = {}
    if isinstance(data, dict):
        data = _interpolate(data, env, (), early)
        masks = frozenset(p.loc for p in early)
        provenance = _apply_env(data, env, set(CdcConfig.model_fields), early)
    else:
        masks = frozenset()
    return _validate(
        data,
        registry=registry,
        base_dir=path.resolve().parent if path is not None else None,
        label=label,
        lines=lines,
        provenance=provenance,
        early=early,
        masks=masks,
    )


def load_config(
    path: Path | None,
    env: Mapping[str, str] = os.environ,
    *,
    registry: ConnectorRegistry | None = None,
) -> CdcConfig:
    """The validated configuration from a YAML file (or only the environment if None).

    Raises :class:`ConfigValidationError` (a ConfigError) listing every
    problem; warnings are logged on the ``cdc.config`` logger.
    """
    report = inspect_config(path, env, registry=registry)
    for w in report.warnings:
        log.warning("config: %s", w)
    return report.config


def validate_config(
    data: Mapping[str, Any],
    *,
    registry: ConnectorRegistry | None = None,
    base_dir: Path | None = None,
) -> CdcConfig:
    """Validate an already-parsed configuration (no interpolation, no overrides)."""
    report = _validate(
        data,
        registry=registry,
        base_dir=base_dir,
        label="config",
        lines={},
        provenance={},
        early=[],
    )
    for w in report.warnings:
        log.warning("config: %s", w)
    return report.config
