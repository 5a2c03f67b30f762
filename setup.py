"""Native speed-ups: every ``_c*.c`` file under cdc/ and connectors/ is one C extension.

Where a C compiler is present the extensions are required: a build failure
fails the install (and ``make setup``, ``make native``, CI) instead of leaving
the slower pure-Python paths to run unnoticed. Without a compiler they are
optional and the install still succeeds with the pure-Python code paths,
which stay the reference the native ones are tested against.

``CDC_REQUIRE_NATIVE=1`` makes them required even when no compiler is found
(CI sets it); ``CDC_REQUIRE_NATIVE=0`` makes them optional even with one.
``CFLAGS``/``LDFLAGS`` are added to the compiler's and linker's flags as usual
(``make sanitize`` builds an AddressSanitizer copy this way).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sysconfig
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent


def _compiler_found() -> bool:
    """True when the compiler this Python builds extensions with is on PATH."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    words = shlex.split(cc)
    return bool(words) and shutil.which(words[0]) is not None


def _required() -> bool:
    forced = os.environ.get("CDC_REQUIRE_NATIVE", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    return _compiler_found()


def _extensions() -> list[Extension]:
    optional = not _required()
    found = []
    # Headers shared by extensions (cdc/sink/runwalk.h): included as "cdc/sink/...".
    headers = sorted(str(h.relative_to(HERE)) for h in (HERE / "cdc").rglob("*.h"))
    for pkg in ("cdc", "connectors"):
        for src in sorted((HERE / pkg).rglob("_c*.c")):
            rel = src.relative_to(HERE)
            name = ".".join(rel.with_suffix("").parts)
            found.append(
                Extension(name, [str(rel)], optional=optional, include_dirs=["."],
                          depends=headers, extra_compile_args=["-O2", "-std=c11"])
            )
    return found


setup(ext_modules=_extensions())
