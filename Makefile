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
	# torchattacks' PGD is the reference our PGD is tested against; its metadata asks for torchvision, which would
	# pull a CUDA torch, and it imports fine without it
	$(BIN)/pip install -q --no-deps "torchattacks==3.5.1"
	touch $@

install: $(BIN)/netinvert

demo: install
	$(BIN)/netinvert demo --out runs/demo --force

test: install
	$(BIN)/python -m pytest -q

# Every committed file in bench/results/, from a clean clone: target models are trained by committed
# commands into bench/.cache/ (hours on 2 cores; Fashion-MNIST from Debian's dataset-fashion-mnist).
BENCH := classifiers inversion bnn bnn_robustness threads throughput ood bnn_garbage explain reconstruct reconstruct_prior adversarial
bench: install
	set -e; for b in $(BENCH); do NETINVERT_THREADS=1 $(BIN)/python bench/$$b.py; done

# A reduced set of every benchmark for a smoke check (under 15 min before the application benchmarks joined; each of
# those takes a few minutes with --quick), into bench/.cache/quick/ (never committed).
bench-quick: install
	set -e; for b in $(BENCH); do NETINVERT_THREADS=1 $(BIN)/python bench/$$b.py --quick --results bench/.cache/quick; done

.PHONY: install demo test bench bench-quick
