"""A failed C extension build is never silent; which code path runs is always reported.

The build tests run the project's own setup.py in a scratch copy of the tree
holding one deliberately broken ``_c*.c`` file (nothing in the checkout is
touched): with a compiler present the build must exit non-zero and name the
file; with no compiler (``CC`` pointing nowhere) the install must still
succeed, unless ``CDC_REQUIRE_NATIVE=1`` (CI) demands the extensions.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc import native
from cdc.cli import main

ROOT = Path(__file__).resolve().parents[2]
BROKEN = "/* a deliberately broken extension */\nint this is not C;\n"
GOOD = """#define PY_SSIZE_T_CLEAN
#include <Python.h>
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_cfine", NULL, 0, NULL};
PyMODINIT_FUNC PyInit__cfine(void) { return PyModule_Create(&mod); }
"""


def _tree(tmp_path: Path, source: str, name: str) -> Path:
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    (tmp_path / "cdc").mkdir()
    (tmp_path / "connectors").mkdir()
    (tmp_path / "cdc" / f"{name}.c").write_text(source)
    return tmp_path


def _build(tree: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("CC", "CDC_REQUIRE_NATIVE")}
    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--force"],
        cwd=tree, env={**clean, **env}, capture_output=True, text=True, timeout=120,
    )


needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                              reason="no C compiler on this machine")


@needs_cc
def test_a_broken_extension_fails_the_build_where_a_compiler_exists(tmp_path: Path) -> None:
    done = _build(_tree(tmp_path, BROKEN, "_cbroken"))
    assert done.returncode != 0, done.stdout + done.stderr
    assert "_cbroken.c" in done.stdout + done.stderr
    assert not list(tmp_path.rglob("_cbroken*.so"))


@needs_cc
def test_a_sound_extension_builds_and_so_does_the_broken_check(tmp_path: Path) -> None:
    # the control: the same scratch tree and command succeed with valid C
    done = _build(_tree(tmp_path, GOOD, "_cfine"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(list((tmp_path / "cdc").glob("_cfine*.so"))) == 1


def test_without_a_compiler_the_install_still_succeeds(tmp_path: Path) -> None:
    done = _build(_tree(tmp_path, BROKEN, "_cbroken"), CC="/nonexistent/cc")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not list(tmp_path.rglob("_cbroken*.so"))


def test_require_native_fails_even_without_a_compiler(tmp_path: Path) -> None:
    done = _build(_tree(tmp_path, BROKEN, "_cbroken"), CC="/nonexistent/cc",
                  CDC_REQUIRE_NATIVE="1")
    assert done.returncode != 0, done.stdout + done.stderr


def test_every_c_source_is_a_reported_module() -> None:
    sources = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for pkg in ("cdc", "connectors")
        for p in (ROOT / pkg).rglob("_c*.c")
    }
    assert sources and sources <= set(native.expected_modules())


def test_version_names_the_code_path(monkeypatch: pytest.MonkeyPatch) -> None:
    out = CliRunner().invoke(main, ["--version"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("cdc ")
    assert lines[1].startswith("code path: ")
    statuses = native.report()
    if all(s.loaded for s in statuses):
        assert lines[1].startswith("code path: native (")
        assert all(s.name in lines[1] for s in statuses)
    monkeypatch.setenv("CDC_NATIVE", "0")
    out = CliRunner().invoke(main, ["--version"])
    assert "code path: python (CDC_NATIVE=0" in out.output


def test_a_missing_module_is_named_and_fails_require(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "expected_modules", lambda: ["cdc._cnot_built_here"])
    statuses = native.report()
    assert [s.loaded for s in statuses] == [False]
    assert "missing: cdc._cnot_built_here" in native.summary(statuses)
    assert native.main(["--require", "--summary"]) == 1
    assert native.main([]) == 0


def test_require_fails_make_native_when_a_module_does_not_load(tmp_path: Path) -> None:
    # python -m cdc.native --require, as make native and setup.sh run it, with the
    # Python paths forced: nothing native loads, so the exit status must say so
    env = {**os.environ, "CDC_NATIVE": "0"}
    done = subprocess.run([sys.executable, "-m", "cdc.native", "--summary", "--require"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "code path: python" in done.stdout


def test_report_loads_modules_without_their_packages() -> None:
    # a PostgreSQL process checking the MySQL connector's modules must not import that
    # connector (PyMySQL, cryptography: about 12 MB resident); a fresh interpreter, as
    # the test session has imported everything already
    code = (
        "import sys; from cdc import native; s = native.report(); "
        "print(all(x.loaded for x in s) == native.enabled(), "
        "[m for m in ('pymysql', 'psycopg', 'connectors.mysql.sink', "
        "'connectors.mysql.source', 'connectors.postgres.sink') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "[]"], done.stdout
    # a module loaded alone still imports normally afterwards
    for name in native.expected_modules():
        if native.enabled():
            assert importlib.import_module(name).__name__ == name
