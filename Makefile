# Bondgenoot: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= .venv/bin/python
DATA ?= ../shared/data/edf/edf_calls.json
EVAL ?= EDF-2023

DURATION ?= 300
MATCHING_REPLICAS ?= 2
FUZZ_EXAMPLES ?= 200

.PHONY: run test lint contracts messages node-deps kafka-up kafka-down kafka-cluster-up bench bench-delivery bench-portal bench-matching bench-matching-limits bench-matching-experiments bench-scale bench-scale-out venv chaos chaos-ci lock lock-upgrade fuzz

## The virtualenv, installed from requirements.lock (exact versions and hashes), plus this checkout editable.
venv: .venv/.installed
.venv/.installed: pyproject.toml requirements.lock
	python3 -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check --upgrade pip
	.venv/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
	.venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# One lock for every platform and Python >= 3.11 (uv resolves "universally"); dev extras included.
LOCK_CMD = .venv/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes --quiet -o requirements.lock

## After changing dependencies in pyproject.toml: re-resolve, keeping every existing pin that still fits.
lock: venv
	$(LOCK_CMD)
	$(MAKE) venv

## Move every pin to the newest version the bounds allow (then run make test).
lock-upgrade: venv
	$(LOCK_CMD) --upgrade
	$(MAKE) venv

## Start Kafka and the five services on the embedded defaults, seed the demo, show the flow (Ctrl-C stops all).
## make run REPLICAS=2: two replicas of matching and of alerts (services/matching/README.md).
REPLICAS ?= 1
run: venv
	$(PYTHON) deploy/local/run.py --replicas $(REPLICAS)

## The official AsyncAPI parser for the contract tests (Node.js + npm), pinned by tests/contracts/package-lock.json,
## and the browser packages (htmx, vendored into the portal; axe-core for its accessibility tests) of package-lock.json.
## --ignore-scripts: the parser runs no install script; the one in its tree (@scarf/scarf) only sends install analytics.
node-deps: tests/contracts/node_modules/.installed node_modules/.installed
tests/contracts/node_modules/.installed: tests/contracts/package-lock.json tests/contracts/package.json
	npm ci --ignore-scripts --no-audit --no-fund --prefix tests/contracts
	touch $@
node_modules/.installed: package-lock.json package.json
	npm ci --ignore-scripts --no-audit --no-fund
	touch $@

## Every test: unit, integration and end-to-end, against a real Kafka broker and PostgreSQL.
## (The fault suite needs minutes and root: `make chaos-ci`.)
test: venv node-deps
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=15 -m "not chaos"

## Fuzz every service's API for longer than make test does: FUZZ_EXAMPLES requests per operation, new ones each run.
fuzz: venv
	FUZZ_RANDOM=1 FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration/test_api_fuzz.py

## The fault suite: own 3-broker cluster + PostgreSQL, all services, load, every fault; last line is JSON.
## make chaos DURATION=600 is the soak; two matching replicas (MATCHING_REPLICAS=1 for one). Needs root.
chaos: venv
	CHAOS_MATCHING_REPLICAS=$(MATCHING_REPLICAS) $(PYTHON) -m tests.chaos --duration $(DURATION)

## CI's short fault run (every kind once, ~2 min of load) and the checker's own tests (two lossy variants);
## not a step of .ci/run yet (docs/reliability.md, "In CI").
chaos-ci: venv
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/chaos -m chaos

lint: venv
	.venv/bin/ruff check shared services tests bench deploy
	.venv/bin/ruff format --check shared services tests bench deploy
	.venv/bin/mypy

contracts: venv
	$(PYTHON) -m shared.contracts

## The portal's message catalogues: extract every _("…") into messages.pot and merge it into each language.
messages: venv
	.venv/bin/pybabel extract -F services/portal/babel.cfg -k N_ -k _ --no-location --omit-header --sort-output -o services/portal/locale/messages.pot .
	.venv/bin/pybabel update -i services/portal/locale/messages.pot -d services/portal/locale --no-location --omit-header --no-fuzzy-matching

kafka-up:
	bash deploy/kafka/kafka.sh up single

kafka-cluster-up:
	bash deploy/kafka/kafka.sh up cluster

kafka-down:
	bash deploy/kafka/kafka.sh down all

## Latency of the event pipeline beside a bare aiokafka round trip, and the core-flow numbers.
bench: venv
	$(PYTHON) -m bench.pipeline
	$(PYTHON) -m bench.core_flow
	$(PYTHON) -m bench.alerts_webhook
	$(PYTHON) -m bench.webhook_guard

## Alert → webhook delivered at RATE alerts/s over ALERTS alerts: one JSON line (services/alerts/README.md)
RATE ?= 100
ALERTS ?= 2000
bench-delivery: venv
	$(PYTHON) -m bench.alerts_webhook --rate $(RATE) --alerts $(ALERTS)

## What the web portal adds to the API time per page, with 10,000 registered companies (median, p99).
## make bench-portal [ARGS="--companies 2000 --requests 300"]; KAFKA_BOOTSTRAP_SERVERS picks a running broker.
bench-portal: venv
	$(PYTHON) -m bench.portal $(ARGS)

## Matching quality on real EDF consortia:
## make bench-matching DATA=<path> EVAL=<topic-id prefix> [PROTOCOL=temporal|loo] [ARGS=--ablation]
PROTOCOL ?= temporal
bench-matching: venv
	$(PYTHON) -m bench.matching --data $(DATA) --eval $(EVAL) --protocol $(PROTOCOL) $(ARGS)

## What any ranking could reach on that file: ceiling, popularity, country-mix oracle (same protocol).
bench-matching-limits: venv
	$(PYTHON) -m bench.matching.limits --data $(DATA) --eval $(EVAL) --protocol $(PROTOCOL) $(ARGS)

## make bench-matching-experiments DATA=<path> EVAL=EDF-2022,EDF-2023: the ideas tried against the matcher
bench-matching-experiments: venv
	$(PYTHON) -m bench.matching.experiments --data $(DATA) --eval $(EVAL)

bench-scale: venv
	$(PYTHON) -m bench.matching.scale

## Matching as 1, 2 and 3 replicas on the real broker and PostgreSQL with $(COMPANIES) companies: index build,
## ranking throughput, fail-over after a SIGKILL (services/matching/README.md, "Scale-out numbers").
COMPANIES ?= 100000
bench-scale-out: venv
	$(PYTHON) -m bench.scale_out --companies $(COMPANIES)
