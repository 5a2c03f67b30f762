"""Loads the optional C speed-ups (setup.py builds every ``_c*.c`` file).

Each native module mirrors a pure-Python path that stays the reference: the
tests run both and compare them byte for byte. ``CDC_NATIVE=0`` forces the
Python paths (to compare, or to rule the C code out when debugging).

Which path runs is never a secret: :func:`report` lists every native module
of this installation (found next to the sources of ``cdc`` and of each
registered connector package) and whether it loaded; ``cdc --version``
prints it, every source and sink logs it at start, and a source exports it
as the metric ``cdc_native_module_loaded``. ``python -m cdc.native
--require`` exits 1 unless every module loaded (``make native`` and CI).

:func:`positional_constructor` is the one shared speed-up built on a native
module (``cdc._cslots.Maker``), for the sources' per-event value objects.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

_missing: dict[str, str] = {}


def enabled() -> bool:
    return os.environ.get("CDC_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def load(module: str) -> ModuleType | None:
    """The native module, or None (disabled, or not built: logged once)."""
    if not enabled():
        return None
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if module not in _missing:
            _missing[module] = str(e)
            log.warning(
                "native module %s unavailable (%s): using the slower pure-Python path; "
                "rebuild with `make native`", module, e,
            )
        return None


def positional_constructor(cls: type[Any]) -> Callable[..., Any]:
    """A constructor for frozen slotted dataclass ``cls`` taking every field positionally.

    Sources build several such objects per event (position, source block,
    transaction, event); a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, which costs about as much again as
    setting the slots directly. The result sets the slot descriptors
    instead: ``cdc._cslots.Maker`` when that module loads, else a Python
    function compiled for ``cls`` (the reference; ``CDC_NATIVE=0``). Both
    build objects equal to ``cls(*fields)``. A class with ``__post_init__``
    (whose checks must not be skipped) or without ``__slots__`` gets ``cls``
    itself. Call it once per class, at import: the result is what runs per
    event.
    """
    if hasattr(cls, "__post_init__") or not hasattr(cls, "__slots__"):
        return cls
    fields = [f.name for f in dataclasses.fields(cls)]
    slots = load("cdc._cslots")
    if slots is not None:  # the same, in C (cdc/_cslots.c)
        return slots.Maker(cls, tuple(fields))  # type: ignore[no-any-return]
    ns: dict[str, Any] = {"new": object.__new__, "cls": cls}
    body = []
    for i, f in enumerate(fields):
        ns[f"set{i}"] = getattr(cls, f).__set__
        body.append(f"    set{i}(o, {f})")
    src = f"def make({', '.join(fields)}):\n    o = new(cls)\n" + "\n".join(body) + "\n    return o\n"
    exec(compile(src, f"<fast init {cls.__name__}>", "exec"), ns)
    make: Callable[..., Any] = ns["make"]
    return make


@dataclass(frozen=True, slots=True)
class ModuleStatus:
    name: str
    loaded: bool
    detail: str  # the shared object's file name, or why it did not load


def _package_dirs() -> list[tuple[str, Path]]:
    """(dotted name, directory) of ``cdc`` and of every registered connector's top package."""
    roots: dict[str, Path] = {"cdc": Path(__file__).resolve().parent}
    for ep in importlib.metadata.entry_points(group="cdc.connectors"):
        top = ep.module.split(".")[0]
        if top in roots:
            continue
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.submodule_search_locations:
            roots[top] = Path(next(iter(spec.submodule_search_locations)))
    return list(roots.items())


def expected_modules() -> list[str]:
    """Dotted names of every native module: each ``_c*.c`` source or built ``_c*`` extension."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    names: set[str] = set()
    for top, root in _package_dirs():
        for path in root.rglob("_c*"):
            if path.suffix == ".c":
                stem = path.with_suffix("")
            elif path.name.endswith(suffixes):
                stem = path.with_name(path.name.split(".", 1)[0])
            else:
                continue
            names.add(".".join((top, *stem.relative_to(root).parts)))
    return sorted(names)


def _load_alone(name: str, roots: dict[str, Path]) -> ModuleType:
    """Native module ``name``, loaded from its shared object without importing its parent
    packages (ImportError if it is not built or does not load).

    Importing a connector's module the usual way first imports the packages around it
    (its sink or source, the database driver and the driver's dependencies): a process
    of another connector that only checks the module would carry all that (about 12 MB
    resident, docs/BENCHMARKS.md). Loading the file alone runs the same dynamic load
    and module initialisation, which is what can fail. The result is not put in
    ``sys.modules``; an already imported module is returned as is.
    """
    if (mod := sys.modules.get(name)) is not None:
        return mod
    top, *rest = name.split(".")
    if top in roots and rest:
        folder = roots[top].joinpath(*rest[:-1])
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = folder / f"{rest[-1]}{suffix}"
            if path.is_file():
                loader = importlib.machinery.ExtensionFileLoader(name, str(path))
                spec = importlib.util.spec_from_file_location(name, path, loader=loader)
                if spec is None:
                    break
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
                return module
    raise ImportError(f"no built extension for {name} (rebuild with `make native`)")


def report() -> list[ModuleStatus]:
    """Every native module and whether it loads here (loads each one's shared object,
    without importing the packages around it; cheap)."""
    out = []
    roots = dict(_package_dirs())
    for name in expected_modules():
        if not enabled():
            out.append(ModuleStatus(name, False, "disabled by CDC_NATIVE=0"))
            continue
        try:
            mod = _load_alone(name, roots)
        except ImportError as e:
            out.append(ModuleStatus(name, False, str(e)))
        else:
            out.append(ModuleStatus(name, True, Path(mod.__file__ or name).name))
    return out


def summary(statuses: list[ModuleStatus] | None = None) -> str:
    """One line: which code path runs, and which native modules loaded."""
    statuses = report() if statuses is None else statuses
    loaded = [s.name for s in statuses if s.loaded]
    missing = [s.name for s in statuses if not s.loaded]
    if not statuses:
        return "code path: python (no native modules in this installation)"
    if not enabled():
        return f"code path: python (CDC_NATIVE=0; {len(statuses)} native modules not used)"
    if not missing:
        return f"code path: native ({len(loaded)}/{len(statuses)} modules: {', '.join(loaded)})"
    kind = "python" if not loaded else "mixed"
    return (
        f"code path: {kind} ({len(loaded)}/{len(statuses)} native modules loaded; "
        f"missing: {', '.join(missing)}; rebuild with `make native`)"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m cdc.native [--require] [--summary]``: print each module's status
    (``--summary``: only the one line)."""
    args = sys.argv[1:] if argv is None else argv
    statuses = report()
    if "--summary" not in args:
        for s in statuses:
            print(f"{'loaded ' if s.loaded else 'MISSING'} {s.name}: {s.detail}")
    print(summary(statuses))
    if "--require" in args and (not statuses or not all(s.loaded for s in statuses)):
        print("native modules required (--require) but not all loaded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
