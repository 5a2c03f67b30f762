"""Shared by the deployment tests: the repository root, deploy/versions.env, the stack module."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

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


def load_script(path: Path, name: str) -> Any:
    """A standalone script (deploy/local/tools.py, deploy/docker/*.py) as a module."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def tools() -> Any:
    return load_script(ROOT / "deploy/local/tools.py", "cdc_deploy_tools")


def clean_env(**extra: str) -> dict[str, str]:
    """An environment without the caller's settings (no stray KAFKA_VERSION or passwords)."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, **extra}


def compose_config(*global_args: str, files: tuple[Path, ...] = (), env: dict[str, str] | None = None,
                   check: bool = True) -> subprocess.CompletedProcess[str]:
    """`docker compose [GLOBAL ARGS] config --format json` of docker-compose.yml (+ override files)."""
    cmd = [*tools().compose(), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]
    for f in files:
        cmd += ["-f", str(f)]
    cmd += [*global_args, "config", "--format", "json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       env=env if env is not None else clean_env())
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def compose_project(*global_args: str, files: tuple[Path, ...] = ()) -> dict[str, Any]:
    data = json.loads(compose_config(*global_args, files=files).stdout)
    assert isinstance(data, dict)
    return data


def kustomize_build(path: Path) -> list[dict[str, Any]]:
    p = subprocess.run([*tools().kustomize(), str(path)], capture_output=True, text=True, timeout=120,
                       env=clean_env())
    if p.returncode != 0:
        raise AssertionError(f"kustomize {path} failed ({p.returncode}):\n{p.stderr}")
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def cli_parse(command: list[str], path_map: dict[str, Path]) -> tuple[str, dict[str, Any]]:
    """Parses a ``cdc ...`` container command with the real click CLI, without running it.

    Container paths are replaced by the host files mounted there (``path_map``),
    so ``click.Path(exists=True)`` checks the real file. Returns the command
    path ("source", "config check", ...) and its parsed parameters; raises
    click's UsageError/BadParameter on an unknown option or a bad value.
    """
    import click

    from cdc.cli import main as cli

    assert command and command[0] == "cdc", command
    args = [str(path_map.get(a, a)) for a in command[1:]]
    def remaining(ctx: click.Context) -> list[str]:
        with warnings.catch_warnings():  # Click 8.2 deprecates protected_args (merged into args in 9)
            warnings.simplefilter("ignore", DeprecationWarning)
            return [*getattr(ctx, "protected_args", []), *ctx.args]

    ctx = cli.make_context("cdc", list(args))
    group: click.Command = cli
    words: list[str] = []
    while isinstance(group, click.Group):
        name, sub, rest = group.resolve_command(ctx, remaining(ctx))
        assert sub is not None and name is not None, f"{command}: no such cdc command"
        words.append(name)
        ctx = sub.make_context(name, list(rest), parent=ctx)
        group = sub
    return " ".join(words), dict(ctx.params)
