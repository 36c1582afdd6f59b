# Holdfast developer entry points. `make run` starts the embedded stack (SQLite, filesystem
# broker, web + worker + beat); `make test` runs the suite against real PostgreSQL and Redis.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
BIN       := $(CURDIR)/$(VENV)/bin
PY        := $(BIN)/python
STAMP     := $(VENV)/.installed
PGUSER    ?= $(shell id -un)
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=
# The port of `make run`'s web server (honcho hands $PORT to the first process, web).
PORT      ?= 8000
LINT_PATHS := portal vaults policies guards

# Procfile.dev and manage.py subprocesses find the venv's python/celery first; browsers
# come from Debian (/usr/bin/chromium), never from Playwright's download.
export PATH := $(BIN):$(PATH)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
export PYTHONUNBUFFERED := 1

.PHONY: help venv run test lint format bench bench-s3 bench-replica bench-portfolio bench-reports bench-audit bench-scale bench-load fuzz clean distclean

help:
	@echo "make venv    create/refresh .venv (pip install -e '.[dev]') when pyproject.toml changes"
	@echo "make run     migrate, seed demo data, start web (127.0.0.1:PORT, default 8000) + worker + beat"
	@echo "make test    ensure PostgreSQL/Redis, run pytest -n 2 (extra args: PYTEST_ARGS=...)"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make format  sort imports and format with ruff"
	@echo "make bench   data plane against restic (bench/run.py)"
	@echo "make bench-s3  backup/restore to S3 (moto and Ceph RGW on loopback) next to local disk"
	@echo "make bench-replica  replica copies local->local and local->S3 (moto), first and after a 1% change, beside a full re-backup"
	@echo "make bench-portfolio  portfolio page and vault API at 100 and 10,000 vaults"
	@echo "make bench-reports  compliance report (page, JSON, CSV, PDF) at 100 and 10,000 vaults over 90 days"
	@echo "make bench-audit  gate throughput with 8 writers (before/after the linker) and audit_verify of 1,000,000 records"
	@echo "make bench-scale  issue 20 at 10,000 vaults / 100,000 items / 1,000,000 points: expiry, dispatch, verification schedule, storage sweep, audit_verify, gate throughput (SCALE_ARGS=--only expiry,dispatch)"
	@echo "make bench-load  50 users browsing and operating for 2 min (locust; LOAD_RUN_TIME=20s)"
	@echo "make fuzz    longer schemathesis and stateful gate runs"
	@echo "make clean   remove caches and build output (keeps .venv and var/)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV)"; python3 -m venv $(VENV); }
	$(PY) -m pip install -U pip
	$(PY) -m pip install -e '.[dev]'
	@touch $@

# On PostgreSQL (a postgres:// DATABASE_URL) migrations run as DATABASE_URL's role, the owner,
# and web, worker and beat as the least-privilege role db_roles sets up (HOLDFAST_DB_APP_ROLE,
# HOLDFAST_DB_APP_PASSWORD), which signs in over the same URL with a password (so not through
# a peer-authenticated socket); or set DATABASE_OWNER_URL and DATABASE_URL apart yourself.
run: venv
	mkdir -p var
	@set -e; \
	case "$${DATABASE_URL:-}" in \
	  postgres*|pgsql*) \
	    if [[ -z "$${DATABASE_OWNER_URL:-}" ]]; then \
	      export DATABASE_OWNER_URL="$$DATABASE_URL" \
	        HOLDFAST_DB_APP_ROLE="$${HOLDFAST_DB_APP_ROLE:-holdfast_app}" \
	        HOLDFAST_DB_APP_PASSWORD="$${HOLDFAST_DB_APP_PASSWORD:-holdfast-app-dev}"; \
	      app_url="$$($(PY) manage.py db_roles --print-app-url)"; \
	      export DATABASE_URL="$$app_url"; \
	    fi; \
	    $(PY) manage.py migrate --noinput; \
	    $(PY) manage.py db_roles; \
	    unset DATABASE_OWNER_URL;; \
	  *) $(PY) manage.py migrate --noinput;; \
	esac; \
	$(PY) manage.py seed_demo; \
	exec $(BIN)/honcho -f Procfile.dev start --port $(PORT)

# ensure-services.sh prints the DATABASE_URL to use (TCP as $(PGUSER) when the server
# trusts it, otherwise the Unix socket); a postgres:// DATABASE_URL in the environment wins.
test: venv
	@set -e; \
	db_url="$$(PGUSER='$(PGUSER)' TEST_BROKER_URL='$(TEST_BROKER_URL)' scripts/ensure-services.sh)"; \
	export DATABASE_URL="$$db_url" CELERY_BROKER_URL='$(TEST_BROKER_URL)'; \
	echo "DATABASE_URL=$$DATABASE_URL CELERY_BROKER_URL=$$CELERY_BROKER_URL"; \
	echo "pytest -n 2 $(PYTEST_ARGS)"; \
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(LINT_PATHS)

format: venv
	$(BIN)/ruff check --select I --fix .
	$(BIN)/ruff format .

bench: venv
	$(PY) bench/run.py

# Backup and restore to moto and Ceph RGW on loopback next to the local disk, same data, same
# run (Ceph's column reads n/a, saying why, without the Ceph packages).
bench-s3: venv
	$(PY) bench/s3.py

# Replica copies local->local and local->S3 (moto), first and incremental, beside a re-backup.
bench-replica: venv
	$(PY) bench/replica.py

# Portfolio page and vault list API at 100 and 10,000 vaults (its own PostgreSQL database).
bench-portfolio: venv
	@set -e; \
	db_url="$$(PGUSER='$(PGUSER)' TEST_BROKER_URL='$(TEST_BROKER_URL)' scripts/ensure-services.sh)"; \
	BENCH_POSTGRES="$$db_url" $(PY) bench/portfolio.py

# The compliance report at seed_scale size (10,000 vaults, 100,000 items, 1,000,000 points and
# about 1,000,000 jobs over 90 days) and at 100 vaults: under 2 s, the same query count.
bench-reports: venv
	@set -e; \
	db_url="$$(PGUSER='$(PGUSER)' TEST_BROKER_URL='$(TEST_BROKER_URL)' scripts/ensure-services.sh)"; \
	BENCH_POSTGRES="$$db_url" $(PY) bench/reports.py

# The audit chain (issue 20): gate operations a second with 8 concurrent writers, now and at
# BASELINE (the commit before the linker), and audit_verify of 1,000,000 records.
bench-audit: venv
	@set -e; \
	db_url="$$(PGUSER='$(PGUSER)' TEST_BROKER_URL='$(TEST_BROKER_URL)' scripts/ensure-services.sh)"; \
	BENCH_POSTGRES="$$db_url" $(PY) bench/audit.py --baseline "$${BASELINE:-db4f7fb}"

# Background work at fleet scale (issue 20): on copies of bench-reports' seed_scale database
# (10,000 vaults, kept between runs; seeded here if missing), the expiry sweep of 100,000 points,
# a dispatch tick of 10,000 due items, the verification schedule, the storage sweep, then
# bench/audit.py's audit_verify of 1,000,000 records and gate throughput with 8 writers against
# BASELINE: time, SQL statements and peak memory of each against its goal, a table written to
# bench/results/scale-all-<date>.md. SCALE_ARGS=--only expiry,dispatch runs a subset. Messages
# go to their own Redis database (SCALE_BROKER_URL, default /13), emptied after.
bench-scale: venv
	@set -e; \
	db_url="$$(PGUSER='$(PGUSER)' TEST_BROKER_URL='$(TEST_BROKER_URL)' scripts/ensure-services.sh)"; \
	BENCH_POSTGRES="$$db_url" $(PY) bench/scale.py --baseline "$${BASELINE:-db4f7fb}" $(SCALE_ARGS)

# Load test: 50 locust users browsing and running operations for 2 minutes against gunicorn
# and a worker on loopback, with its own database and Redis database (/14); p50/p95/p99.
bench-load: venv
	@set -e; \
	broker="$${LOAD_BROKER_URL:-redis://127.0.0.1:6379/14}"; \
	db_url="$$(PGUSER='$(PGUSER)' TEST_BROKER_URL="$$broker" scripts/ensure-services.sh)"; \
	BENCH_POSTGRES="$$db_url" LOAD_BROKER_URL="$$broker" $(PY) bench/load.py

# A longer fuzz: schemathesis against the OpenAPI schema and the gate's state machine.
fuzz: venv
	@set -e; \
	db_url="$$(PGUSER='$(PGUSER)' TEST_BROKER_URL='$(TEST_BROKER_URL)' scripts/ensure-services.sh)"; \
	export DATABASE_URL="$$db_url" CELERY_BROKER_URL='$(TEST_BROKER_URL)' \
	  HOLDFAST_FUZZ_EXAMPLES=100 HOLDFAST_FUZZ_RANDOM=1 \
	  HOLDFAST_STATEFUL_EXAMPLES=200 HOLDFAST_STATEFUL_STEPS=50 HOLDFAST_STATEFUL_RANDOM=1; \
	$(BIN)/pytest tests/test_fuzz_api.py tests/test_stateful.py -n 2 -q

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis test-results staticfiles build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Also drops the virtualenv and var/ (development database, broker queue, vault storage).
distclean: clean
	rm -rf $(VENV) var
