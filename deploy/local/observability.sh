#!/usr/bin/env bash
# Installs the observability tools the dashboard/alert tests use; idempotent.
#  - Prometheus and promtool (Debian's `prometheus` package: /usr/bin/prometheus, /usr/bin/promtool)
#  - headless Chromium (Debian's `chromium` package: /usr/bin/chromium)
# The packaged Prometheus service is not started: tests run their own instance,
# on a port of their own and with a data dir in a temporary directory.
# Prints the paths found, one `name=path` a line; exit 1 when a tool is missing
# and cannot be installed (not root, or apt-get refused).
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ] || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need[*]} (run: sudo apt-get install -y ${need[*]})" >&2
    exit 1
  fi
  echo "[observability] apt-get install ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d: never start the packaged prometheus service (tests run their own)
  policy=/usr/sbin/policy-rc.d
  created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created=1
  fi
  trap '[ "$created" = 1 ] && rm -f "$policy"' EXIT
  # apt's own cache (/var/cache/apt/archives) keeps the downloaded packages.
  apt-get update -qq || true
  if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    echo "apt-get refused to install: ${need[*]}" >&2
    exit 1
  fi
fi
echo "prometheus=$(command -v prometheus || echo /usr/bin/prometheus)"
echo "promtool=$(command -v promtool || echo /usr/bin/promtool)"
echo "chromium=$(command -v chromium || echo /usr/bin/chromium)"
