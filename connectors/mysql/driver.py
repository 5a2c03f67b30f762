"""PyMySQL, imported without loading ``cryptography`` until a login needs it.

PyMySQL imports ``cryptography`` when it is imported, for one purpose: encrypting
the password with the server's RSA key in MySQL 8's ``caching_sha2_password``
and ``sha256_password`` logins over a connection without TLS. Loading it (a Rust
extension and its OpenSSL bindings) costs about 8 MB of resident memory in every
MySQL/MariaDB worker, source and sink alike (docs/BENCHMARKS.md), while
MariaDB's default login and any TLS connection never use it.

:func:`import_pymysql` imports PyMySQL with ``cryptography`` hidden, then gives
``pymysql._auth`` the names it uses for that encryption as stand-ins that import
``cryptography`` on first use. If PyMySQL's module no longer has the shape this
relies on, it is imported again the ordinary way: memory is lost, nothing else.
tests/unit/mysql/test_driver.py runs the encryption through the stand-ins with a
real RSA key. The package runs this first (connectors/mysql/__init__.py), before
any of its modules imports PyMySQL.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

# The names pymysql._auth binds from cryptography, and the modules they come from.
_MODULES = {
    "serialization": "cryptography.hazmat.primitives.serialization",
    "hashes": "cryptography.hazmat.primitives.hashes",
    "padding": "cryptography.hazmat.primitives.asymmetric.padding",
}


class _OnUse:
    """Stands in for module ``name``: imports it on the first attribute use."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


def _default_backend() -> Any:
    from cryptography.hazmat.backends import default_backend

    return default_backend()


def import_pymysql() -> bool:
    """Import PyMySQL with ``cryptography`` deferred; False when nothing was deferred
    (PyMySQL or cryptography already imported, cryptography not installed, or a
    PyMySQL whose ``_auth`` module is not the one this knows)."""
    if "pymysql" in sys.modules or "cryptography" in sys.modules:
        return False
    if importlib.util.find_spec("cryptography") is None:
        return False
    sys.modules["cryptography"] = None  # type: ignore[assignment]  # its import fails at once
    try:
        import pymysql._auth as auth
    finally:
        del sys.modules["cryptography"]
    known = getattr(auth, "_have_cryptography", None) is False and not any(
        hasattr(auth, n) for n in (*_MODULES, "default_backend"))
    if not known:
        importlib.reload(auth)
        return False
    for name, module in _MODULES.items():
        setattr(auth, name, _OnUse(module))
    auth.default_backend = _default_backend
    auth._have_cryptography = True
    return True
