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

# The main job: the most complete pipeline so far (the world survey; `dojo loop` once it exists).
run: $(STAMP)
	$(BIN)/dojo world survey --worlds 64 --seconds 30
	$(BIN)/dojo world render --scenario cut_in --seed 3 --out out/frame.png

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/dojo bench world

clean:
	rm -rf $(VENV) out
