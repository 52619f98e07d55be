"""`dojo bench nines`: the coverage, gate and drive-length tables from the command line."""

from __future__ import annotations

import json

import pytest

from dojo.bench.nines import coverage, false_refusals
from dojo.cli import main
from dojo.errors import ConfigError


def test_the_command_prints_every_table_and_valid_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nines", "--trials", "10"]) == 0
    table = capsys.readouterr().out
    assert "coverage of the 95% interval" in table and "gate:" in table and "drive length" in table
    assert main(["bench", "nines", "--trials", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"coverage", "coverage_per_family", "gate", "drive_length"} <= set(out)
    for row in out["coverage"]:
        assert set(row["coverage"]) == {"clopper_pearson", "korn_graubard", "bootstrap"}
        assert all(0.0 <= v <= 1.0 for v in row["coverage"].values())


def test_false_refusals_run_at_small_sizes() -> None:
    r = false_refusals(3e-3, 1.0, families=2, drives=4, trials=20, seed=1)
    assert set(r["refused"]) >= {"old", "new", "new_paired"}


def test_bad_simulation_settings_are_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="rate"):
        coverage(0.0, 1.0)
    with pytest.raises(ConfigError, match="drives"):
        coverage(1e-3, 1.0, drives=0)
    assert main(["bench", "nines", "--trials", "2"]) == 2
    assert "trials=2" in capsys.readouterr().err
