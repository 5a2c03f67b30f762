"""The compose workers' exact commands and environment, run against the local stack.

`docker compose config` (the real Compose CLI, offline) gives each service's
command and environment. They run here as processes, with only what a Docker
network would provide mapped to the local stack: the service host names and
ports (`kafka:9092` -> the local broker, `pg-source` -> 127.0.0.1:15432, ...),
the passwords (the local servers have none), the container paths (the
mounted pipeline file, the image's /opt/cdc scripts), and, so that the run
shares nothing with other users of the stack, unique databases, topic
prefixes, slot, consumer groups, offsets topic and metrics ports through the
documented `CDC_*` overrides. The demo workload services write rows, the
source and sink workers replicate them, `cdc verify` must then find each
replica equal to its source, and the compose healthchecks pass against the
running workers.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pymysql
import pytest

from tests.fixtures.services import mysql_kwargs
from tests.unit.deploy.helpers import ROOT, compose_project

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
CDC = Path(sys.executable).parent / "cdc"  # the console script the image's `cdc` is
PIPELINE_IN_CONTAINER = "/etc/cdc/pipeline.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _host_command(command: list[str]) -> list[str]:
    """The container command with the image's paths replaced by this checkout's files."""
    out = []
    for word in command:
        if word == "cdc" and not out:
            out.append(str(CDC))
        elif word == "python" and not out:
            out.append(sys.executable)
        elif word == PIPELINE_IN_CONTAINER:
            out.append(str(ROOT / "deploy/docker/pipeline.yaml"))
        elif word.startswith("/opt/cdc/"):
            out.append(str(ROOT / "deploy/docker" / Path(word).name))
        else:
            out.append(word)
    return out


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return compose_project()


def test_compose_workers_replicate_against_the_local_stack(
    project: dict[str, Any], kafka_bootstrap: str, schema_registry_url: str, pg_source_dsn: str,
    pg_replica_dsn: str, mysql_source_url: str, mysql_replica_url: str, tmp_path: Path,
) -> None:
    run = f"ops{uuid.uuid4().hex[:8]}"
    src_db, rep_db = f"{run}_src", f"{run}_rep"
    services = project["services"]
    hosts = {  # compose service -> the local stack's address
        "pg-source": urlparse(pg_source_dsn), "pg-replica": urlparse(pg_replica_dsn),
        "mysql-source": urlparse(mysql_source_url), "mysql-replica": urlparse(mysql_replica_url),
    }
    pg_admin_src = pg_source_dsn
    pg_admin_rep = pg_replica_dsn
    for dsn in (pg_admin_src, pg_admin_rep):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {src_db if dsn == pg_admin_src else rep_db}")
    for url, db in ((mysql_source_url, src_db), (mysql_replica_url, rep_db)):
        with contextlib.closing(pymysql.connect(**mysql_kwargs(url))) as conn:  # type: ignore[arg-type]
            conn.cursor().execute(f"CREATE DATABASE {db} DEFAULT CHARACTER SET utf8mb4")

    def host_env(service: str) -> dict[str, str]:
        env = dict(services[service].get("environment") or {})
        for key, value in list(env.items()):
            if key.endswith("_HOST"):
                addr = hosts[value]
                env[key] = addr.hostname or "127.0.0.1"
                env[key[:-5] + "_PORT"] = str(addr.port)
            elif key.endswith("_PASSWORD"):
                env[key] = ""  # the local stack's servers have no passwords
            elif key.endswith("_DB"):
                env[key] = src_db if "_SOURCE_" in key else rep_db
        assert env.pop("KAFKA_BOOTSTRAP") == "kafka:9092"
        assert env.pop("SCHEMA_REGISTRY_URL").startswith("http://registry:8080/")
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("CDC_")},
            **env,
            "KAFKA_BOOTSTRAP": kafka_bootstrap, "SCHEMA_REGISTRY_URL": schema_registry_url,
            # Unique names on the shared stack (the documented CDC_* overrides).
            "CDC_KAFKA__OFFSETS_TOPIC": f"{run}.offsets",
            "CDC_SOURCES__PG_MAIN__TOPIC_PREFIX": f"{run}_pg",
            "CDC_SOURCES__PG_MAIN__SLOT_NAME": f"{run}_slot",
            "CDC_SOURCES__PG_MAIN__PUBLICATION_NAME": f"{run}_pub",
            "CDC_SOURCES__MYSQL_MAIN__TOPIC_PREFIX": f"{run}_my",
            "CDC_SOURCES__MYSQL_MAIN__SERVER_ID": str(6000 + int(run[3:7], 16) % 999),
            "CDC_SINKS__REPLICA_PG__TOPICS": f"[{run}_pg.public.*]",
            "CDC_SINKS__REPLICA_PG__CONSUMER_GROUP": f"{run}-replica-pg",
            "CDC_SINKS__REPLICA_MYSQL__TOPICS": f"[{run}_my.{src_db}.*]",
            "CDC_SINKS__REPLICA_MYSQL__CONSUMER_GROUP": f"{run}-replica-mysql",
            "CDC_METRICS__HOST": "127.0.0.1", "CDC_METRICS__PORT": str(_free_port()),
            "CDC_LOG__LEVEL": "INFO",
        }

    def workload(service: str, transactions: int) -> None:
        cmd = [*_host_command(services[service]["command"]), "--transactions", str(transactions),
               "--rate", "0", "--seed", "7"]
        p = subprocess.run(cmd, env=host_env(service), capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"workload: {transactions} transactions" in p.stdout

    procs: dict[str, tuple[subprocess.Popen[bytes], Path, dict[str, str]]] = {}
    try:
        # Rows before the sources start (snapshot) and after (stream).
        workload("workload-pg", 40)
        workload("workload-mysql", 40)
        for name in ("source-pg", "source-mysql", "sink-pg", "sink-mysql"):
            env = host_env(name)
            log = tmp_path / f"{name}.log"
            with open(log, "wb") as out:
                procs[name] = (subprocess.Popen(_host_command(services[name]["command"]), env=env,
                                                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path),
                               log, env)
        workload("workload-pg", 60)
        workload("workload-mysql", 60)

        verify_env = procs["source-pg"][2] | {"CDC_METRICS__PORT": str(_free_port())}
        for source in ("pg_main", "mysql_main"):
            deadline = time.monotonic() + 180
            while True:
                for name, (proc, log, _) in procs.items():
                    assert proc.poll() is None, f"{name} exited:\n{log.read_text()[-4000:]}"
                v = subprocess.run([str(CDC), "verify", str(ROOT / "deploy/docker/pipeline.yaml"),
                                    "--source", source], env=verify_env, capture_output=True,
                                   text=True, timeout=300)
                if v.returncode == 0:
                    break
                assert time.monotonic() < deadline, v.stdout + v.stderr + "".join(
                    log.read_text()[-2000:] for _, log, _ in procs.values())
                time.sleep(2)
            assert re.search(r"^OK ", v.stdout, re.M), v.stdout
        with psycopg.connect(pg_replica_dsn.rsplit("/", 1)[0] + f"/{rep_db}") as conn:
            rows = conn.execute("SELECT count(*) FROM demo_orders").fetchone()
            assert rows is not None and rows[0] > 0

        # The compose healthcheck, as written, against the running source worker.
        sink_serves_health = "--metrics-port" in subprocess.run(
            [str(CDC), "sink", "--help"], capture_output=True, text=True, timeout=60).stdout
        for name in ("source-pg", "sink-pg") if sink_serves_health else ("source-pg",):
            test = services[name]["healthcheck"]["test"]
            port = procs[name][2]["CDC_METRICS__PORT"]
            cmd = [sys.executable, *[w.replace(":9400/", f":{port}/") for w in test[2:]]]
            deadline = time.monotonic() + 60
            while subprocess.run(cmd, capture_output=True, timeout=30).returncode != 0:
                assert time.monotonic() < deadline, f"{name}: healthcheck {cmd} keeps failing"
                time.sleep(1)

        for proc, _log, _env in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, (proc, log, _) in procs.items():
            assert proc.wait(120) == 0, f"{name}:\n{log.read_text()[-4000:]}"
            assert "Traceback" not in log.read_text(), log.read_text()[-4000:]
    finally:
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        _cleanup(run, src_db, rep_db, kafka_bootstrap, pg_source_dsn, pg_replica_dsn,
                 mysql_source_url, mysql_replica_url)


def _cleanup(run: str, src_db: str, rep_db: str, bootstrap: str, pg_source_dsn: str,
             pg_replica_dsn: str, mysql_source_url: str, mysql_replica_url: str) -> None:
    with contextlib.suppress(Exception), psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name = %s", (f"{run}_slot",))
    for dsn, db in ((pg_source_dsn, src_db), (pg_replica_dsn, rep_db)):
        with contextlib.suppress(Exception), psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    for url, db in ((mysql_source_url, src_db), (mysql_replica_url, rep_db)):
        with contextlib.suppress(Exception), contextlib.closing(
                pymysql.connect(**mysql_kwargs(url))) as conn:  # type: ignore[arg-type]
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
    with contextlib.suppress(Exception):
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(run)]
        if topics:
            for f in admin.delete_topics(topics).values():
                f.result(30)
