# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Everything (system packages, venv, jars, servers) is installed and cached on first use.

VENV    ?= .venv
PY      := $(VENV)/bin/python
STACK   := $(PY) deploy/local/stack.py
PYTEST  := $(VENV)/bin/pytest

.PHONY: setup native up down status env demo test test-unit test-pg15 test-all lint typecheck bench clean-stack

$(VENV)/.installed: pyproject.toml deploy/local/setup.sh
	bash deploy/local/setup.sh
	@touch $@

setup: $(VENV)/.installed

# The optional C speed-ups (setup.py), rebuilt in place when a .c file changed.
native: setup
	@$(PY) setup.py -q build_ext --inplace 2>&1 | grep -v -E "^(running|copying|building|creating)" || true

up: native
	$(STACK) up

down:
	@if [ -x $(PY) ]; then $(STACK) down; fi

status: native
	$(STACK) status

env: setup
	@$(STACK) env

demo: up
	$(PY) deploy/local/demo.py

# CI subset: unit, property and integration tests on the real local stack, minus `slow`.
test: up
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

lint: native
	$(VENV)/bin/ruff check cdc connectors tests bench deploy
	$(VENV)/bin/mypy

typecheck: lint

bench: up
	$(PY) bench/run_all.py

# Stop everything and delete data (keeps the download cache).
clean-stack: down
	rm -rf .cdc-local/data .cdc-local/logs .cdc-local/run .cdc-local/env
