"""Shared by the deployment tests: the repository root, deploy/versions.env, the stack module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def read_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "deploy/versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def load_stack() -> Any:
    """deploy/local/stack.py as a module (it is a script, not a package)."""
    if "cdc_local_stack" in sys.modules:
        return sys.modules["cdc_local_stack"]
    spec = importlib.util.spec_from_file_location("cdc_local_stack", ROOT / "deploy/local/stack.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["cdc_local_stack"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod
