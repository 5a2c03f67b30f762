"""Native speed-ups: every ``_c*.c`` file under cdc/ and connectors/ is one C extension.

They are optional (``optional=True``): without a C compiler the install still
succeeds and ``cdc.native`` falls back to the pure-Python code paths, which
stay the reference the native ones are tested against.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent


def _extensions() -> list[Extension]:
    found = []
    for pkg in ("cdc", "connectors"):
        for src in sorted((HERE / pkg).rglob("_c*.c")):
            rel = src.relative_to(HERE)
            name = ".".join(rel.with_suffix("").parts)
            found.append(
                Extension(name, [str(rel)], optional=True, extra_compile_args=["-O2", "-std=c11"])
            )
    return found


setup(ext_modules=_extensions())
