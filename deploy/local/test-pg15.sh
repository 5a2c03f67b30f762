#!/usr/bin/env bash
# The PostgreSQL suites against Debian's PostgreSQL 15 (the stack defaults to 18).
# A second PostgreSQL source runs beside the main stack (ports shifted by 2000),
# while Kafka and the registry come from the main stack (`make up` first).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
set -a
eval "$($PY deploy/local/stack.py env | grep -E '^(KAFKA_BOOTSTRAP|SCHEMA_REGISTRY_URL|PG_REPLICA_DSN|MYSQL_SOURCE_URL|MYSQL_REPLICA_URL)=')"
set +a
export CDC_PORT_OFFSET=2000 CDC_PG_FLAVOR=debian
$PY deploy/local/stack.py start pg-source
trap '$PY deploy/local/stack.py stop pg-source' EXIT
export PG_SOURCE_DSN
PG_SOURCE_DSN=$($PY deploy/local/stack.py env | sed -n 's/^PG_SOURCE_DSN=//p')
.venv/bin/pytest -q -m "not slow" tests/unit/postgres tests/integration/postgres tests/integration/test_reset_source.py \
  tests/integration/test_loop_prevention.py "$@"
