"""dojo loop end to end, at toy scale: two turns through every real part (world, fleet, MCAP,
ingest, DuckDB mining, torch training, closed-loop evaluation, the gate and the report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dojo.cli import main
from dojo.data.datasets import list_datasets, load_dataset
from dojo.loop.config import LABEL_SOURCES


def _toy_loop_argv(out: Path, suites: Path) -> list[str]:
    """``dojo loop`` at toy size on the one-family suite in ``suites``: the runs these tests share."""
    return [
        "loop",
        "--out",
        str(out),
        "--loops",
        "2",
        "--cars",
        "4",
        "--drive-minutes",
        "0.5",
        "--train-steps",
        "4",
        "--batch-size",
        "8",
        "--eval-decisions",
        "50",
        "--eval-cars",
        "2",
        "--suite",
        "stalled_only",
        "--suites-file",
        str(suites),
        "--sample-normal",
        "0.5",
        "--json",
    ]


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("loop")
    suites = root / "suites.toml"
    suites.write_text('[suites.stalled_only]\nfamilies = ["stalled"]\nseeds = [1000000, 1000100]\n')
    out = root / "run"
    argv = _toy_loop_argv(out, suites)
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return out, json.loads(buf.getvalue())


def test_json_has_a_row_per_turn_with_the_issue_keys_and_both_baselines(
    loop_run: tuple[Path, dict],
) -> None:
    out, result = loop_run
    assert [r["loop"] for r in result["loops"]] == [0, 1]
    for row in result["loops"]:
        for key in (
            "loop",
            "nines",
            "nines_low",
            "nines_high",
            "critical_interventions",
            "decisions",
            "promoted",
        ):
            assert key in row, key
        assert isinstance(row["promoted"], bool)
        assert row["promoted"] or row["gate"] != "passed"
        assert row["nines_low"] <= row["nines"]
        assert row["decisions"] >= 50 and row["windows"] > 0
        # the deployed model was evaluated beside the candidate on the same fresh seeds
        assert row["against_eval"]["decisions"] == row["decisions"]
        assert row["moments"]["paired"] > 0
        assert row["moments"]["fixed"] + row["moments"]["broken"] <= row["moments"]["paired"]
    # the fleet's critical moments so far, driven by the candidate and the deployed model
    from dojo.eval.suite import load_suite

    suite = load_suite(out / "moments.toml")
    last = result["loops"][-1]["suite_moments"]
    assert last["paired"] == len(suite.moments) > 0  # turn 1's autonomous cars met some
    for row in result["loops"]:
        sm = row["suite_moments"]
        assert sm["verdict"] in ("passed", "warned", "refused") and sm["rule"] == "net"
        assert sm["fixed"] + sm["broken"] <= sm["paired"]
        assert (sm["verdict"] == "refused") == (sm["broken"] > sm["fixed"])
        assert not (sm["verdict"] == "refused" and row["promoted"])
        cand = json.loads((out / "eval" / f"loop{row['loop']}-moments.json").read_text())
        assert cand["moments_passed"] == sm["candidate_passed"]
    seeds = [r["eval_seed"] for r in result["loops"]]
    assert len(set(seeds)) == len(seeds)  # fresh seeds every turn
    # the deployed row is a fresh evaluation on the baselines' seeds
    assert result["deployed"]["decisions"] == result["naive"]["decisions"]
    for key in ("expert_nines", "naive_nines"):
        assert isinstance(result[key], float)
    # the expert (perfect perception) is at least as safe as naive on the same seeds
    assert result["expert"]["critical_interventions"] <= result["naive"]["critical_interventions"]
    assert json.loads((out / "loop.json").read_text())["loops"] == result["loops"]


def test_turn_zero_learns_from_humans_and_turn_one_deploys_the_model_it_was_gated_against(
    loop_run: tuple[Path, dict],
) -> None:
    _, result = loop_run
    first, second = result["loops"]
    assert first["drive"]["mode"] == "manual" and first["against"] == "naive"
    assert second["drive"]["mode"] == "mixed"
    # turn 1 drove what was deployed after turn 0 and was judged against it
    assert second["drive"]["policy"] == first["deployed"] == second["against"]
    assert result["deployed"]["model"] == second["deployed"]
    # candidates start from the deployed network (warm start), from scratch while naive is deployed
    assert first["started_from"] == "scratch"
    assert second["started_from"] == (
        "scratch" if first["deployed"] == "naive" else first["deployed"]
    )


def test_every_dataset_window_was_driven_by_a_person_and_turns_aggregate(
    loop_run: tuple[Path, dict],
) -> None:
    out, result = loop_run
    store = out / "store"
    versions = {v.version for v in list_datasets(store) if v.name == "loop"}
    assert versions == {1, 2} or versions == {1}  # a turn that mined nothing new keeps the version
    refs = [r["dataset"] for r in result["loops"]]
    old, new = (load_dataset(store, ref) for ref in refs)
    assert all(e["label_source"] in LABEL_SOURCES for e in new.entries)
    key = lambda e: (e["clip_id"], e["t0_s"], e["t1_s"])  # noqa: E731
    assert {key(e) for e in old.entries} <= {
        key(e) for e in new.entries
    }  # DAgger: nothing forgotten
    assert len(new.entries) == result["loops"][1]["windows"]


def test_the_report_is_written_beside_the_run(loop_run: tuple[Path, dict]) -> None:
    out, result = loop_run
    index = out / "report" / "index.html"
    assert Path(result["report"]) == index
    page = index.read_text()
    assert "nines.png" in page and (out / "report" / "nines.png").stat().st_size > 1000


def _stages_done(out: Path) -> dict[str, list[str]]:
    try:
        journal = json.loads((out / "progress.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {k: sorted(v) for k, v in journal["turns"].items()}


def test_a_loop_killed_mid_turn_resumes_from_its_last_stage_and_ends_as_an_uninterrupted_one(
    loop_run: tuple[Path, dict], tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    first, whole = loop_run
    saved = json.loads((first / "config.json").read_text())
    out = tmp_path / "run"
    suites = tmp_path / "suites.toml"
    suites.write_text(Path(saved["eval"]["suites_file"]).read_text())
    argv = _toy_loop_argv(out, suites)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dojo.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while "mine" not in _stages_done(out).get(
            "1", []
        ):  # turn 1 is past its mining: kill it there
            assert proc.poll() is None, "the loop ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = _stages_done(out)
    assert "row" in before["0"] and "row" not in before["1"]
    journal = json.loads((out / "progress.json").read_text())
    logs = {
        p: p.stat().st_mtime_ns for p in (out / "drives").rglob("*.mcap")
    }  # both turns drove already
    naive_eval = (out / "eval" / "naive.json").stat().st_mtime_ns
    assert not (out / "loop.json").exists()

    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["loop", "--resume", str(out), "--json"]) == 0
    resumed = json.loads(buf.getvalue())
    # what was done is not done again: no drive, no baseline, no turn-0 row, no dataset version
    assert {p: p.stat().st_mtime_ns for p in (out / "drives").rglob("*.mcap")} == logs
    assert (out / "eval" / "naive.json").stat().st_mtime_ns == naive_eval
    assert resumed["loops"][0] == journal["turns"]["0"]["row"]
    assert resumed["loops"][1]["dataset"] == journal["turns"]["1"]["mine"]["dataset"]
    assert [v.version for v in list_datasets(out / "store") if v.name == "loop"] == [1, 2]
    # and the rest ran: the turn that was cut short, then the result and the report
    assert [r["loop"] for r in resumed["loops"]] == [0, 1]
    # and it ends where the uninterrupted loop with the same settings did (drives, data and
    # training are reproducible; a training run goes on from its checkpoint exactly)
    keys = (
        "loop",
        "windows",
        "windows_by_trigger",
        "decisions",
        "critical_interventions",
        "nines",
        "promoted",
    )
    assert [{k: r[k] for k in keys} for r in resumed["loops"]] == [
        {k: r[k] for k in keys} for r in whole["loops"]
    ]
    assert resumed["loops"][1]["deployed"] == (
        resumed["loops"][1]["candidate"]
        if resumed["loops"][1]["promoted"]
        else resumed["loops"][0]["deployed"]
    )
    assert json.loads((out / "loop.json").read_text())["loops"] == resumed["loops"]
    assert (out / "report" / "index.html").exists()


def test_resume_of_a_folder_that_holds_no_loop_is_one_clear_error(tmp_path: Path) -> None:
    from dojo.errors import DojoConfigError
    from dojo.loop.flywheel import resume_loop

    with pytest.raises(DojoConfigError, match="no such folder"):
        resume_loop(tmp_path / "nowhere")
    with pytest.raises(DojoConfigError, match="config.json is missing"):
        resume_loop(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DojoConfigError, match="cannot be read as a loop's config"):
        resume_loop(tmp_path)


def test_a_loop_can_start_from_a_team_policy_which_gates_and_warm_starts_the_first_candidate(
    loop_run: tuple[Path, dict], tmp_path: Path
) -> None:
    first, _ = loop_run
    policy = (
        first / "runs" / "loop0" / "policy.pt"
    )  # the toy loop's first candidate, as a stored model
    saved = json.loads((first / "config.json").read_text())
    out = tmp_path / "run"
    argv = [
        "loop",
        "--out",
        str(out),
        "--loops",
        "1",
        "--cars",
        "4",
        "--drive-minutes",
        "0.5",
        "--train-steps",
        "4",
        "--batch-size",
        "8",
        "--eval-decisions",
        "50",
        "--eval-cars",
        "2",
        "--suite",
        "stalled_only",
        "--suites-file",
        saved["eval"]["suites_file"],
        "--sample-normal",
        "0.5",
        "--start-policy",
        str(policy),
        "--json",
    ]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    result = json.loads(buf.getvalue())
    start = json.loads((out / "eval" / "start.json").read_text())
    assert result["start"]["model"] == str(policy) and result["start"]["nines"] == start["nines"]
    assert start["policy"] != "naive"  # the team's network was evaluated, on the same suite
    row = result["loops"][0]
    assert row["deployed"] == (
        row["candidate"] if row["promoted"] else str(policy)
    )  # it gated turn 0
    trained = json.loads((out / "runs" / "loop0" / "summary.json").read_text())
    assert trained["init_from"] == str(policy)  # and warm-started the candidate
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        assert (
            main(
                [
                    "loop",
                    "--out",
                    str(tmp_path / "bad"),
                    "--start-policy",
                    str(tmp_path / "none.pt"),
                ]
            )
            == 2
        )
    assert "start_policy=" in buf.getvalue()


def test_a_perception_loop_trains_the_heads_on_auto_labels_and_drives_the_planner_with_them(
    loop_run: tuple[Path, dict], tmp_path: Path
) -> None:
    first, _ = loop_run
    saved = json.loads((first / "config.json").read_text())
    out = tmp_path / "run"
    argv = _toy_loop_argv(out, Path(saved["eval"]["suites_file"]))
    argv += ["--net", "perception", "--labels", "autolabel"]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    result = json.loads(buf.getvalue())
    first_row, second_row = result["loops"]
    for row in result["loops"]:
        run = out / "runs" / f"loop{row['loop']}"
        assert row["candidate"] == f"planner:{run / 'checkpoint.pt'}"
        cand = json.loads((out / "eval" / f"loop{row['loop']}.json").read_text())
        assert cand["policy"] == row["candidate"] and cand["decisions"] >= 50
    # what turn 0 deployed (the planner on its heads, or naive) is what turn 1's fleet drove
    assert second_row["drive"]["policy"] == first_row["deployed"]
    # and turn 1's heads start from the deployed heads' weights (from scratch after naive)
    trained = json.loads((out / "runs" / "loop1" / "summary.json").read_text())
    first_ckpt = str(out / "runs" / "loop0" / "checkpoint.pt")
    assert trained["init_from"] == (first_ckpt if first_row["promoted"] else None)


def test_a_perception_loop_without_auto_labels_is_refused_before_any_work(tmp_path: Path) -> None:
    from dojo.errors import DojoConfigError
    from dojo.loop.config import LoopConfig

    with pytest.raises(
        DojoConfigError, match="net='perception' learns the planner targets of the auto-labels"
    ):
        LoopConfig.from_dict({"out": str(tmp_path / "x"), "net": "perception"})
    assert not (tmp_path / "x").exists()
