# Cost Guardian: everything runs through uv. `make` alone lists the targets.
# The .env file is read by the services and by `cg-dev`, never by make: what make runs does not depend on it.

.DEFAULT_GOAL := help
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

# uv on PATH, else the copy `pip install --user uv` put next to python3 (its scripts dir may not be on PATH).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN = $(UV) run --no-sync

.PHONY: help up servers test bench lint fmt migrate sync uv wrk browser

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

up: sync ## servers (yours via *_URL, else embedded in .data), migrations, every service; Ctrl-C stops
	$(RUN) cg-dev up

servers: sync ## only the servers, migrated, with their URLs, for running services by hand
	$(RUN) cg-dev servers

test: sync ## the whole test suite against real servers (PYTEST_ARGS="-k keys" to select)
	$(RUN) pytest $(PYTEST_ARGS)

bench: sync wrk ## the benchmarks; prints and writes their figures (docs/benchmarks.md)
	$(RUN) python -m bench

lint: sync ## ruff format --check, ruff check, mypy
	$(RUN) ruff format --check .
	$(RUN) ruff check .
	$(RUN) mypy

fmt: sync ## format and fix what ruff can
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

migrate: sync ## apply migrations to DATABASE_URL, or to the embedded PostgreSQL
	$(RUN) cg-dev migrate

sync: uv
	$(UV) sync --frozen

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || { \
		echo "installing uv with pip (python3 -m pip install --user uv)"; \
		python3 -m pip install --user uv \
			|| python3 -m pip install uv \
			|| python3 -m pip install --user --break-system-packages uv \
			|| { echo "could not install uv; see https://docs.astral.sh/uv/getting-started/installation/" >&2; exit 1; }; \
	}

browser: ## Debian's chromium for the browser tests (installed with apt-get where missing and allowed)
	@command -v chromium >/dev/null 2>&1 \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
			&& DEBIAN_FRONTEND=noninteractive apt-get update -qq \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "the browser tests need Chromium (Debian: apt-get install chromium); without it they are skipped" >&2

# The HTTP load generator the benchmarks drive; installed where a package manager allows it without asking.
wrk:
	@command -v wrk >/dev/null 2>&1 \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && apt-get install -y -qq wrk; } \
		|| { command -v brew >/dev/null 2>&1 && brew install wrk; } \
		|| echo "make bench needs wrk (Debian: apt-get install wrk; macOS: brew install wrk)" >&2
