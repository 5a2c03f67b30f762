"""The pipeline through servers that require authentication and TLS, and no secret in any output.

deploy/local/secure_stack.py starts (ports from CDC_SECURE_PORT_OFFSET, 10000)
Kafka with only a SASL_SSL/SCRAM-SHA-512 client listener, Apicurio over HTTPS
only, PostgreSQL accepting only hostssl + scram-sha-256 and MariaDB with
require_secure_transport, all with certificates from one self-signed CA.
The test proves plain connections are refused, then runs `cdc config check`,
`cdc check`, `cdc run` (sources and sinks), `cdc verify`, `cdc reset-source`
(and `cdc status` where this tree has it) through them with every password
coming from `${VAR}`, and greps everything they printed and logged for the
secret values. Slow: it starts two more JVMs and two database servers.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest
import yaml

from tests.unit.deploy.helpers import ROOT, load_script

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]
SCRIPT = ROOT / "deploy/local/secure_stack.py"
CDC = [sys.executable, "-m", "cdc.cli"]
SECRET_KEYS = ("SECURE_KAFKA_PASSWORD", "SECURE_PG_PASSWORD", "SECURE_MARIADB_PASSWORD")


@pytest.fixture(scope="module")
def secure() -> Iterator[dict[str, str]]:
    up = subprocess.run([sys.executable, str(SCRIPT), "up"], capture_output=True, text=True, timeout=900)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        env = subprocess.run([sys.executable, str(SCRIPT), "env"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        yield dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
    finally:
        subprocess.run([sys.executable, str(SCRIPT), "down"], capture_output=True, timeout=300)


def _pg(cfg: dict[str, str], db: str = "postgres", **extra: str) -> psycopg.Connection[tuple[object, ...]]:
    params = {"host": cfg["SECURE_PG_HOST"], "port": cfg["SECURE_PG_PORT"], "user": cfg["SECURE_PG_USER"],
              "password": cfg["SECURE_PG_PASSWORD"], "dbname": db, "sslmode": "verify-full",
              "sslrootcert": cfg["SECURE_CA"], **extra}
    return psycopg.connect(**params, autocommit=True)  # type: ignore[arg-type]


def _maria(cfg: dict[str, str], **extra: object) -> pymysql.Connection:  # type: ignore[type-arg]
    kwargs: dict[str, object] = {"host": cfg["SECURE_MARIADB_HOST"], "port": int(cfg["SECURE_MARIADB_PORT"]),
                                 "user": cfg["SECURE_MARIADB_USER"], "password": cfg["SECURE_MARIADB_PASSWORD"],
                                 "ssl": {"ca": cfg["SECURE_CA"]}, "autocommit": True, **extra}
    return pymysql.connect(**kwargs)  # type: ignore[arg-type]


def test_plain_connections_are_refused(secure: dict[str, str]) -> None:
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        _pg(secure, sslmode="disable")
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host=secure["SECURE_MARIADB_HOST"], port=int(secure["SECURE_MARIADB_PORT"]),
                        user=secure["SECURE_MARIADB_USER"], password=secure["SECURE_MARIADB_PASSWORD"],
                        ssl_disabled=True)
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
        urllib.request.urlopen(secure["SECURE_REGISTRY_URL"].replace("https://", "http://") + "/subjects",
                               timeout=5)
    with pytest.raises(urllib.error.URLError):  # an unknown CA is refused too
        urllib.request.urlopen(f"{secure['SECURE_REGISTRY_URL']}/subjects", timeout=5,
                               context=ssl.create_default_context())
    from confluent_kafka.admin import AdminClient

    kafka = load_script(SCRIPT, "cdc_secure_stack").KAFKA
    errors: list[str] = []
    wrong = {**kafka.client_config(secure), "sasl.password": "not-the-password",
             "error_cb": lambda e: errors.append(str(e)), "log_level": 0}
    admin = AdminClient(wrong)
    deadline = time.monotonic() + 30
    while not any("uthentication" in e for e in errors) and time.monotonic() < deadline:
        admin.poll(1)  # serves error_cb
    del admin
    assert any("uthentication" in e for e in errors), errors
    plain = {"bootstrap.servers": secure["SECURE_KAFKA_BOOTSTRAP"], "socket.timeout.ms": 3000}
    with pytest.raises(Exception):  # noqa: B017  (PLAINTEXT to a SASL_SSL listener gets no metadata)
        AdminClient(plain).list_topics(timeout=5)


def _pipeline(run: str, cfg: dict[str, str], src: str, rep: str) -> dict[str, object]:
    pg = {"host": cfg["SECURE_PG_HOST"], "port": int(cfg["SECURE_PG_PORT"]), "user": cfg["SECURE_PG_USER"],
          "password": "${SECURE_PG_PASSWORD}", "sslmode": "verify-full", "sslrootcert": cfg["SECURE_CA"]}
    maria = {"host": cfg["SECURE_MARIADB_HOST"], "port": int(cfg["SECURE_MARIADB_PORT"]),
             "user": cfg["SECURE_MARIADB_USER"], "password": "${SECURE_MARIADB_PASSWORD}",
             "ssl_ca": cfg["SECURE_CA"]}
    return {
        "kafka": {"bootstrap_servers": cfg["SECURE_KAFKA_BOOTSTRAP"],
                  "security": {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                               "username": cfg["SECURE_KAFKA_USER"], "password": "${SECURE_KAFKA_PASSWORD}",
                               "ssl_ca_location": cfg["SECURE_CA"]},
                  "topics": {"partitions": 1, "replication_factor": 1},
                  "offsets_topic": f"{run}.offsets"},
        "schema_registry": {"url": cfg["SECURE_REGISTRY_URL"], "ssl_ca_location": cfg["SECURE_CA"]},
        "sources": [
            {"name": f"{run}_pg", "kind": "postgres", "connection": {**pg, "database": src},
             "tables": {"include": ["public.*"]}, "slot_name": f"{run}_slot",
             "publication_name": f"{run}_pub", "heartbeat_interval_s": 1},
            {"name": f"{run}_my", "kind": "mysql", "connection": maria,
             "tables": {"include": [f"{src}.*"]}, "server_id": 7345, "heartbeat_interval_s": 1},
        ],
        "sinks": [
            {"name": f"{run}_to_pg", "kind": "postgres", "topics": [f"{run}_pg.public.*"],
             "target": {**pg, "database": rep}, "batch": {"max_wait_ms": 100}},
            {"name": f"{run}_to_maria", "kind": "mysql", "topics": [f"{run}_my.{src}.*"],
             "target": {**maria, "database": rep}, "batch": {"max_wait_ms": 100}},
        ],
        "metrics": {"enabled": False},
        "log": {"level": "DEBUG"},
    }


def test_pipeline_runs_through_secured_servers_and_never_prints_a_secret(
        secure: dict[str, str], tmp_path: Path) -> None:
    run = f"sec{uuid.uuid4().hex[:6]}"
    src, rep = f"{run}_src", f"{run}_rep"
    with _pg(secure) as conn:
        conn.execute(f"CREATE DATABASE {src}")
        conn.execute(f"CREATE DATABASE {rep}")
    with _pg(secure, src) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO orders SELECT g, 'before ' || g FROM generate_series(1, 50) g")
    with contextlib.closing(_maria(secure)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {src}")
        cur.execute(f"CREATE DATABASE {rep}")
        cur.execute(f"CREATE TABLE {src}.items (id INT PRIMARY KEY, note VARCHAR(50) NOT NULL)")
        cur.executemany(f"INSERT INTO {src}.items VALUES (%s, %s)", [(i, f"before {i}") for i in range(1, 51)])

    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(_pipeline(run, secure, src, rep), sort_keys=False))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CDC_")},
           **{k: secure[k] for k in SECRET_KEYS}}
    outputs: dict[str, str] = {}

    def cdc(label: str, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([*CDC, *args], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
        outputs[label] = p.stdout + p.stderr
        assert p.returncode == expect, f"cdc {' '.join(args)}: exit {p.returncode}\n{outputs[label]}"
        return p

    cdc("config check", "config", "check", str(config))
    cdc("check", "check", str(config))
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CDC, "run", str(config)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        with _pg(secure, src) as conn:
            conn.execute("UPDATE orders SET note = 'after' WHERE id <= 10")
            conn.execute("INSERT INTO orders SELECT g, 'late ' || g FROM generate_series(51, 60) g")
        with contextlib.closing(_maria(secure)) as conn, conn.cursor() as cur:
            cur.execute(f"UPDATE {src}.items SET note = 'after' WHERE id <= 10")
            cur.execute(f"DELETE FROM {src}.items WHERE id > 45")
        for source in (f"{run}_pg", f"{run}_my"):
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, log.read_text()[-4000:]
                p = subprocess.run([*CDC, "verify", str(config), "--source", source], capture_output=True,
                                   text=True, timeout=300, env=env, cwd=ROOT)
                outputs[f"verify {source}"] = p.stdout + p.stderr
                if p.returncode == 0:
                    break
                assert time.monotonic() < deadline, outputs[f"verify {source}"] + log.read_text()[-3000:]
                time.sleep(2)
            assert "OK " in p.stdout, p.stdout
        status = json.loads(cdc("status", "status", str(config), "--json").stdout)
        assert {s["name"] for s in status["sources"]} == {f"{run}_pg", f"{run}_my"}, status
        cdc("status table", "status", str(config))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    outputs["run"] = log.read_text()
    assert proc.returncode == 0, outputs["run"][-4000:]
    cdc("reset-source pg", "reset-source", str(config), "--name", f"{run}_pg", "--release", "--yes")
    cdc("reset-source my", "reset-source", str(config), "--name", f"{run}_my", "--yes")
    with _pg(secure, src) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                            (f"{run}_slot",)).fetchone() == (0,)

    # A wrong Kafka password: a clear failure, and neither password in it.
    wrong = "wrong-" + uuid.uuid4().hex
    env_ok = env
    env = {**env_ok, "SECURE_KAFKA_PASSWORD": wrong}
    p = cdc("check, wrong Kafka password", "check", str(config), expect=2)
    assert wrong not in p.stdout + p.stderr
    env = env_ok

    for label, text in outputs.items():
        assert text, f"{label} printed nothing"
        for key in SECRET_KEYS:
            assert secure[key] not in text, f"{key} appears in the output of {label}"


def test_mysql_host_name_verification_with_a_private_ca(secure: dict[str, str], tmp_path: Path) -> None:
    from cdc.config import load_config

    config = tmp_path / "pipeline.yaml"
    data = _pipeline("vfy", secure, "mysql", "mysql")
    data["sources"] = [s for s in data["sources"] if s["kind"] == "mysql"]  # type: ignore[index,attr-defined]
    data["sinks"] = [s for s in data["sinks"] if s["kind"] == "mysql"]  # type: ignore[index,attr-defined]
    data["sources"][0]["connection"]["ssl_verify_identity"] = True  # type: ignore[index]
    config.write_text(yaml.safe_dump(data))
    loaded = load_config(config, env={k: secure[k] for k in SECRET_KEYS})
    kwargs = loaded.sources[0].connection.pymysql_kwargs()  # type: ignore[attr-defined]
    # The private CA verifies the server's certificate and its host name.
    pymysql.connect(**kwargs).close()
