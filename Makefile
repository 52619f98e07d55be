# Two entry points (see README): `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# A CPU build of PyTorch; an unpinned torch would pull gigabytes of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: the most complete pipeline so far (world survey, a fleet drive; `dojo loop` once it exists).
run: $(STAMP)
	$(BIN)/dojo world survey --worlds 64 --seconds 30
	$(BIN)/dojo world render --scenario cut_in --seed 3 --out out/frame.png
	rm -rf out/drives
	$(BIN)/dojo drive --cars 8 --minutes 1 --mode mixed --policy naive --out out/drives

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/dojo bench world
	$(BIN)/dojo bench drive

clean:
	rm -rf $(VENV) out
