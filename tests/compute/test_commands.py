"""``dojo plan`` through its own argparse registration (before the lead wires it into dojo.cli)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from PIL import Image

from dojo.compute.commands import add_bench_command, add_commands
from dojo.compute.draw import draw_allocation
from dojo.compute.placement import Allocator
from dojo.compute.topology import parse_system
from dojo.errors import DojoConfigError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dojo")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    add_bench_command(sub.add_parser("bench").add_subparsers(dest="bench_command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_plan_table_with_equivalence(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        _run(
            [
                "plan",
                "--net",
                "policy",
                "--size",
                "tiny",
                "--samples",
                "1e9",
                "--system",
                "exapod",
                "--vs",
                "h100-node:64",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for text in (
        "step time",
        "time to train",
        "energy",
        "cost",
        "exapod",
        "h100-node:64",
        "equivalence:",
        "1.09 EFLOP/s",
    ):
        assert text in out


def test_plan_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        _run(
            [
                "plan",
                "--size",
                "tiny",
                "--samples",
                "1e6",
                "--system",
                "tile",
                "--nproc",
                "20",
                "--batch",
                "640",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    (p,) = data["plans"]
    assert p["chips"] == 20 and p["batch_per_chip"] == 32
    assert p["placement"]["block"] == "tile0" and p["placement"]["contiguous"]
    assert p["step"]["total_s"] > 0 and p["energy_kwh"] > 0


def test_plan_on_this_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        _run(
            ["plan", "--size", "tiny", "--samples", "1e4", "--system", "cpu-host", "--batch", "32"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fp32" in out and "calibration:" in out


def test_plan_draws_the_placement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.png"
    assert (
        _run(
            [
                "plan",
                "--size",
                "tiny",
                "--system",
                "exapod",
                "--nproc",
                "20",
                "--batch",
                "640",
                "--draw",
                str(out),
            ]
        )
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    img = Image.open(out).convert("RGB")
    colours = {c for _, c in img.getcolors(maxcolors=1 << 16) or []}
    assert (243, 112, 33) in colours  # the job's chips
    assert (205, 208, 214) in colours  # free chips


def test_drawing_several_jobs_and_units(tmp_path: Path) -> None:
    alloc = Allocator(parse_system("h100-node:6"))
    alloc.allocate("a", 12)
    alloc.allocate("b", 3)
    path = draw_allocation(alloc, tmp_path / "nodes.png", highlight="b")
    assert Image.open(path).size[0] >= 480
    with pytest.raises(DojoConfigError, match=r"\.png"):
        draw_allocation(alloc, tmp_path / "nodes.jpg")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--system", "dojo9000"], "system='dojo9000' is not known"),
        (["--system", "tile", "--nproc", "30"], "cannot fit"),
        (["--system", "a100-node", "--precision", "fp8"], "precision='fp8'"),
        (["--system", "exapod", "--vs", "a100-node", "--precision", "cfp8"], "precision='cfp8'"),
        (["--samples", "-5"], "-5"),
        (["--system", "tile", "--batch", "-1"], "batch=-1"),
        (["--system", "tile", "--nproc", "-2"], "chips=-2"),
        (["--system", "cpu-host", "--calibration", "/nonexistent/cal.json"], "does not exist"),
    ],
)
def test_bad_input_is_one_clear_error(argv: list[str], match: str) -> None:
    with pytest.raises(DojoConfigError, match=match):
        _run(["plan", "--size", "tiny", *argv])
