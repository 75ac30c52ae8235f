# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# The CPU build of torch is pinned here (set-up), not in the package's own dependencies.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0

$(BIN)/netinvert: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/netinvert

demo: install
	$(BIN)/netinvert demo --out runs/demo

test: install
	$(BIN)/python -m pytest -q

.PHONY: install demo test
