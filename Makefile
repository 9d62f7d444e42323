# One command sets up and runs the main job; one sets up and runs the tests.
#   make demo   -> venv + the whole chain on built-in synthetic faces
#   make test   -> venv + the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# Where pip finds torch (only torch). Empty: pip's configured index (this machine: the local CPU wheel, offline).
# CPU-only machines such as CI runners: TORCH_INDEX=https://download.pytorch.org/whl/cpu (PyTorch's CPU wheels;
# the default index serves a multi-GB CUDA build).
TORCH_INDEX ?=

.PHONY: setup demo test test-fast lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel on local disk or from TORCH_INDEX (a bare `torch` pulls a multi-GB CUDA build)
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e '.[tflite,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m recipes run recipes/quickstart.yaml --out runs/quickstart

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf runs .pytest_cache .ruff_cache
