# Switchboard — `make up` starts everything (installing what is missing), `make test` runs the suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen --quiet
PYTEST_ARGS ?=

.PHONY: help bootstrap up down clean env logs status test test-unit test-e2e lint format bench asyncapi web k8s-check image-check settings-doc roll

help:
	@echo "make up | down | clean | env | logs | status | test | test-unit | test-e2e | lint | bench | asyncapi | web | k8s-check | image-check | settings-doc | roll"

bootstrap:  ## install uv (from PyPI) when missing, then the workspace's locked dependencies
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
	  python3 -m pip install --quiet uv 2>/dev/null || python3 -m pip install --quiet --user uv || \
	  python3 -m pip install --quiet --break-system-packages uv
	@# bytecode compiled once, here: where PYTHONDONTWRITEBYTECODE is set, every process start would
	@# compile each module it imports from source (2.4-2.9 s of CPU a service instead of 1.1)
	@$(UV) sync --frozen --quiet --compile-bytecode
	@$(RUN) python -m compileall -q -j 0 shared/src services/*/src tools/src >/dev/null

up: bootstrap  ## start Kafka, PostgreSQL and the four services with the demo configuration
	@$(RUN) python -m tools.stack up

down:  ## stop what `make up` started; keeps the data
	@$(RUN) python -m tools.stack down

clean:  ## stop and delete the local state (Kafka logs, Postgres data); caches stay
	@$(RUN) python -m tools.stack clean

env:
	@$(RUN) python -m tools.stack env

logs:
	@$(RUN) python -m tools.stack logs $(if $(FOLLOW),--follow,)

status:
	@$(RUN) python -m tools.stack status

test: bootstrap  ## the whole suite: unit, handler and end-to-end tests on real Kafka and PostgreSQL
	@$(RUN) pytest $(PYTEST_ARGS)

test-unit: bootstrap
	@$(RUN) pytest -m "not e2e" $(PYTEST_ARGS)

test-e2e: bootstrap
	@$(RUN) pytest -m e2e $(PYTEST_ARGS)

lint: bootstrap
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy

format: bootstrap
	@$(RUN) ruff check --fix .
	@$(RUN) ruff format .

bench: bootstrap  ## load test on the embedded stack; prints one JSON document
	@$(RUN) python -m tools.bench $(BENCH_ARGS)

settings-doc: bootstrap  ## rewrite the table of every environment setting in docs/configuration.md
	@$(RUN) python -m tools.settings_doc

roll: bootstrap  ## restart `make up`'s services one by one (SIGTERM, wait healthy, next)
	@$(RUN) python -m tools.stack roll

asyncapi: bootstrap  ## write each service's AsyncAPI document under deploy/asyncapi/
	@$(RUN) python -m tools.asyncapi deploy/asyncapi

web:  ## rebuild the browser pages' bundle (Node and npm needed; the built files are committed)
	@cd services/sessions/web && npm ci --no-audit --no-fund && npm run typecheck && npm run build

k8s-check: bootstrap  ## render every Kubernetes overlay and validate it offline (built-in kinds and the operators' CRDs)
	@$(RUN) python -m tools.k8s check

image-check: bootstrap  ## lint the Dockerfile and prove its runtime install: empty venv, no dev packages, a service healthy
	@$(RUN) python -m tools.image_check all
