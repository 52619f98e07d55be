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

# The main job: the most complete pipeline so far (world survey, a fleet drive, ingest, catalog
# queries, mining, training, and the trained net driving held-out scenarios; `dojo loop` once
# it exists).
run: $(STAMP)
	$(BIN)/dojo world survey --worlds 64 --seconds 30
	$(BIN)/dojo world render --scenario cut_in --seed 3 --out out/frame.png
	rm -rf out/drives out/store out/runs out/eval
	$(BIN)/dojo drive --cars 8 --minutes 1 --mode mixed --policy naive --out out/drives
	$(BIN)/dojo ingest out/drives --store out/store
	$(BIN)/dojo query out/store "SELECT d.family, d.mode, count(DISTINCT d.drive_id) AS drives, count(c.clip_id) AS clips, sum(c.frames) AS frames FROM drives d LEFT JOIN clips c USING (drive_id) GROUP BY ALL ORDER BY 1, 2"
	$(BIN)/dojo query out/store "SELECT kind, critical, reason, count(*) AS n FROM events GROUP BY ALL ORDER BY n DESC"
	$(BIN)/dojo mine out/store --trigger critical_intervention,near_miss,shadow_disagreement,cut_in --sample-normal 0.5 --out demo
	$(BIN)/dojo train --dataset demo --store out/store --steps 200 --out out/runs/demo
	$(BIN)/dojo drive --cars 8 --minutes 1 --mode autonomous --policy naive --heldout --seed 1000000 --logging none --out out/eval
	$(BIN)/dojo drive --cars 8 --minutes 1 --mode autonomous --policy out/runs/demo/policy.pt --heldout --seed 1000000 --logging none --out out/eval

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/dojo bench world
	$(BIN)/dojo bench drive
	$(BIN)/dojo bench data
	$(BIN)/dojo bench train

clean:
	rm -rf $(VENV) out
