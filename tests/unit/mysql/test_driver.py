"""PyMySQL with ``cryptography`` deferred: not loaded by the connector, and the
RSA password encryption of MySQL 8 logins still right when a login needs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROOT = Path(__file__).resolve().parents[3]

# A fresh interpreter: this one has imported cryptography (and maybe PyMySQL) already.
CHILD = r"""
import json, sys
import connectors.mysql.sink.session, connectors.mysql.source.connector
import pymysql._auth as auth
loaded_before = "cryptography" in sys.modules
args = json.loads(sys.stdin.read())
out = auth.sha2_rsa_encrypt(args["password"].encode(), bytes.fromhex(args["salt"]),
                            args["pem"].encode())
print(json.dumps({"before": loaded_before, "after": "cryptography" in sys.modules,
                  "cipher": out.hex()}))
"""


def test_cryptography_loads_only_for_an_rsa_login() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    salt = bytes(range(1, 21))
    run = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, check=True,
        input=json.dumps({"password": "s3cret", "salt": salt.hex(), "pem": pem}))
    got = json.loads(run.stdout)
    assert got["before"] is False
    assert got["after"] is True
    plain = key.decrypt(bytes.fromhex(got["cipher"]), padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    # The login's message: the password and a NUL, XORed with the salt (repeating).
    expected = bytes(b ^ salt[i % len(salt)] for i, b in enumerate(b"s3cret\0"))
    assert plain == expected


def test_nothing_is_deferred_when_pymysql_is_already_imported() -> None:
    import pymysql  # noqa: F401

    from connectors.mysql.driver import import_pymysql

    assert import_pymysql() is False


FAKE_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
from connectors.mysql.driver import import_pymysql
deferred = import_pymysql()
import pymysql._auth as auth
print(deferred, auth.__file__.startswith(sys.argv[1]), auth.imports)
"""


def test_an_unknown_pymysql_is_imported_the_ordinary_way(tmp_path: Path) -> None:
    # A PyMySQL whose _auth module is not the shape driver.py knows (no
    # _have_cryptography flag): it is imported again, cryptography allowed.
    pkg = tmp_path / "pymysql"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import _auth\n")
    (pkg / "_auth.py").write_text(
        "imports = 0\n"
        "try:\n"
        "    import cryptography\n"
        "    imports += 1\n"
        "except ImportError:\n"
        "    pass\n")
    run = subprocess.run([sys.executable, "-c", FAKE_CHILD, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "True", "1"]
