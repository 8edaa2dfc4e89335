# Two commands do all set-up on a fresh machine:
#   make run    the main job (paper preset, embedded defaults)
#   make test   ruff, mypy and the test suite
# and three more for the rest:
#   make docs       the documentation site, warnings as errors, into site/
#   make test-slow  the long checks (the wheel outside the repository, the site in a browser)
#   make bench      the benchmarks
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Where torch comes from. It is installed before the project so that nothing else picks a build.
# TORCH_INDEX empty: pip's configured index, which on this project's machines serves the CPU build
# of torch 2.13.0. Where the default index serves CUDA builds (PyPI on Linux), pass
# TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU build, or a CUDA index from
# pytorch.org for a GPU. A different torch needs a fresh venv: `make clean` first.
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_PIP   := $(if $(strip $(TORCH_INDEX)),--index-url $(TORCH_INDEX))

.PHONY: run test test-slow lint docs docs-lint bench clean

# The dev extra holds the test, lint and docs tools.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIP) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]" "$(TORCH)"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/aif simulate --scenario paper --tmax 15 --episodes 5 --seed 0 --policy all

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -n 2

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# NO_MKDOCS_2_WARNING: Material's end-of-life notice, printed at every build (docs/building-docs.md).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Lists docstring warnings (unknown parameters, missing types, roles naming nothing); never fails.
docs-lint: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DOCSTRING_WARNINGS=true \
		$(BIN)/mkdocs build --no-strict --site-dir $(VENV)/docs-lint-site 2>&1 \
		| grep -E "griffe|mkdocstrings" || echo "no docstring warnings"

bench: $(STAMP)
	$(BIN)/python benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache
