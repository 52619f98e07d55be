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
	# the dashboard's browser tests drive Debian's Chromium (never `playwright install`: no downloads)
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; } || echo "chromium missing: dashboard browser tests will skip"
	# tenant code runs in Debian's bubblewrap (dojo.service.agent.sandbox); never bare
	command -v bwrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap; } || echo "bubblewrap missing: sandbox tests will skip"
	touch $(STAMP)

# The main job: `dojo loop` on the embedded world (drive, ingest, auto-label, mine, train, evaluate
# in nines, gate; up to five turns in the 20-minute budget), then its report at out/loop/report/index.html. The recipe measured
# best (docs/loop.md): the perception heads, trained on every frame's auto-labels, drive the planner.
run: $(STAMP)
	$(BIN)/dojo world render --scenario cut_in --seed 3 --out out/frame.png
	rm -rf out/loop
	$(BIN)/dojo loop --out out/loop --net perception --labels autolabel

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/dojo bench world
	$(BIN)/dojo bench drive
	$(BIN)/dojo bench data
	$(BIN)/dojo bench train
	$(BIN)/dojo bench plan

clean:
	rm -rf $(VENV) out
