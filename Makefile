# The two commands of the README. Each sets everything up on a fresh Debian machine first.
#   make demo   - set up, then run the embedded default (AC/DC on digits through FFCV)
#   make test   - set up (with the local SLURM cluster), then run the whole test suite
SHELL := /bin/bash
VENV ?= .venv

.PHONY: demo test setup setup-test slurm-up

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

slurm-up: setup-test
	bash scripts/slurm_local.sh up

demo: setup
	$(VENV)/bin/acdc-train

test: slurm-up
	$(VENV)/bin/python -m pytest -ra
