# The two commands a user needs: `make run` and `make test`. Everything else is a helper target.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test lint format bench install install-dev clean-var

run: $(VENV)/.installed
	$(PY) -m server.devrun

test: $(VENV)/.installed-dev
	bash tests/run_all.sh

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# torch goes in first, pinned, so that nothing below it can pull a different torch build.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install "torch==2.13.0"
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -r requirements-dev.txt
	touch $@

bench: $(VENV)/.installed-dev
	$(PY) bench/bench_inference.py
