# teleway: `make run` starts the gateway on loopback with a demo account; `make test` runs the suite.
# Both set up everything first: .venv with the package, Debian packages when missing, services.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
CONFIG ?=
# two test processes: most end-to-end tests wait on sockets and subprocesses, not the CPU
PYTEST_ARGS ?= -n 2 --durations=20
export TELEWAY_DEMO_PROVISIONING ?= examples/demo-provisioning.toml

.PHONY: run test setup setup-test lint typecheck pytest fuzz bench bench-store bench-codec bench-smpp bench-sms bench-smtp bench-commits clean help

help:
	@echo "make run          set up and run the gateway (SQLite, loopback, built-in SMSC simulator)"
	@echo "make test         set up and run lint, type checks and the whole test suite"
	@echo "make fuzz         long fuzzing run of the protocol parsers"
	@echo "make bench        all benchmarks (writes docs/benchmarks.md)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP)
	@bash scripts/ensure-system.sh

# the test suite also needs the PostgreSQL server (store tests run on both engines)
setup-test: $(STAMP)
	@bash scripts/ensure-system.sh --test

run: setup
	$(BIN)/teleway $(if $(CONFIG),--config $(CONFIG)) db upgrade
	$(BIN)/teleway $(if $(CONFIG),--config $(CONFIG)) admin apply $(TELEWAY_DEMO_PROVISIONING)
	exec $(BIN)/teleway $(if $(CONFIG),--config $(CONFIG)) serve --demo-hint

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	@# pytest exits 5 when it collected no tests: that is a failure, not a green run
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests ran"; exit 1; fi; exit $$rc

test: setup-test lint typecheck pytest

fuzz: setup-test
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q -p no:timeout tests/proto -k fuzz

bench-store: setup-test
	$(BIN)/python bench/store.py

bench-codec: setup
	$(BIN)/python bench/codec.py

bench-smpp: setup-test
	$(BIN)/python bench/smpp_server.py

bench-sms: setup-test
	$(BIN)/python bench/sms_delivery.py

bench-smtp: setup
	$(BIN)/python bench/smtp.py

# the disk's own durable-commit times: the floor of every latency the other benchmarks show
bench-commits: setup
	$(BIN)/python bench/sqlite_commits.py

bench: bench-codec bench-commits bench-store bench-sms bench-smpp bench-smtp

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
