# Bondgenoot: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= .venv/bin/python
DATA ?= ../shared/data/edf/edf_calls.json
EVAL ?= EDF-2023

.PHONY: run test lint contracts node-deps kafka-up kafka-down kafka-cluster-up bench bench-matching bench-matching-limits bench-scale venv

venv: .venv/.installed
.venv/.installed: pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[dev]'
	touch $@

## Start Kafka and the five services on the embedded defaults, seed the demo, show the flow (Ctrl-C stops all).
run: venv
	$(PYTHON) deploy/local/run.py

## The official AsyncAPI parser for the contract tests (Node.js + npm), pinned by tests/contracts/package-lock.json.
## --ignore-scripts: the parser runs no install script; the one in its tree (@scarf/scarf) only sends install analytics.
node-deps: tests/contracts/node_modules/.installed
tests/contracts/node_modules/.installed: tests/contracts/package-lock.json tests/contracts/package.json
	npm ci --ignore-scripts --no-audit --no-fund --prefix tests/contracts
	touch $@

## Every test: unit, integration and end-to-end, against a real Kafka broker and PostgreSQL.
test: venv node-deps
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=15

lint: venv
	.venv/bin/ruff check shared services tests bench deploy
	.venv/bin/ruff format --check shared services tests bench deploy
	.venv/bin/mypy

contracts: venv
	$(PYTHON) -m shared.contracts

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

## Matching quality on real EDF consortia:
## make bench-matching DATA=<path> EVAL=<topic-id prefix> [PROTOCOL=temporal|loo] [ARGS=--ablation]
PROTOCOL ?= temporal
bench-matching: venv
	$(PYTHON) -m bench.matching --data $(DATA) --eval $(EVAL) --protocol $(PROTOCOL) $(ARGS)

## What any ranking could reach on that file: ceiling, popularity, country-mix oracle (same protocol).
bench-matching-limits: venv
	$(PYTHON) -m bench.matching.limits --data $(DATA) --eval $(EVAL) --protocol $(PROTOCOL)

bench-scale: venv
	$(PYTHON) -m bench.matching.scale
