"""The compose registry's healthcheck and its one-shot BACKWARD rule, against the local registry.

The local stack runs the same Apicurio Registry as compose (deploy/versions.env);
its management interface is on another port than the container's 9000, which
is the only thing mapped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

import pytest

from tests.unit.deploy.helpers import ROOT, compose_project, load_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return compose_project()


def test_registry_healthcheck_passes_on_a_running_registry(project: dict[str, Any],
                                                           schema_registry_url: str) -> None:
    test = project["services"]["registry"]["healthcheck"]["test"]
    management = load_stack().REGISTRY.management_port
    script = test[3].replace("/dev/tcp/127.0.0.1/9000", f"/dev/tcp/127.0.0.1/{management}")
    assert subprocess.run([test[1], test[2], script], timeout=30).returncode == 0
    # And it fails where no registry answers.
    wrong = test[3].replace("/dev/tcp/127.0.0.1/9000", f"/dev/tcp/127.0.0.1/{management + 7}")
    assert subprocess.run([test[1], test[2], wrong], capture_output=True, timeout=30).returncode != 0


def test_registry_init_sets_backward_through_the_rest_api(project: dict[str, Any],
                                                          schema_registry_url: str) -> None:
    command = project["services"]["registry-init"]["command"]
    assert command[:2] == ["python", "/opt/cdc/registry_init.py"]
    args = command[2:]
    args[args.index("--url") + 1] = schema_registry_url  # http://registry:8080/... in compose
    # BACKWARD is also what the local stack sets: running it again changes nothing for others.
    p = subprocess.run([sys.executable, str(ROOT / "deploy/docker/registry_init.py"), *args,
                        "--timeout", "30"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "global compatibility is BACKWARD" in p.stdout
    with urllib.request.urlopen(f"{schema_registry_url}/config", timeout=10) as r:
        assert json.loads(r.read())["compatibilityLevel"] == "BACKWARD"


def test_registry_init_fails_clearly_when_no_registry_answers() -> None:
    p = subprocess.run([sys.executable, str(ROOT / "deploy/docker/registry_init.py"),
                        "--url", "http://127.0.0.1:9/apis/ccompat/v7", "--timeout", "2"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "not reachable after 2s" in p.stderr, p.stderr
