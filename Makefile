# Two commands set everything up on a fresh machine:
#   make run   - create .venv, install Layerscope, serve it on port 8000
#   make test  - install the test tools, lint, run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: install run test lint bench clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned here: this machine has the 2.13.0 CPU build on disk; an unpinned torch pulls a multi-GB CUDA build.
# Every other dependency is held to the versions in the lock files (`make lock` regenerates them, see the README).
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed requirements-test.lock
	$(BIN)/python -m pip install --quiet -c requirements-test.lock -e ".[test]"
	touch $@

# Resolve pyproject.toml's dependencies again (pip-tools), runtime and runtime + test, into the lock files.
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet "pip-tools>=7.4"
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links --upgrade \
		--output-file requirements.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links --upgrade --extra test \
		--output-file requirements-test.lock pyproject.toml

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/layerscope serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(VENV)/.test-installed
	$(BIN)/python bench/summary_speed.py
	$(BIN)/python bench/large_models.py
	$(BIN)/python bench/memory_accuracy.py
	$(BIN)/python bench/feature_maps_speed.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/sizing_accuracy.py
	$(BIN)/python bench/graph_speed.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache test-output
