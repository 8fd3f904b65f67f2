# The two commands of the README. Each sets everything up on a fresh Debian machine first.
#   make demo   - set up, then run the embedded default (AC/DC on digits through FFCV)
#   make test   - set up (with the local SLURM cluster), then run the whole test suite
#   make deepsparse - optional: DeepSparse 1.8 in its own venv (.venv-deepsparse) for speed reports
#   make test-fast - the unit tests only (no training, no console scripts, no SLURM), under 2 minutes,
#                 for the edit-test loop in a set-up checkout (CI runs make test)
#   make lint   - ruff check + ruff format --check (part of make test)
#   make lock   - re-resolve requirements/lock.txt from pyproject.toml + requirements/pins.txt
SHELL := /bin/bash
VENV ?= .venv
UV_VERSION ?= 0.13.9
# make lock LOCK_FLAGS=--upgrade (everything) or LOCK_FLAGS="--upgrade-package onnxruntime"
LOCK_FLAGS ?=

.PHONY: demo test test-fast setup setup-test slurm-up deepsparse lint lock

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

slurm-up: setup-test
	bash scripts/slurm_local.sh up

# the test suite covers the DeepSparse path, so `make test` sets it up too
deepsparse:
	bash scripts/setup_deepsparse.sh

demo: setup
	$(VENV)/bin/acdc-train

test: slurm-up deepsparse lint
	$(VENV)/bin/python -m pytest -ra

test-fast:
	$(VENV)/bin/python -m pytest -q -m "not e2e and not slurm"

# ruff (pinned in the lock, configured in pyproject.toml): lint and formatting, as CI checks them
lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Exact versions of every package the project installs, for Linux x86_64 / CPython 3.11 (the
# machines CI and the GPU nodes run). uv is pinned here so a refresh is itself reproducible.
lock: setup
	$(VENV)/bin/pip install -q "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --constraint requirements/pins.txt \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command "make lock" --output-file requirements/lock.txt $(LOCK_FLAGS)
	bash scripts/setup.sh --test
