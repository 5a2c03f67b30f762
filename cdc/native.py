"""Loads the optional C speed-ups (setup.py builds every ``_c*.c`` file).

Each native module mirrors a pure-Python path that stays the reference: the
tests run both and compare them byte for byte. ``CDC_NATIVE=0`` forces the
Python paths (to compare, or to rule the C code out when debugging).
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

log = logging.getLogger(__name__)

_missing: set[str] = set()


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
            _missing.add(module)
            log.warning(
                "native module %s unavailable (%s): using the slower pure-Python path; "
                "rebuild with `make native`", module, e,
            )
        return None
