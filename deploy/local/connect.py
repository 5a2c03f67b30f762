"""Kafka Connect with Debezium beside the local stack (issue #15: real Debezium in the loop).

The interop tests and the Debezium side of the benchmarks need a Connect worker that
talks to this stack's Kafka and registry. This module resolves it from Maven Central
(deploy/local/connect/pom.xml, one Maven profile per folder, cached under
``.cdc-local/cache/connect-<version>`` like the Kafka jars), runs one standalone worker
per port offset (REST on 127.0.0.1:18083+CDC_PORT_OFFSET, state in the stack's folder)
and deploys connectors through its REST API. ``make up`` does not start it.

    python deploy/local/connect.py install [--all]|start|stop|status|url

From Python (tests/fixtures/debezium.py, bench/)::

    worker = ConnectWorker()
    worker.start()                                   # idempotent
    worker.deploy("pg", {"connector.class": ..., **worker.avro_converters()})
    worker.wait_running("pg")
    worker.delete("pg"); worker.stop()
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
POM = HERE / "connect" / "pom.xml"
CONNECT_VERSION = "4.3.1"  # equals <connect.version> of POM (tests/unit/deploy/test_connect.py)
PLUGINS = (
    "debezium-postgres", "debezium-mysql", "debezium-mariadb", "debezium-jdbc", "apicurio-converter",
)
# What `install` resolves by default (and `make test` through `make connect-install`,
# before any test runs): everything the CI interop tests use, PostgreSQL and MariaDB.
# Debezium's MySQL connector (not used in CI: it refuses MariaDB 10.11) comes with
# `install --all` or ConnectWorker.ensure_plugins (about a minute on a fresh cache).
DEFAULT_PARTS = ("worker", "debezium-postgres", "debezium-mariadb", "debezium-jdbc",
                 "apicurio-converter")
# A file each plugin folder must hold once resolved (the check that skips Maven).
_MARKERS = {
    "worker": "connect-runtime-",
    "debezium-postgres": "debezium-connector-postgres-",
    "debezium-mysql": "debezium-connector-mysql-",
    "debezium-mariadb": "debezium-connector-mariadb-",
    "debezium-jdbc": "debezium-connector-jdbc-",
    "apicurio-converter": "apicurio-registry-utils-converter-",
}


def _load_stack() -> ModuleType:
    name = "cdc_local_stack"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "stack.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


stack = _load_stack()
StackError = stack.StackError


class ConnectError(StackError):  # type: ignore[misc,valid-type]
    """A Connect REST call or a connector failed; the message says which and why."""


def connect_home() -> Path:
    return Path(stack.CACHE) / f"connect-{CONNECT_VERSION}"


def installed(part: str) -> bool:
    folder = connect_home() / ("worker" if part == "worker" else f"plugins/{part}")
    return folder.is_dir() and any(p.name.startswith(_MARKERS[part]) for p in folder.iterdir())


def install(parts: tuple[str, ...] = DEFAULT_PARTS) -> None:
    """Resolve the worker and plugins that are not cached yet (Maven, once per cache)."""
    missing = [p for p in parts if not installed(p)]
    if not missing:
        return
    import shutil
    if not shutil.which("mvn"):
        raise StackError("Maven (mvn) not found: apt-get install -y maven")
    for part in missing:
        stack.log(f"connect: resolving {part} from Maven Central")
        stack.run(["mvn", "-q", "-B", "-f", str(POM), f"-Dmaven.repo.local={stack.CACHE / 'm2'}",
                   f"-Dstack.cache={stack.CACHE}", "-P", part, "dependency:copy-dependencies"],
                  timeout=900)
        if not installed(part):
            raise StackError(f"connect: Maven ran but {part} is still missing under {connect_home()}")


# Kafka's bin/connect-standalone.sh runs the worker with these unless KAFKA_HEAP_OPTS is
# set: Debezium as a user runs it (bench/compare takes this by default).
SHIPPED_HEAP = "-Xms256M -Xmx2G"
# The tests' worker (CDC_CONNECT_HEAP_OPTS overrides): a smaller ceiling on a shared machine.
TEST_HEAP = "-Xms256m -Xmx768m"


class ConnectWorker(stack.JavaService):  # type: ignore[misc,name-defined]
    """One Kafka Connect standalone worker of this port offset (Debezium plugins loaded)."""

    name = "connect"

    def __init__(self, port: int | None = None, name: str = "connect") -> None:
        self.port = port if port is not None else 18083 + stack.PORT_OFFSET
        self.name = name

    @property
    def datadir(self) -> Path:
        return Path(stack.STATE) / "data" / self.name

    @property
    def url(self) -> str:
        return f"http://{stack.HOST}:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/connector-plugins", timeout=2) as r:
            return bool(r.status == 200)

    def _properties(self) -> str:
        bootstrap = f"{stack.HOST}:{stack.KAFKA.port}"
        return "\n".join([
            f"bootstrap.servers={bootstrap}",
            f"listeners=http://{stack.HOST}:{self.port}",
            f"plugin.path={connect_home() / 'plugins'}",
            "plugin.discovery=only_scan",
            f"offset.storage.file.filename={self.datadir / 'offsets'}",
            "offset.flush.interval.ms=1000",
            # Overridden per connector (avro_converters()); these are only the defaults.
            "key.converter=org.apache.kafka.connect.json.JsonConverter",
            "value.converter=org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable=true", "value.converter.schemas.enable=true",
            # Debezium's sources create their topics through the worker.
            "topic.creation.enable=true",
            "", ])

    def heap_options(self) -> list[str] | None:
        """The ``-Xms``/``-Xmx`` flags of the running worker (from /proc), None if not running."""
        pid = self.pid()
        if not pid:
            return None
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            return None
        return [a for a in argv if a.startswith(("-Xms", "-Xmx"))]

    def start(self, timeout: float = 180, heap: str | None = None) -> subprocess.Popen[bytes] | None:
        """Start the worker unless it is running and healthy; wait until its REST API answers
        (the plugin scan took 3 minutes at a load of 35 on 2 cores: give more there).

        ``heap``: the JVM's heap flags (e.g. ``SHIPPED_HEAP``, Kafka's own
        ``connect-standalone.sh`` default); None takes ``CDC_CONNECT_HEAP_OPTS`` or
        ``TEST_HEAP``. A running worker with other heap flags is restarted with these.
        """
        flags = (heap or os.environ.get("CDC_CONNECT_HEAP_OPTS") or TEST_HEAP).split()
        if self.running():
            try:
                if self.healthy() and (heap is None or self.heap_options() == flags):
                    return None
            except Exception:  # not answering yet: restart below
                pass
        self.stop()
        install()
        self.datadir.mkdir(parents=True, exist_ok=True)
        conf = self.datadir / "worker.properties"
        conf.write_text(self._properties())
        log4j = self.datadir / "log4j2.properties"
        log4j.write_text("\n".join([
            "status = warn", "appender.out.type = Console", "appender.out.name = OUT",
            "appender.out.layout.type = PatternLayout",
            "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO", "rootLogger.appenderRef.out.ref = OUT",
            "logger.k.name = org.apache.kafka", "logger.k.level = WARN",
            "logger.r.name = org.reflections", "logger.r.level = ERROR",
            "logger.h.name = org.hibernate", "logger.h.level = WARN",
            "logger.w.name = org.apache.kafka.connect.runtime.WorkerTask", "logger.w.level = INFO",
            "", ]))
        java = stack.find_java(17)
        proc: subprocess.Popen[bytes] = self._spawn([
            java, *flags, "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{connect_home() / 'worker'}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone", str(conf)], cwd=self.datadir)
        stack.wait_for(self.name, self.healthy, timeout, self.logfile, self.port,
                       alive=lambda: proc.poll() is None)
        return proc

    def ensure_plugins(self, *parts: str) -> None:
        """Install plugin folders ``parts`` if missing; restart a running worker to load them."""
        missing = [p for p in parts if not installed(p)]
        if not missing:
            return
        install(tuple(missing))
        if self.running():
            heap = self.heap_options()
            self.stop()
            self.start(heap=" ".join(heap) if heap else None)

    # ------------------------------------------------------------------ REST

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:2000]
            raise ConnectError(f"connect: {method} {path} answered {e.code}: {detail}") from e
        return json.loads(raw) if raw else None

    def plugins(self) -> list[str]:
        return [p["class"] for p in self._call("GET", "/connector-plugins?connectorsOnly=false")]

    def connectors(self) -> list[str]:
        return list(self._call("GET", "/connectors"))

    def deploy(self, name: str, config: dict[str, Any]) -> None:
        """Create or reconfigure connector ``name`` (values are sent as strings)."""
        self._call("PUT", f"/connectors/{name}/config",
                   {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.items()},
                   timeout=120)

    def delete(self, name: str) -> None:
        try:
            self._call("DELETE", f"/connectors/{name}", timeout=120)
        except ConnectError as e:
            if " 404" not in str(e):
                raise

    def stop_connector(self, name: str) -> None:
        """Stop connector ``name`` (its tasks shut down, offsets committed; it stays deployed)."""
        self._call("PUT", f"/connectors/{name}/stop", timeout=120)

    def pause(self, name: str) -> None:
        """Pause connector ``name`` (its tasks stay open but stop polling)."""
        self._call("PUT", f"/connectors/{name}/pause", timeout=120)

    def resume(self, name: str) -> None:
        """Resume a paused or stopped connector."""
        self._call("PUT", f"/connectors/{name}/resume", timeout=120)

    def status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/connectors/{name}/status")
        return result

    def wait_running(self, name: str, timeout: float = 120) -> None:
        """Wait until the connector and all its tasks are RUNNING; raise with the trace on FAILED."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.status(name)
            except ConnectError as e:
                last = str(e)
            else:
                states = [last["connector"], *last.get("tasks", [])]
                failed = [s for s in states if s.get("state") == "FAILED"]
                if failed:
                    raise ConnectError(f"connect: connector {name} FAILED:\n"
                                       f"{failed[0].get('trace', '')[:3000]}")
                if last.get("tasks") and all(s.get("state") == "RUNNING" for s in states):
                    return
            time.sleep(0.3)
        raise ConnectError(f"connect: connector {name} not RUNNING after {timeout:.0f}s: {last}")

    def assert_running(self, name: str) -> None:
        """Raise with the trace if the connector or a task has FAILED since it started."""
        st = self.status(name)
        for s in [st["connector"], *st.get("tasks", [])]:
            if s.get("state") == "FAILED":
                raise ConnectError(f"connect: connector {name} FAILED:\n{s.get('trace', '')[:3000]}")

    # ------------------------------------------------------------------ converter settings

    @staticmethod
    def avro_converters(registry_port: int | None = None) -> dict[str, str]:
        """Apicurio's Avro converter for keys and values, writing Confluent framing.

        Magic byte 0 + 4-byte content id, no headers: the ids the registry's
        Confluent-compatible API reports, so cdc's readers decode Debezium's records
        and the other way round.
        """
        port = registry_port if registry_port is not None else stack.REGISTRY.port
        out: dict[str, str] = {}
        for side in ("key", "value"):
            out[f"{side}.converter"] = "io.apicurio.registry.utils.converter.AvroConverter"
            for k, v in {
                "apicurio.registry.url": f"http://{stack.HOST}:{port}/apis/registry/v2",
                "apicurio.registry.auto-register": "true",
                "apicurio.registry.find-latest": "true",
                "apicurio.registry.headers.enabled": "false",
                "apicurio.registry.id-handler": "io.apicurio.registry.serde.Legacy4ByteIdHandler",
                "apicurio.registry.use-id": "contentId",
            }.items():
                out[f"{side}.converter.{k}"] = v
        return out


def main(argv: list[str]) -> int:
    usage = "usage: connect.py install [--all]|start|stop|status|url"
    if not argv or len(argv) > 2 or (len(argv) == 2 and argv[1:] != ["--all"]):
        print(usage, file=sys.stderr)
        return 2
    worker = ConnectWorker()
    try:
        if argv[0] == "install":
            install(("worker", *PLUGINS) if argv[1:] == ["--all"] else DEFAULT_PARTS)
        elif argv[0] == "start":
            worker.start()
            stack.log(f"connect worker on {worker.url} (log {worker.logfile})")
        elif argv[0] == "stop":
            worker.stop()
        elif argv[0] == "status":
            ok = worker.running()
            if ok:
                try:
                    ok = worker.healthy()
                except Exception:  # a failing probe is a state to print
                    ok = False
            print(f"connect {worker.url} {'healthy' if ok else 'stopped'}")
            return 0 if ok else 1
        elif argv[0] == "url":
            print(worker.url)
        else:
            print(usage, file=sys.stderr)
            return 2
    except StackError as e:
        print(f"[connect] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
