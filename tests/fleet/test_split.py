"""A drive split into batches of cars writes the whole fleet's logs, byte for byte."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dojo.errors import ConfigError
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import DriveSummary, Fleet
from dojo.fleet.split import drive_batches, merge


def _config(out: Path, **kw: object) -> DriveConfig:
    base: dict[str, object] = dict(
        cars=5, minutes=0.25, drive_s=6.0, mode="mixed", policy="naive", seed=11, out=str(out)
    )
    base.update(kw)
    return DriveConfig(**base)  # type: ignore[arg-type]


def _logs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.mcap"))}


def test_batches_of_cars_write_the_same_logs_and_counts_as_one_fleet(tmp_path: Path) -> None:
    whole = Fleet(_config(tmp_path / "whole")).run()
    split = drive_batches(_config(tmp_path / "split", batch_cars=2))
    a, b = _logs(tmp_path / "whole"), _logs(tmp_path / "split")
    assert len(a) > 5  # every car ended at least one drive and started the next
    assert a == b
    for f in dataclasses.fields(DriveSummary):
        if f.name in ("files", "wall_s", "sensors_s", "logging_s", "video_logging_s"):
            continue
        if f.name == "miles":
            assert split.miles == pytest.approx(whole.miles, rel=1e-9)
        else:
            assert getattr(split, f.name) == getattr(whole, f.name), f.name
    assert split.files == sorted(str(tmp_path / "split" / n) for n in b)


def test_the_batch_size_is_not_recorded_so_drive_ids_do_not_depend_on_it(tmp_path: Path) -> None:
    assert "batch_cars" not in _config(tmp_path, batch_cars=3).as_metadata()
    assert _config(tmp_path, batch_cars=2).batches() == [[0, 1], [2, 3], [4]]
    assert _config(tmp_path).batches(workers=2) == [[0, 1, 2], [3, 4]]


@pytest.mark.parametrize("cars", [[], [0, 0], [5], [-1]])
def test_a_batch_naming_cars_outside_the_fleet_is_refused(tmp_path: Path, cars: list[int]) -> None:
    with pytest.raises(ConfigError, match=r"cars=.* must name distinct cars of the fleet"):
        Fleet(_config(tmp_path), cars=cars)


def test_a_negative_batch_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch_cars"):
        _config(tmp_path, batch_cars=-1)


def test_merging_sums_the_counters_and_joins_the_reasons() -> None:
    a = DriveSummary(cars=2, mode="mixed", policy="naive", decisions=10, reasons={"x": 1})
    b = DriveSummary(cars=3, mode="mixed", policy="naive", decisions=5, reasons={"x": 2, "y": 1})
    m = merge([a, b], wall_s=1.5)
    assert (m.cars, m.decisions, m.reasons, m.wall_s) == (5, 15, {"x": 3, "y": 1}, 1.5)


def test_a_fleet_a_checkpoint_drives_is_split_only_when_asked(tmp_path: Path) -> None:
    # a network's outputs round with its batch size: an unasked split would change the drive
    net = DriveConfig(cars=4, mode="autonomous", policy=str(tmp_path / "p.pt"), out=str(tmp_path))
    assert net.batches(workers=2) == [[0, 1, 2, 3]]
    assert dataclasses.replace(net, batch_cars=2).batches(workers=2) == [[0, 1], [2, 3]]
    naive = dataclasses.replace(net, policy="naive")
    assert naive.batches(workers=2) == [[0, 1], [2, 3]]
    assert dataclasses.replace(net, mode="manual").batches(workers=2) == [[0, 1], [2, 3]]
