"""LoopConfig: every bad value is refused with a sentence naming it, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from dojo.errors import DojoConfigError
from dojo.loop import LoopConfig, run_loop


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("loops", 0, "loops=0"),
        ("loops", 1.5, "loops=1.5"),
        ("cars", 1, "cars=1"),
        ("cars", True, "cars=True"),
        ("drive_minutes", -1.0, "drive_minutes=-1.0"),
        ("drive_minutes", float("nan"), "drive_minutes=nan"),
        ("budget_minutes", 0, "budget_minutes=0"),
        ("net", "occupancy", "cannot drive"),
        ("net", "resnet", "net='resnet'"),
        ("size", "huge", "size='huge'"),
        ("sample_normal", 1.5, "sample_normal=1.5"),
        ("hazard_window_s", (2.0, -3.0), "hazard_window_s"),
        ("alpha", 0.9, "alpha=0.9"),
        ("out", " ", "out=' '"),
        ("warm_start", "yes", "warm_start='yes'"),
        ("start_policy", "/nowhere/policy.pt", "start_policy='/nowhere/policy.pt'"),
        ("start_policy", "expert", "start_policy='expert'"),
    ],
)
def test_bad_values_are_refused_by_name(field: str, value: object, words: str) -> None:
    with pytest.raises(DojoConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        LoopConfig(**{field: value})  # type: ignore[arg-type]


def test_an_output_folder_that_holds_files_is_refused_before_any_car_moves(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DojoConfigError, match="already holds files"):
        run_loop(LoopConfig(out=str(tmp_path)), progress=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_an_unknown_suite_is_refused_before_any_car_moves(tmp_path: Path) -> None:
    out = tmp_path / "loop"
    with pytest.raises(DojoConfigError, match="nosuch"):
        run_loop(LoopConfig(out=str(out), suite="nosuch"), progress=False)
    assert not out.exists()
