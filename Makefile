# reelay: the whole set-up is `make demo` and `make test` (each runs `setup` first).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup demo test test-all test-gpu bench bench-gpu lint clean

setup: $(STAMP)

# --no-cache-dir: the install is ~6.5 GB (PyTorch's CUDA build and its NVIDIA libraries); a
# copy of every downloaded wheel in pip's cache would add ~3 GB more to a fresh machine's disk.
# pip compiles every file it installs (~50 s of the install): keep that, since machines that
# set PYTHONDONTWRITEBYTECODE=1 would otherwise compile torch again in every process
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir -c constraints.txt -e '.[dev]' > $(VENV)/pip.log 2>&1 || (tail -40 $(VENV)/pip.log; exit 1)
	$(PY) -c "import torch, torchvision, ray, decord, av, s3fs, duckdb, moto, pytest, xdist"
	touch $(STAMP)

demo: setup
	$(PY) jobs/demo.py --workdir $(DEMO_DIR)

test: setup
	$(PY) -m pytest -m "not slow and not gpu" -q -n 2 --dist loadscope --durations=15

test-all: setup
	$(PY) -m pytest -m "not gpu" -q -n 2 --dist loadscope --durations=25

# needs a CUDA GPU (tests/test_gpu.py); never part of make test or CI
test-gpu: setup
	$(PY) -m pytest -m gpu -q -rs

bench: setup
	$(PY) -m benchmarks.run

bench-gpu: setup
	$(PY) -m benchmarks.gpu

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
