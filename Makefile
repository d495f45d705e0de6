# Two commands for a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Installs again only when a requirements file changes.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

.PHONY: run test install lint bench sandbox clean

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# The port the portal listens on: `make run PORT=8001` when 8000 is taken. Every
# process (and every link in an email) follows it through PORTAL_BASE_URL.
PORT ?= 8000
run: export PORT := $(PORT)
run: export PORTAL_BASE_URL ?= http://127.0.0.1:$(PORT)

## Install, migrate, load demo data, create schedules, start web + worker + beat (+ sandbox).
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py setup_periodic_tasks
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@$(PY) manage.py demo_logins
	@# -p: honcho hands the first process (web) this port, as $$PORT.
	$(BIN)/honcho start -f Procfile -p $(PORT)

## Install the dev requirements and run the whole suite.
test: install
	@# Live-server threads would otherwise keep PostgreSQL connections open.
	CONN_MAX_AGE=0 $(BIN)/pytest -n 2 --dist loadfile -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(PY) manage.py makemigrations --check --dry-run

## Benchmarks (PostgreSQL); writes bench/results.json.
bench: install
	$(PY) -m bench.run $(BENCH_ARGS)

## The sandbox as its own server process (for load tests).
sandbox: install
	$(PY) manage.py run_sandbox

clean:
	rm -rf $(VENV) var staticfiles
