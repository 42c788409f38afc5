# aipk — the two README commands: `make run` and `make test`.
# Needs only Python 3.11 (python3.11 or python3) and GNU make; everything else
# is installed into .venv from requirements-dev.txt.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV      ?= .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.requirements-installed
HOST      ?= 127.0.0.1
PORT      ?= 8000
SIM_PORT  ?= 8100
PYTEST_ARGS ?=

.PHONY: help install browser deploy-validators run serve test lint migrate clean

help:
	@echo "make run    set up .venv, migrate, start the provider simulator, the server and its scheduled jobs"
	@echo "make test   set up .venv and run the whole test suite"
	@echo "make serve  migrate, then serve in production: uvicorn, WEB_CONCURRENCY workers (docs/DEPLOY.md)"
	@echo "make lint   ruff (lint + format check) and mypy"
	@echo "variables:  HOST=$(HOST) PORT=$(PORT) SIM_PORT=$(SIM_PORT) WEB_CONCURRENCY=<cores> PYTEST_ARGS='...'"

$(PY):
	@test -n "$(PYTHON_BOOTSTRAP)" || { echo "error: python3.11 or python3 is required" >&2; exit 1; }
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)

# Reinstall only when a requirements file is newer than the stamp.
$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser tests (installed with apt-get when missing).
browser:
	@scripts/ensure-chromium

# Debian's docker-compose, which validates compose.yaml (tests/test_deploy_files.py).
deploy-validators:
	@scripts/ensure-deploy-validators

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

run: migrate
	@for p in $(PORT) $(SIM_PORT); do \
	  if (exec 3<>/dev/tcp/127.0.0.1/$$p) 2>/dev/null; then \
	    echo "error: port $$p is already in use; choose others: make run PORT=... SIM_PORT=..." >&2; exit 1; \
	  fi; \
	done
	@set -u; \
	$(PY) manage.py simulate_providers --port $(SIM_PORT) & sim_pid=$$!; \
	trap 'kill $$sim_pid 2>/dev/null; wait $$sim_pid 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	for _ in $$(seq 1 40); do \
	  kill -0 $$sim_pid 2>/dev/null || break; \
	  (exec 3<>/dev/tcp/127.0.0.1/$(SIM_PORT)) 2>/dev/null && break; \
	  sleep 0.25; \
	done; \
	if ! kill -0 $$sim_pid 2>/dev/null; then \
	  echo "warning: the provider simulator did not start (see its output above)" >&2; \
	fi; \
	case "$(HOST)" in 0.0.0.0|::|"[::]") client_host=127.0.0.1;; *) client_host="$(HOST)";; esac; \
	echo "Seeding the demo, health-checking its providers and discovering their models..."; \
	$(PY) manage.py seed_demo --quiet --simulator-url http://127.0.0.1:$(SIM_PORT) \
	  --base-url "http://$$client_host:$(PORT)" \
	  || echo "warning: seeding the demo failed (see above); the server starts anyway" >&2; \
	echo ""; \
	echo "aipk is starting:"; \
	echo "  console    http://$(HOST):$(PORT)/console/"; \
	echo "  admin      http://$(HOST):$(PORT)/admin/"; \
	echo "  API docs   http://$(HOST):$(PORT)/api/docs"; \
	echo "  simulator  http://127.0.0.1:$(SIM_PORT)"; \
	echo ""; \
	echo "Stop with Ctrl-C (the simulator stops with the server)."; \
	echo ""; \
	$(PY) manage.py run_embedded $(HOST):$(PORT)

# Production: N uvicorn workers against DATABASE_URL and REDIS_URL (docs/DEPLOY.md); more
# than one worker needs Redis. WEB_CONCURRENCY unset: one worker per core. exec: the
# server gets SIGTERM itself and drains.
serve: migrate
	HOST=$(HOST) PORT=$(PORT) $(if $(WEB_CONCURRENCY),WEB_CONCURRENCY=$(WEB_CONCURRENCY)) \
	  exec $(PY) manage.py serve

# pytest exit code 5 means "no tests collected": a failure, said out loud.
test: $(STAMP) browser deploy-validators
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; \
	exit $$rc

# ruff (lint + format check) and mypy over the project's code.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy aipk_site providers_app tenants_app

clean:
	rm -rf staticfiles
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
