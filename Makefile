# Cost Guardian: everything runs through uv. `make` alone lists the targets.
# The .env file is read by the services and by `cg-dev`, never by make: what make runs does not depend on it.

.DEFAULT_GOAL := help
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

# uv on PATH, else the copy `pip install --user uv` put next to python3 (its scripts dir may not be on PATH).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN = $(UV) run --no-sync

.PHONY: help up servers test bench lint fmt migrate sync uv

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

up: sync ## servers (yours via *_URL, else embedded in .data), migrations, every service; Ctrl-C stops
	$(RUN) cg-dev up

servers: sync ## only the servers, migrated, with their URLs, for running services by hand
	$(RUN) cg-dev servers

test: sync ## the whole test suite against real servers (PYTEST_ARGS="-k keys" to select)
	$(RUN) pytest $(PYTEST_ARGS)

bench: sync ## the benchmarks; prints and writes their figures
	$(RUN) python bench/run.py

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
