# InfiniteContext developer tasks. The README's two commands are `./dev.sh demo` and
# `./dev.sh test`; dev.sh installs make and python3-venv, then runs these targets.
# `./dev.sh test-fast` is the edit loop's lane: no cluster, SLURM, MLflow or vLLM.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# The environment is rebuilt only when what it is built from changes.
ENV_HASH := $(shell cat pyproject.toml requirements/*.txt scripts/setup-venv.sh | sha256sum | cut -c1-16)
ENV_STAMP := $(VENV)/.installed-$(ENV_HASH)

# Targets that must run before the tests (the local cluster, SLURM …); mk/*.mk add to it.
TEST_PREREQS :=

.PHONY: help setup lint typecheck test test-fast test-count demo
help:
	@echo "./dev.sh demo        run the whole model lifecycle through the operator (quickstart)"
	@echo "./dev.sh demo-down   stop everything the demo started"
	@echo "./dev.sh test        set up everything the tests need, then lint, type-check and test"
	@echo "./dev.sh test-fast   lint and the tests without services or the slow ones (minutes)"
	@echo "./dev.sh test-count  how many tests each lane runs"

setup: $(ENV_STAMP)

$(ENV_STAMP):
	rm -f $(VENV)/.installed-*
	scripts/setup-venv.sh $(VENV)
	touch $@

include $(sort $(wildcard mk/*.mk))

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	scripts/typecheck.sh $(VENV)

test: setup lint typecheck $(TEST_PREREQS)
	$(BIN)/pytest $(PYTEST_ARGS)

# The tests that need no service (tests/conftest.py marks the others `e2e` from the
# fixtures they use), are not marked slow and, without a GPU, not the kernel tests
# (Triton's CPU interpreter). Nothing in TEST_PREREQS runs first.
FAST_LANE := not e2e and not slow and not triton_interpreter

test-fast: setup lint
	$(BIN)/pytest -m "$(FAST_LANE)" $(PYTEST_ARGS)

# The numbers the README points to instead of printing them.
test-count: setup
	@echo "all tests:       $$($(BIN)/pytest --collect-only -q | tail -1)"
	@echo "fast lane:       $$($(BIN)/pytest --collect-only -q -m '$(FAST_LANE)' | tail -1)"

# The quickstart: the whole lifecycle through the operator (mk/demo.mk, docs/quickstart.md).
demo: demo-up
