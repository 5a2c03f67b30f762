"""The worker image's install, replayed without Docker: only what the Dockerfile copies, then pip.

The build stage's COPY lines are read from deploy/docker/Dockerfile and only
those files are copied into an empty folder; `pip wheel .` builds there (as
`RUN pip wheel` does), the wheels install into a fresh venv (as the final
stage does), and the installed `cdc` must load its connectors and native
modules and accept the compose pipeline file from outside the checkout. The
base image (python:<PYTHON_VERSION>-slim) itself is not pulled: no engine here.
Slow: it compiles the C extensions and installs every dependency.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.deploy.helpers import ROOT, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _build_stage_copies() -> list[tuple[list[str], str]]:
    text = (ROOT / "deploy/docker/Dockerfile").read_text()
    build = text.split("\nFROM ")[1]  # the first stage, up to the second FROM
    out = []
    for line in build.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, dest = line.split()[1:]
            out.append((sources, dest))
    return out


def test_the_images_install_works_from_only_the_copied_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    copies = _build_stage_copies()
    assert copies
    for sources, dest in copies:
        for s in sources:
            target = src / dest / Path(s).name if dest.endswith("/") else src / dest
            if (ROOT / s).is_dir():
                shutil.copytree(ROOT / s, target, ignore=shutil.ignore_patterns(
                    "__pycache__", "*.so", "*.pyc"))
            else:
                shutil.copy(ROOT / s, target)
    env = clean_env()
    wheels = tmp_path / "wheels"
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), "."],
                       cwd=src, capture_output=True, text=True, timeout=900, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    p = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--no-index", "--find-links", str(wheels),
                        *map(str, wheels.glob("cdc-*.whl"))], capture_output=True, text=True,
                       timeout=900, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]

    version = subprocess.run([str(venv / "bin/cdc"), "--version"], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path, env=env)
    assert version.returncode == 0, version.stderr
    modules = len([p for p in (*ROOT.glob("cdc/**/_c*.c"), *ROOT.glob("connectors/**/_c*.c"))])
    assert f"code path: native ({modules}/{modules}" in version.stdout, version.stdout
    check = subprocess.run([str(venv / "bin/cdc"), "config", "check",
                            str(ROOT / "deploy/docker/pipeline.yaml")],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "pg_main [postgres]" in check.stdout and "mysql_main [mysql]" in check.stdout
    for script in ("workload.py", "registry_init.py"):  # COPY'd into /opt/cdc by the final stage
        p = subprocess.run([str(venv / "bin/python"), str(ROOT / "deploy/docker" / script), "--help"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
        assert p.returncode == 0, p.stderr
