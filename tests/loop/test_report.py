"""The loop report: a synthetic loop result and run folder (no real loop run), and one real
fleet drive ingested into a clip store for the mined-takeover picture."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dojo.loop import report, report_html
from dojo.loop.report import read_losses, running_mean, write_report

FAMILIES = ("highway", "stalled")
HOSTILE = '<script>alert("x")</script>'


def _family(critical: int) -> dict[str, Any]:
    return {
        "decisions": 1000,
        "critical_interventions": critical,
        "nines": 2.0,
        "nines_low": 1.8,
        "nines_high": 2.3,
    }


def _row(loop: int, promoted: bool, nines_high: float | None, gate: str) -> dict[str, Any]:
    return {
        "loop": loop,
        "windows": 12 + loop,
        "windows_by_trigger": {"cut_in": 2, "normal": 10 + loop},
        "train_loss": 0.0123 + loop,
        "occupancy_iou": 0.5 if loop else None,
        "decisions": 2000,
        "critical_interventions": 3 - loop,
        "nines": 2.8 + 0.3 * loop,
        "nines_low": 2.4 + 0.3 * loop,
        "nines_high": nines_high,
        "nines_is_bound": nines_high is None,
        "promoted": promoted,
        "gate": gate,
        "families": {f: _family(i + 2 - loop) for i, f in enumerate(FAMILIES)},
        "candidate": f"runs/loop{loop}/policy.pt",
    }


def _summary(
    policy: str, critical: int, nines: float, low: float, high: float | None
) -> dict[str, Any]:
    return {
        "policy": policy,
        "decisions": 2000,
        "critical_interventions": critical,
        "nines": nines,
        "nines_low": low,
        "nines_high": high,
        "nines_is_bound": high is None,
    }


def make_result() -> dict[str, Any]:
    """A loop result as run_loop returns it: two turns, the second promoted with no upper bound."""
    naive, expert = _summary("naive", 8, 2.4, 2.1, 2.8), _summary("expert", 0, 3.3, 3.3, None)
    return {
        "config": {"out": HOSTILE, "loops": 2, "suite": "heldout"},
        "suite": "heldout",
        "loops": [
            _row(0, False, 3.3, f"lower bound {HOSTILE} is below"),
            _row(1, True, None, "better"),
        ],
        "naive": naive,
        "expert": expert,
        "naive_nines": 2.4,
        "naive_nines_low": 2.1,
        "naive_nines_high": 2.8,
        "expert_nines": 3.3,
        "expert_nines_low": 3.3,
        "expert_nines_high": None,
        "expert_nines_is_bound": True,
        "deployed": {
            "model": "runs/loop1/policy.pt",
            "loop": 1,
            **_summary("runs/loop1/policy.pt", 1, 3.1, 2.6, None),
        },
        "versus_naive": {"p_value": 0.01, "significant": True, "safer": "runs/loop1/policy.pt"},
        "versus_expert": {"p_value": 0.5, "significant": False, "safer": None},
        "stopped_early": None,
        "wall_s": 61.0,
    }


def make_run_folder(out: Path, result: dict[str, Any]) -> Path:
    """The files the report reads besides the result: eval JSONs and training metrics."""
    (out / "eval").mkdir(parents=True)
    for name, crit in (("naive", 4), ("expert", 0)):
        fams = {f: {**_family(crit + i), "miles": 1.0} for i, f in enumerate(FAMILIES)}
        (out / "eval" / f"{name}.json").write_text(json.dumps({"policy": name, "families": fams}))
    for row in result["loops"]:
        run = out / "runs" / f"loop{row['loop']}"
        run.mkdir(parents=True)
        lines = [
            json.dumps({"step": s, "loss": 1.0 / s + row["loop"], "lr": 1e-3}) for s in range(1, 51)
        ]
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n{not json\n")
    (out / "loop.json").write_text(json.dumps(result))
    return out


@pytest.fixture
def run_dir(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    result = make_result()
    return result, make_run_folder(tmp_path / "out", result)


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


# ------------------------------------------------------------------------------ the page
def test_writes_index_and_pictures_without_a_store(run_dir: tuple[dict[str, Any], Path]) -> None:
    result, out = run_dir
    index = write_report(result, out)
    assert index == out / "report" / "index.html" and index.is_file()
    for name in ("nines.png", "families.png", "loss.png"):
        w, h = _png_size(out / "report" / name)
        assert 300 <= w <= 3000 and 200 <= h <= 2000, (name, w, h)
    assert not (out / "report" / "moment.png").exists()
    page = index.read_text()
    assert "Skipped: no clip store at" in page
    for name in ("nines.png", "families.png", "loss.png"):
        assert f'<img src="{name}"' in page  # relative: the folder can be moved or served as is


def test_accepts_a_string_out_and_the_saved_loop_json(run_dir: tuple[dict[str, Any], Path]) -> None:
    _, out = run_dir
    saved = json.loads((out / "loop.json").read_text())
    assert write_report(saved, str(out)) == out / "report" / "index.html"


def test_page_has_every_row_the_baselines_and_the_verdicts(
    run_dir: tuple[dict[str, Any], Path],
) -> None:
    result, out = run_dir
    page = write_report(result, out).read_text()
    assert page.count("<tr") == 1 + len(result["loops"])  # header + one row a turn
    assert "cut_in 2, normal 10" in page and "cut_in 2, normal 11" in page
    assert "0.0123" in page and "1.0123" in page
    assert "2.80 [2.40, 3.30]" in page  # a closed interval
    assert "&gt;=3.10 [2.70, inf]" in page  # an open one, as a >= bound
    assert "<td>-</td>" in page and "<td>0.50</td>" in page  # IoU absent, then present
    assert "<td>yes</td>" in page and "no: lower bound" in page
    assert "<b>naive</b>: 8 critical in 2,000 decisions, nines 2.40 [2.10, 2.80]" in page
    assert "<b>expert</b>: 0 critical in 2,000 decisions, nines &gt;=3.30 [3.30, inf]" in page
    assert "versus naive: significantly safer than naive (Fisher p = 0.01)" in page
    assert "versus expert: not significantly different from expert (Fisher p = 0.5)" in page
    assert "<h2>Config</h2>" in page and "&quot;loops&quot;: 2" in page


def test_every_inserted_string_is_escaped(run_dir: tuple[dict[str, Any], Path]) -> None:
    result, out = run_dir
    result["suite"] = HOSTILE
    result["stopped_early"] = HOSTILE
    page = write_report(result, out).read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") >= 4  # gate reason, config, suite, stopped early


def test_a_loop_less_result_still_gives_a_page(tmp_path: Path) -> None:
    result = make_result()
    result["loops"] = []
    page = write_report(result, tmp_path / "empty").read_text()
    assert "no loop completed" in page
    assert "No training metrics were found" in page
    assert (tmp_path / "empty" / "report" / "nines.png").is_file()  # the baselines alone
    assert (
        tmp_path / "empty" / "report" / "families.png"
    ).is_file() is False  # no eval JSONs, no rows


def test_a_failing_picture_is_reported_not_raised(
    run_dir: tuple[dict[str, Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    result, out = run_dir
    write_report(result, out)

    def broken(*args: Any) -> report.Picture:
        raise ValueError("bad <data>")

    monkeypatch.setattr(report, "plot_loss", broken)
    page = write_report(result, out).read_text()
    assert "Could not draw this picture: ValueError: bad &lt;data&gt;" in page
    assert not (
        out / "report" / "loss.png"
    ).exists()  # the earlier run's picture is not left behind
    assert (out / "report" / "nines.png").is_file()


# ---------------------------------------------------------------------------- helpers
def test_read_losses_skips_bad_lines_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"step": 1, "loss": 0.5}\nnot json\n{"step": 2}\n{"step": 3, "loss": 0.25}\n[1]\n'
    )
    steps, losses = read_losses(path)
    assert steps.tolist() == [1.0, 3.0] and losses.tolist() == [0.5, 0.25]
    steps, losses = read_losses(tmp_path / "absent.jsonl")
    assert steps.size == 0 and losses.size == 0


def test_running_mean_is_trailing() -> None:
    got = running_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2)
    assert got.tolist() == [1.0, 2.0, 4.0, 6.0]
    assert running_mean(np.array([2.0, 4.0]), 0).tolist() == [2.0, 4.0]
    assert running_mean(np.array([]), 3).size == 0


def test_format_helpers() -> None:
    assert (
        report_html.fmt_number(None) == "-"
        and report_html.fmt_number(math.inf) == "inf"
        and report_html.fmt_number(1.234, 1) == "1.2"
    )
    assert (
        report_html._interval(
            {"nines": 2, "nines_low": 1, "nines_high": None, "nines_is_bound": True}
        )
        == ">=2.00 [1.00, inf]"
    )


# ---------------------------------------------------------------------- the mined moment
def test_an_empty_store_skips_the_moment_with_a_reason(tmp_path: Path) -> None:
    from dojo.data.store import Store

    Store(tmp_path / "out" / "store", create=True)
    page = write_report(make_result(), tmp_path / "out").read_text()
    assert "Skipped: the clip store holds no takeover" in page
    assert not (tmp_path / "out" / "report" / "moment.png").exists()


@pytest.fixture(scope="module")
def fleet_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A loop folder whose store holds one real autonomous drive (the naive car needs the safety driver)."""
    from dojo.data.ingest import ingest
    from dojo.fleet.config import DriveConfig
    from dojo.fleet.drive import drive

    out = tmp_path_factory.mktemp("loop")
    drive(
        DriveConfig(
            out=str(out / "drives"),
            cars=2,
            minutes=0.3,
            mode="autonomous",
            policy="naive",
            families=("stalled", "cut_in"),
            drive_s=18.0,
        )
    )
    ingest([out / "drives"], out / "store", workers=1)
    return out


def test_a_critical_takeover_is_drawn_from_the_store(fleet_out: Path) -> None:
    from dojo.data.catalog import connect

    con = connect(fleet_out / "store")
    critical = con.sql(
        "SELECT drive_id, t_s FROM events WHERE kind = 'intervention_start' AND critical "
        "ORDER BY drive_id, t_s"
    ).fetchall()
    assert critical, "the naive car in stalled traffic should need the safety driver"
    moment = report.find_takeover(con)
    assert moment is not None and moment.critical and (moment.drive_id, moment.t_s) == critical[0]

    page = write_report(make_result(), fleet_out).read_text()
    w, h = _png_size(fleet_out / "report" / "moment.png")
    assert w >= 400 and h >= 400
    assert '<img src="moment.png"' in page and "critical takeover at t = " in page


def test_a_noncritical_takeover_is_the_fallback(tmp_path: Path) -> None:
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(
        "CREATE TABLE events (drive_id VARCHAR, t_s DOUBLE, kind VARCHAR, critical BOOLEAN, reason VARCHAR)"
    )
    con.execute(
        "CREATE TABLE clips (clip_id VARCHAR, drive_id VARCHAR, t0_s DOUBLE, t1_s DOUBLE, family VARCHAR)"
    )
    con.execute(
        "INSERT INTO clips VALUES ('c0', 'd', 0, 9.9, 'merge'), ('c1', 'd', 10, 19.9, 'merge')"
    )
    con.execute(
        "INSERT INTO events VALUES ('d', 3, 'near_miss', true, 'ttc'), ('d', 12, 'intervention_start', false, 'x')"
    )
    m = report.find_takeover(con)
    assert (
        m is not None and not m.critical and (m.clip_id, m.t_s, m.family) == ("c1", 12.0, "merge")
    )
    con.execute("INSERT INTO events VALUES ('d', 15, 'intervention_start', true, 'ttc')")
    m = report.find_takeover(con)
    assert m is not None and m.critical and m.t_s == 15.0


def test_the_fleet_moments_a_turn_fixed_and_broke_are_listed(
    run_dir: tuple[dict[str, Any], Path],
) -> None:
    result, out = run_dir
    moment = {"drive": "ab12", "t_s": 12.3, "source": HOSTILE, "trigger": "collision"}
    result["loops"][1]["suite_moments"] = {
        "paired": 3, "fixed": 0, "broken": 2, "verdict": "refused", "rule": "net",
        "candidate_passed": 1, "deployed_passed": 3,
        "fixed_moments": [], "broken_moments": [moment],
    }  # fmt: skip
    page = write_report(result, out).read_text()
    assert "loop 1: refused (rule net); passed: candidate 1, deployed 3 of 3" in page
    assert "broken 2: &lt;script&gt;" in page and "at 12.3 s (collision), and 1 more" in page
    assert "<script" not in page.lower()
