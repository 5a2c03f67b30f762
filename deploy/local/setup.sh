#!/usr/bin/env bash
# Installs what the local stack and the tests need; idempotent.
#  - system packages (Debian): PostgreSQL 15, MariaDB, Java 17, Maven, when missing
#  - a Python venv (.venv) with cdc and its dev dependencies
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server mariadb-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need[*]} (run: sudo apt-get install -y ${need[*]})" >&2
    exit 1
  fi
  echo "[setup] apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
# The C speed-ups, in place. setup.py makes them required where a C compiler
# exists, so a broken build stops here (set -e) instead of leaving the slow
# path to run unnoticed; CDC_REQUIRE_NATIVE=1 (CI) also fails when none loaded.
if ! out=$(.venv/bin/python setup.py -q build_ext --inplace 2>&1); then
  printf '%s\n' "$out" >&2
  echo "[setup] the C extension build failed (see above)" >&2
  exit 1
fi
.venv/bin/python -m cdc.native --summary $([ "${CDC_REQUIRE_NATIVE:-}" = 1 ] && echo --require)
echo "[setup] ready: $(.venv/bin/python --version), $(java -version 2>&1 | head -1)"
