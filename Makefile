# Sotto: `make demo` runs the product on the embedded default; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONPATH := $(CURDIR):$(CURDIR)/platform

.PHONY: install browser demo stop test bench faults lint audit serve worker beat migrate clean-db

# pip runs --quiet (its per-package lines would bury everything else), so each step says first what it
# does and roughly how long it takes.
$(VENV)/.installed: pyproject.toml requirements.lock clients/python/pyproject.toml
	@test -x $(PY) || { echo "==> Creating the virtual environment $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> Upgrading pip in $(VENV) (seconds)"
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	@echo "==> Installing Sotto and its pinned dependencies (requirements.lock: PyTorch CPU, transformers, ONNX Runtime,"
	@echo "    Opacus, Django, test tools): about 2 GB; typically 2-5 min on a first install, mostly downloads; pip is quiet"
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	@echo "==> Installing the Python client (clients/python, import sotto_client) in development mode (seconds)"
	$(PY) -m pip install --quiet -e clients/python
	@touch $@
	@echo "==> $(VENV) is ready"

install: $(VENV)/.installed

# Debian's Chromium for the admin's browser tests (Playwright drives it; nothing is downloaded by Playwright).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	  else echo "chromium missing: run 'sudo apt-get install chromium'"; fi; }

migrate: install
	@echo "==> Database migrations (without DATABASE_URL the first run also creates the embedded PostgreSQL in var/pgdata)"
	$(PY) manage.py migrate --noinput

# The demo encodes with ONNX int8 (about 4x fp32 here, cosine 0.99 to it) so setup fits in minutes on 2 cores;
# the worker and the web server it starts inherit the setting, so queries match the items.
# It runs web, worker and beat until Ctrl-C or SIGTERM (`exec`: make's SIGTERM reaches it, not a shell).
demo: install migrate
	SOTTO_ENCODER_PRECISION=$${SOTTO_ENCODER_PRECISION:-int8} exec $(PY) manage.py demo

# Stops what `make demo` started (web, worker, beat: recorded in var/run/demo.json), then the embedded
# PostgreSQL. Imports no Django settings, which would start the database just to stop it.
stop:
	@if [ -x $(PY) ]; then $(PY) -m apps.demo.processes stop; else echo "no $(VENV): nothing was started"; fi

test: install browser
	$(PY) -m pytest

bench: install migrate
	$(PY) -m bench.run

# The fault suite (bench/faults.py): kill -9 of the worker and of a web worker, PostgreSQL and the broker
# stopped, and a 30-client load, on a stack of its own under var/faults/; one figure per scenario.
faults: install
	$(PY) -m bench.faults

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/bandit -q -c pyproject.toml -r apps platform bench

# Known vulnerabilities of every pinned package (pip-audit asks PyPI's JSON API). Needs a network that
# reaches pypi.org's API, not only a package index; --strict fails when a pin could not be checked.
audit: install
	$(PY) -m pip install --quiet pip-audit==2.10.1
	$(VENV)/bin/pip-audit --strict --no-deps --disable-pip -r requirements.lock

serve: install migrate
	$(VENV)/bin/gunicorn config.wsgi:application --pythonpath platform --bind 127.0.0.1:8000 --workers 2 --threads 4

worker: install
	$(VENV)/bin/celery -A config worker -Q default,encode,train --loglevel INFO

beat: install
	$(VENV)/bin/celery -A config beat --loglevel INFO --schedule var/celerybeat-schedule

clean-db:
	-$(PY) -c "from pathlib import Path; import sys; sys.path[:0]=['.', 'platform']; from config import embedded_pg; embedded_pg.stop(Path('var'))"
	rm -rf var/pgdata
