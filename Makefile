# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Everything (system packages, venv, jars, servers) is installed and cached on first use.

VENV    ?= .venv
PY      := $(VENV)/bin/python
STACK   := $(PY) deploy/local/stack.py
PYTEST  := $(VENV)/bin/pytest

.PHONY: setup native deploy-tools connect-install up down status env demo test test-unit test-pg15 test-all test-python-path sanitize fuzz fuzz-short lint typecheck bench soak clean-stack bench-compare

$(VENV)/.installed: pyproject.toml deploy/local/setup.sh
	bash deploy/local/setup.sh
	@touch $@

setup: $(VENV)/.installed

# The C speed-ups (setup.py), rebuilt in place when a .c file changed. Where a
# C compiler is present a failed build fails this target (and everything that
# depends on it); without one the pure-Python paths run. Prints which loaded.
native: setup
	@out=$$($(PY) setup.py -q build_ext --inplace 2>&1); rc=$$?; \
	  printf '%s\n' "$$out" | grep -v -E "^(running|copying|building|creating)" || true; \
	  if [ $$rc -ne 0 ]; then echo "make native: the C extension build failed (exit $$rc)" >&2; exit $$rc; fi
	@$(PY) -m cdc.native --summary $$( [ "$${CDC_REQUIRE_NATIVE:-}" = 1 ] && echo --require )

up: native
	$(STACK) up

# The offline validators of docker-compose.yml and deploy/kubernetes (deploy/local/tools.py):
# the Docker Compose CLI and kustomize built from the Go module proxy, kubernetes-validate
# from PyPI, cached under .cdc-local/cache/tools. Idempotent.
deploy-tools: setup
	$(PY) deploy/local/tools.py install

# Kafka Connect with Debezium's connectors and Apicurio's converter (deploy/local/connect.py),
# resolved by Maven into .cdc-local/cache once; the interop tests start the worker.
connect-install: setup
	$(PY) deploy/local/connect.py install

down:
	@if [ -x $(PY) ]; then $(STACK) down; fi

status: native
	$(STACK) status

env: setup
	@$(STACK) env

demo: up
	$(PY) deploy/local/demo.py

# CI subset: unit, property and integration tests on the real local stack, minus `slow`.
test: up deploy-tools connect-install
	$(PYTEST) -m "not slow" -q

test-unit: native
	$(PYTEST) tests/unit -q

# The PostgreSQL suites again, on Debian's PostgreSQL 15 (the stack runs 18).
test-pg15: up
	bash deploy/local/test-pg15.sh

# Everything, including fault-injection and soak tests, on both PostgreSQL majors.
test-all: up
	$(PYTEST) -q
	bash deploy/local/test-pg15.sh

# A representative integration subset on the pure-Python paths (CDC_NATIVE=0):
# PostgreSQL and MariaDB sources -> both replicas and verify (e2e), the type
# families through each source's stream, and the sink's type round trips.
PYTHON_PATH_TESTS ?= tests/e2e/test_pipeline.py tests/integration/postgres/test_pg_stream.py \
	tests/integration/mysql/test_types_stream.py tests/integration/sink/test_types.py
test-python-path: up
	CDC_NATIVE=0 $(PYTEST) -q -m "integration and not slow" $(PYTHON_PATH_TESTS)

# Every C extension rebuilt with AddressSanitizer + UBSan in a copy of the tree
# (.cdc-local/build-asan; the in-place build is untouched), then the native
# parity, malformed-input and fuzz tests and a short fuzz run of every target.
sanitize: setup
	bash tests/fuzz/sanitize.sh

# Coverage-guided fuzzing of every parser of untrusted bytes (tests/fuzz/).
# FUZZ_SECONDS per target (default 600); new crashes land in .cdc-local/fuzz/.
fuzz: native
	$(PY) -m tests.fuzz.run --all --seconds $${FUZZ_SECONDS:-600}

# Soak benchmark: RSS of a source and a sink over millions of events.
soak: up
	$(PY) bench/soak_bench.py $${SOAK_ARGS:-}

lint: native
	$(VENV)/bin/ruff check cdc connectors tests bench deploy
	$(VENV)/bin/mypy

typecheck: lint

bench: up
	$(PY) bench/run_all.py

# Native replication, Debezium and cdc side by side on identical data (bench/compare/,
# docs/BENCHMARKS.md), PostgreSQL then MariaDB; matplotlib for its plots is installed on
# first use. BENCH_COMPARE_ARGS="--rows 100000" for a quicker run. Prints the expected
# duration of both parts first (on an idle machine; more under load).
bench-compare: up connect-install
	@$(PY) -c "import matplotlib" 2>/dev/null || $(VENV)/bin/pip install -q "matplotlib>=3.8"
	@$(PY) bench/compare/compare.py --estimate $${BENCH_COMPARE_ARGS:-}; \
	$(PY) bench/compare/compare.py --estimate --db mariadb $${BENCH_COMPARE_ARGS:-}
	$(PY) bench/compare/compare.py $${BENCH_COMPARE_ARGS:-}; pg=$$?; \
	$(PY) bench/compare/compare.py --db mariadb $${BENCH_COMPARE_ARGS:-}; maria=$$?; \
	exit $$((pg | maria))

# Stop everything and delete data (keeps the download cache).
clean-stack: down
	rm -rf .cdc-local/data .cdc-local/logs .cdc-local/run .cdc-local/env
