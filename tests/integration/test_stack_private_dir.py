"""The local stack starts from a checkout the server users cannot enter (mode 700).

As root, PostgreSQL and MariaDB run as the ``postgres`` and ``mysql`` users; a
checkout in a home directory or under ``mktemp -d`` is closed to them. The
stack's state folder (``CDC_LOCAL_DIR``) is put under such a directory and the
two source databases of a stack on a port offset nobody else uses are started
from it, queried, and stopped with ``down``: no process of that stack may
remain.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack.py"
OFFSET = 7000  # 0/2000/3000... are developer and CI stacks


def processes_running_from(folder: Path) -> list[str]:
    out = []
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            if d.name.isdigit() and (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if str(folder) in cmd:
                    out.append(cmd)
    return out


@pytest.fixture()
def private_state() -> Iterator[tuple[Path, dict[str, str]]]:
    top = Path(tempfile.mkdtemp(prefix="cdc-private-"))  # mode 700, like a home directory
    assert top.stat().st_mode & 0o777 == 0o700
    state = top / "checkout" / ".cdc-local"
    env = {**os.environ, "CDC_LOCAL_DIR": str(state), "CDC_PORT_OFFSET": str(OFFSET)}
    dirs: list[Path] = []
    try:
        yield state, env
    finally:
        down = subprocess.run([sys.executable, str(STACK), "down"], env=env, capture_output=True,
                              text=True, timeout=120)
        link = state / f"stack-{OFFSET}" / "servers"
        if link.is_symlink():
            dirs.append(Path(os.readlink(link)))
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(top, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr


def stack(env: dict[str, str], *args: str) -> str:
    p = subprocess.run([sys.executable, str(STACK), *args], env=env, capture_output=True,
                       text=True, timeout=120, cwd="/")
    assert p.returncode == 0, f"stack.py {' '.join(args)}:\n{p.stdout}{p.stderr}"
    return p.stdout


def test_sources_start_and_stop_from_a_mode_700_directory(
        private_state: tuple[Path, dict[str, str]]) -> None:
    state, env = private_state
    stack(env, "start", "pg-source", "mysql-source")
    dirs = [Path(line) for line in stack(env, "dirs").splitlines()]
    if os.geteuid() == 0:
        # The server users cannot enter the checkout: their files live outside it.
        assert len(dirs) == 2 and not dirs[1].is_relative_to(state.parent.parent), dirs
        assert (state / f"stack-{OFFSET}" / "servers").resolve() == dirs[1].resolve()

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{15432 + OFFSET}/cdc_source",
                         connect_timeout=10, autocommit=True) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")  # it writes, too
    my = pymysql.connect(host="127.0.0.1", port=13306 + OFFSET, user="root", password="",
                         database="cdc_source", connect_timeout=10)
    try:
        with my.cursor() as cur:
            cur.execute("SELECT @@log_bin, @@binlog_format")
            assert cur.fetchone() == (1, "ROW")
            cur.execute("CREATE TABLE t (id int PRIMARY KEY)")
    finally:
        my.close()

    # A second start of running servers only checks them.
    stack(env, "start", "pg-source", "mysql-source")
    stack(env, "down")
    for d in dirs:
        assert processes_running_from(d) == [], d
