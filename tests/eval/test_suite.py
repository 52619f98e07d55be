"""Regression suites of fleet moments: `dojo suite from-store`, `dojo eval --suite`, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dojo.cli import main
from dojo.data.catalog import connect
from dojo.data.ingest import ingest
from dojo.errors import ConfigError
from dojo.eval.suite import evaluate_suite, load_suite, suite_from_store, write_suite
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import drive

FIXTURE = Path(__file__).parents[1] / "fixtures" / "drivelog" / "v-2026-12.mcap"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An autonomous naive fleet's takeovers and collisions, ingested."""
    root = tmp_path_factory.mktemp("suite")
    config = DriveConfig(
        cars=4,
        minutes=0.75,
        mode="autonomous",
        policy="naive",
        families=("stalled", "cut_in", "lane_drop"),
        drive_s=45.0,
        logging="triggers",
        out=str(root / "logs"),
    )
    summary = drive(config)
    ingest(summary.files, root / "store", workers=1)
    return root / "store"


@pytest.fixture(scope="module")
def suite_file(store: Path) -> Path:
    return write_suite(suite_from_store(store), store.parent / "suite.toml")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_from_store_takes_every_marked_moment_once(
    store: Path, suite_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = load_suite(suite_file)
    con = connect(store)
    events = {
        (d, round(t, 6)): (k, c)
        for d, t, k, c in con.execute("SELECT drive_id, t_s, kind, critical FROM events").fetchall()
    }
    assert len(suite.moments) >= 4 and suite.skipped == ()
    for m in suite.moments:
        kind, critical = events[(m.drive, round(m.t_s, 6))]
        want = ("intervention_start", True) if m.trigger == "critical_intervention" else None
        assert (kind, critical) == want or (m.trigger == "collision" and kind == "collision")
    for a, b in zip(suite.moments, suite.moments[1:], strict=False):  # one moment an incident
        assert a.drive != b.drive or b.t_s - a.t_s >= suite.before_s
    code, out, _ = _run(capsys, "suite", "from-store", str(store), "--out",
                        str(store.parent / "again.toml"), "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["moments"] == len(suite.moments)
    assert (store.parent / "again.toml").read_text() == suite_file.read_text()


@pytest.fixture(scope="module")
def results(suite_file: Path) -> dict[str, dict[str, Any]]:
    suite = load_suite(suite_file)
    return {p: evaluate_suite(p, suite) for p in ("naive", "expert")}


def test_the_network_that_met_the_moments_fails_them_again_and_the_expert_passes(
    results: dict[str, dict[str, Any]],
) -> None:
    naive, expert = results["naive"], results["expert"]
    for r in (naive, expert):
        assert r["moments_run"] == len(r["moments"]) and r["skipped"] == []
        assert r["max_deviation_m"] == 0.0  # each replay starts from the logged state exactly
        for m in r["moments"]:
            assert {"drive", "t_s", "trigger", "passed"} <= set(m)
            assert m["passed"] == (m["critical_interventions"] == 0 and m["collisions"] == 0)
        assert r["decisions"] == sum(m["decisions"] for m in r["moments"])
        assert {"nines", "nines_low", "nines_high", "interval_method"} <= set(r)
    # naive is deterministic: from 5 s ahead it drives into the same takeover
    assert naive["moments_failed"] >= 0.8 * naive["moments_run"]
    assert expert["moments_passed"] > naive["moments_passed"]
    assert expert["nines_low"] > naive["nines"]


def test_moments_driven_in_one_batch_or_one_by_one_are_the_same(
    suite_file: Path, results: dict[str, dict[str, Any]]
) -> None:
    alone = evaluate_suite("naive", load_suite(suite_file), batch=1)
    assert alone["moments"] == results["naive"]["moments"]


def test_eval_suite_cli_prints_moments_and_json(
    suite_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "eval", "--policy", "expert", "--suite", str(suite_file), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["suite"] == "moments" and result["moments"]
    code, out, _ = _run(capsys, "eval", "--policy", "naive", "--suite", str(suite_file))
    assert code == 0 and "failed:" in out and "moments" in out


def test_a_gone_drive_and_unreadable_entries_are_skipped_and_the_rest_runs(
    store: Path, suite_file: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    suite = load_suite(suite_file)
    gone = suite.moments[0].drive
    shutil.rmtree(copy / "drives" / gone)
    text = suite_file.read_text().replace(f'store = "{store}"', f'store = "{copy}"')
    text += '\n[[moments]]\ndrive = "abc"\ntrigger = "collision"\n'  # no t_s
    text += '\n[[moments]]\ndrive = "../../etc"\nt_s = 1.0\ntrigger = "collision"\n'
    text += f'\n[[moments]]\ndrive = "{suite.moments[-1].drive}"\nt_s = 9999.0\ntrigger = "x"\n'
    bad = tmp_path / "partly.toml"
    bad.write_text(text)
    r = evaluate_suite("expert", load_suite(bad))
    lost = sum(m.drive == gone for m in suite.moments)
    assert r["moments_run"] == len(suite.moments) - lost
    reasons = "\n".join(r["skipped"])
    assert f"moment {gone}" in reasons and f"holds no drive {gone!r}" in reasons
    assert "unreadable" in reasons and "'../../etc' is not a drive id" in reasons
    assert "at t=9999 s" in reasons and "outside the drive" in reasons
    assert len(r["skipped"]) == lost + 3


def test_a_drive_from_before_replay_existed_is_skipped_saying_why(tmp_path: Path) -> None:
    ingest([FIXTURE], tmp_path / "old", workers=1)
    suite = suite_from_store(tmp_path / "old", ["shadow_disagreement"])
    assert suite.moments  # the fixture's one event
    r = evaluate_suite("naive", suite)
    assert r["moments_run"] == 0 and r["decisions"] == 0
    assert "cannot be re-simulated" in r["skipped"][0] and "recorded no version" in r["skipped"][0]


@pytest.mark.parametrize(
    ("setup", "argv", "message"),
    [
        (None, ["eval", "--policy", "naive", "--suite", "missing.toml"], "does not exist"),
        ("version = 7\n", ["eval", "--policy", "naive", "--suite", "{f}"], "has version 7"),
        ("version = [\n", ["eval", "--policy", "naive", "--suite", "{f}"], "not a readable TOML"),
        ("version = 1\n", ["eval", "--policy", "naive", "--suite", "{f}"], "names no store"),
        (None, ["suite", "from-store", "{store}", "--trigger", "boom", "--out", "{f}"],
         "trigger='boom' must be one of"),
        (None, ["suite", "from-store", "{store}", "--seconds", "0", "--out", "{f}"],
         "seconds=0.0 must be > 0"),
    ],
)  # fmt: skip
def test_bad_suites_and_flags_get_one_clear_error(
    store: Path,
    tmp_path: Path,
    setup: str | None,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    f = tmp_path / "s.toml"
    if setup is not None:
        f.write_text(setup)
    args = [a.format(f=f, store=store) for a in argv]
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == "" and message in err and err.count("dojo: error:") == 1


def test_logged_is_not_a_suite_policy(suite_file: Path) -> None:
    with pytest.raises(ConfigError, match="'logged' only replays one log"):
        evaluate_suite("logged", load_suite(suite_file))


def test_the_report_shows_a_broken_moment_logged_deployed_and_candidate(
    store: Path, suite_file: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from dojo.loop.report import plot_fleet_moment

    m = load_suite(suite_file).moments[0]
    moment = {"drive": m.drive, "t_s": m.t_s, "source": m.source, "trigger": m.trigger}
    row = {"loop": 1, "against": "expert", "candidate": "naive",
           "suite_moments": {"broken_moments": [moment], "fixed_moments": []}}  # fmt: skip
    picture = plot_fleet_moment({"loops": [row]}, store.parent, tmp_path / "m.png")
    assert picture.file == "m.png" and "loop 1 broken this moment" in picture.note
    image = np.asarray(Image.open(tmp_path / "m.png").convert("L"), dtype=np.int16)
    thirds = np.array_split(image, 3, axis=0)  # logged, deployed, candidate, one above the other
    assert image.shape[0] > 2 * image.shape[1] / 3
    assert np.abs(thirds[1] - thirds[2]).mean() > 0  # expert and naive left different scenes
    skipped = plot_fleet_moment({"loops": [{"loop": 0}]}, store.parent, tmp_path / "n.png")
    assert skipped.file is None and "Skipped" in skipped.note
