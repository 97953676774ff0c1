# The two front-door commands (`make demo`, `make test`) and a few helpers. Needs python3.11 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/evalsite
DEMO_ARGS ?=

.PHONY: venv demo test lint format worker serve

## Development: the runtime lock (requirements.txt) plus the tools (requirements-dev.txt includes it).
## A deployment installs requirements.txt alone: no test tools.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

## The main job on embedded defaults (SQLite, in-process jobs, the small demo student, no network).
demo: venv
	DEBUG=1 $(PY) manage.py demo $(DEMO_ARGS)

## Lint, then the whole suite against the local PostgreSQL and Redis.
test: venv lint
	DATABASE_URL=$(TEST_DATABASE_URL) $(VENV)/bin/pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## An RQ worker for the evalsite queue (set REDIS_URL first).
worker: venv
	$(PY) manage.py rqworker evalsite default

serve: venv
	$(VENV)/bin/gunicorn evalsite.wsgi --bind 127.0.0.1:8000 --workers 2
