"""The tools that validate the deployment files offline, installed on demand.

No Docker engine or Kubernetes cluster runs on this project's machines, so the
compose file and the manifests are checked by the real implementations' own
commands, without running anything:

=====================  ======================================================
docker-compose         Docker Compose v5 (`docker compose config`), built from
                       the Go module proxy (github.com/docker/compose/v5)
kustomize              ``kubectl kustomize`` when kubectl is installed, else
                       kustomize built from the Go module proxy
                       (``CDC_TOOLS_KUSTOMIZE=build`` forces the build)
kubernetes-validate    PyPI ``kubernetes-validate`` (ships the Kubernetes
                       JSON schemas, so it validates offline)
=====================  ======================================================

Everything is cached under ``.cdc-local/cache/tools`` (and the Go module and
build caches under ``.cdc-local/cache/go``); a second ``install`` does nothing.

    python deploy/local/tools.py install [NAME...]   # all by default
    python deploy/local/tools.py path NAME           # the command that runs NAME
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CDC_LOCAL_DIR", ROOT / ".cdc-local")) / "cache"
TOOLS = CACHE / "tools"

COMPOSE_MODULE = "github.com/docker/compose/v5"
COMPOSE_VERSION = "v5.6.0"
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.7.1"
KUBERNETES_VALIDATE_VERSION = "1.37.0"
KUBERNETES_VERSION = "1.33.0"  # the schema version manifests are validated against


class ToolError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[tools] {msg}", file=sys.stderr, flush=True)


def _go_env() -> dict[str, str]:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise ToolError("Go is not installed: it builds the compose and kustomize CLIs "
                        "(apt-get install -y golang, or the machine's Go)")
    env = {**os.environ, "GOMODCACHE": str(CACHE / "go" / "mod"), "GOCACHE": str(CACHE / "go" / "build"),
           "GOFLAGS": "-modcacherw", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0",
           "PATH": f"{Path(go).parent}:{os.environ.get('PATH', '')}"}
    return env


def _run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = 1800) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    if p.returncode != 0:
        raise ToolError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}{p.stderr[-4000:]}")
    return p.stdout


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished build into place; another checkout sharing the cache may have won."""
    try:
        tmp.rename(final)
    except OSError:
        if not final.exists():
            raise
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def compose() -> list[str]:
    """The Docker Compose CLI (``docker-compose`` binary; same commands as ``docker compose``)."""
    binary = TOOLS / f"docker-compose-{COMPOSE_VERSION}"
    if not binary.exists():
        env = _go_env()
        _log(f"building docker compose {COMPOSE_VERSION} from the Go module proxy (a few minutes)")
        # `go install pkg@version` refuses modules with exclude directives: build in a copy.
        info = _run(["go", "mod", "download", "-json", f"{COMPOSE_MODULE}@{COMPOSE_VERSION}"], env=env)
        import json

        src = Path(json.loads(info)["Dir"])
        # Per-process names: two checkouts sharing this cache may build at once.
        work = TOOLS / f"compose-src-{COMPOSE_VERSION}.{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(src, work)
        for p in [work, *work.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
        TOOLS.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
        _run(["go", "build", "-trimpath", "-o", str(tmp), "./cmd"], env=env, cwd=work)
        _publish(tmp, binary)
        shutil.rmtree(work, ignore_errors=True)
    return [str(binary)]


def kustomize() -> list[str]:
    """``kubectl kustomize`` if kubectl is here, else a kustomize built from the Go proxy."""
    kubectl = shutil.which("kubectl")
    if kubectl and os.environ.get("CDC_TOOLS_KUSTOMIZE") != "build":  # =build: always the Go build
        return [kubectl, "kustomize"]
    binary = TOOLS / f"kustomize-{KUSTOMIZE_VERSION}"
    if not binary.exists():
        env = _go_env()
        gobin = TOOLS / f"gobin.{os.getpid()}"
        env["GOBIN"] = str(gobin)
        _log(f"building kustomize {KUSTOMIZE_VERSION} from the Go module proxy")
        _run(["go", "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"], env=env)
        _publish(gobin / "kustomize", binary)
        shutil.rmtree(gobin, ignore_errors=True)
    return [str(binary), "build"]


def kubernetes_validate() -> list[str]:
    """PyPI kubernetes-validate in its own folder, run by this Python."""
    target = TOOLS / f"kubernetes-validate-{KUBERNETES_VALIDATE_VERSION}"
    if not (target / "kubernetes_validate").exists():
        _log(f"installing kubernetes-validate {KUBERNETES_VALIDATE_VERSION} from PyPI")
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "--target", str(tmp), f"kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}"], timeout=900)
        _publish(tmp, target)
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from kubernetes_validate.__main__ import main; sys.exit(main())")
    return [sys.executable, "-c", code, str(target)]


INSTALLERS = {"docker-compose": compose, "kustomize": kustomize,
              "kubernetes-validate": kubernetes_validate}


def main(argv: list[str]) -> int:
    usage = f"usage: tools.py install [NAME...] | path NAME   (NAME: {', '.join(INSTALLERS)})"
    if not argv or argv[0] not in ("install", "path"):
        print(usage, file=sys.stderr)
        return 2
    names = argv[1:] or (list(INSTALLERS) if argv[0] == "install" else [])
    if not names or any(n not in INSTALLERS for n in names):
        print(usage, file=sys.stderr)
        return 2
    try:
        for name in names:
            cmd = INSTALLERS[name]()
            print(" ".join(cmd) if argv[0] == "path" else f"{name}: {' '.join(cmd)}")
    except ToolError as e:
        print(f"[tools] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
