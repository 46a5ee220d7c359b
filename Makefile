# `make run`: a working service on embedded defaults. `make test`: the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test services bench lint docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/offload dev

services:
	@scripts/ensure-services

test: $(STAMP) services
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no test: that is a failure" >&2; fi; \
	exit $$rc

bench: $(STAMP) services
	$(PY) bench/backend.py
	$(PY) bench/framework.py
	$(PY) bench/codegraph.py
	$(PY) bench/credits.py

docs: $(STAMP)
	$(PY) scripts/config-docs --write

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) .offload .pytest_cache build *.egg-info src/*.egg-info
