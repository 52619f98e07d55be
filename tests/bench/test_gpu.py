"""`dojo bench gpu`: the CPU dry run writes every key, bad input is one clear error, and the
pieces (peaks, figures, budget, verdict) compute what they say."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from dojo.bench.gpu import (
    MAX_BUDGET_S,
    TARGET_MFU,
    Check,
    GpuCheckConfig,
    make_plan,
    size_order,
    verdict,
)
from dojo.bench.gpu_parts import step_figures
from dojo.bench.machine import gpu_bf16_peak
from dojo.cli import main
from dojo.nets.options import GPU_IMAGE_PX, GPU_SIZE, NET_SIZES


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    """One dry run for the module: compile and torchrun left out (~45 s and ~30 s here)."""
    out = tmp_path_factory.mktemp("gpu") / "sub" / "check.json"  # its folder is made too
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(
            [
                "bench", "gpu", "--device", "cpu", "--tiny", "--skip", "compiled,ddp",
                "--out", str(out),
            ]
        )  # fmt: skip
    assert rc == 0
    return json.loads(out.read_text()), stdout.getvalue(), out


def test_the_dry_run_records_every_part_with_sane_figures(
    dry_run: tuple[dict[str, Any], str, Path],
) -> None:
    result, stdout, out = dry_run
    assert stdout.strip() == str(out.resolve())  # the result on stdout is the file's path
    assert result["status"] == "complete" and result["schema"] == "dojo.bench.gpu/1"
    env = result["environment"]
    for key in ("device_name", "driver", "torch", "cuda", "device_count", "peak_flops"):
        assert key in env
    assert env["device"] == "cpu" and env["torch"] and env["peak_flops"] is None
    assert env["driver"] is None and env["driver_reason"] and env["mfu_reason"]
    assert result["dataset"]["status"] == "ok"
    assert result["dataset"]["rig"]["height"] == 48  # --tiny: the default rig, not GPU_IMAGE_PX
    assert list(result["sizes"]) == list(size_order()) and set(size_order()) == set(NET_SIZES)
    params = [result["sizes"][s]["parameters"] for s in NET_SIZES]
    assert params == sorted(params) and len(set(params)) == len(params)  # grow with the size
    batch = result["plan"]["batch_size"]
    for size, row in result["sizes"].items():
        flops = row["train_flops_per_sample"]
        assert 2.5 * row["forward_flops_per_sample"] < flops < 3.2 * row["forward_flops_per_sample"]
        eager = row["eager"]
        assert eager["status"] == "ok", (size, eager)
        assert eager["samples_per_s"] > 0 and eager["compute_samples_per_s"] > 0
        assert eager["steps_timed"] >= 2 and eager["precision"] == "fp32"
        assert eager["tflops"] == pytest.approx(flops * eager["samples_per_s"] / 1e12)
        assert 0.0 <= eager["data_wait_share"] < 1.0
        assert 0.0 <= eager["data_wait_share_mean"] < 1.0
        # without the data wait a step can only be as fast or faster
        assert eager["compute_samples_per_s"] >= eager["samples_per_s"]
        assert eager["samples_per_s"] == pytest.approx(batch / eager["step_s_median"])
        assert eager["mfu"] is None and eager["compute_mfu"] is None
        assert "CPU" in eager["mfu_reason"]
        compiled = row["compiled"]
        assert compiled["status"] in ("ok", "failed", "skipped")
        assert compiled.get("error") or compiled.get("reason") or compiled["samples_per_s"] > 0
    assert result["sizes"]["tiny"]["compiled"] == {
        "status": "skipped",
        "reason": "left out by --skip",
    }
    ev = result["eval"]
    assert ev["status"] == "ok" and ev["decisions_per_s"] == ev["cpu"]["decisions_per_s"] > 0
    assert ev["cpu"]["decisions"] >= 1000
    assert result["ddp"]["status"] == "skipped" and result["ddp"]["reason"]
    assert result["verdict"]["mode"] == "eager" and result["verdict"]["mfu_met"] is None
    done = {p["name"]: p["status"] for p in result["parts"]}
    assert done["dataset"] == done[f"{GPU_SIZE} eager"] == done["eval"] == "ok"
    assert result["wall_s"] < result["config"]["budget_s"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "nonsense"], "device='nonsense' is not known; choose one of: cuda, cpu."),
        (["--device", "cpu", "--tiny", "--budget", "-5"], "budget_s=-5.0 must be > 0 and <= 480."),
        (["--device", "cpu", "--tiny", "--budget", "1e9"], "must be > 0 and <= 480."),
        (["--device", "cpu"], "needs tiny=True (--tiny)"),
        (["--device", "cpu", "--tiny", "--skip", "eager"], "skip='eager' is not known"),
    ],
)
def test_bad_arguments_are_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    out = tmp_path / "x.json"
    assert main(["bench", "gpu", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dojo: error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_cuda_without_a_gpu_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "x.json"
    assert main(["bench", "gpu", "--out", str(out)]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert not out.exists()


def test_gpu_peaks_match_the_device_names_torch_reports() -> None:
    assert gpu_bf16_peak("NVIDIA H100 80GB HBM3")[0] == 989e12  # the SXM part
    assert gpu_bf16_peak("NVIDIA H100 PCIe")[0] == 756.5e12  # not the SXM figure
    assert gpu_bf16_peak("NVIDIA H200")[0] == 989e12
    assert gpu_bf16_peak("NVIDIA A100-SXM4-80GB")[0] == 312e12
    assert gpu_bf16_peak("NVIDIA L40S")[0] == 362e12
    peak, how = gpu_bf16_peak("NVIDIA GeForce RTX 4090")
    assert peak is None and "no datasheet peak" in how
    assert "datasheet" in gpu_bf16_peak("NVIDIA H200")[1]


def test_step_figures_leave_the_first_step_and_the_wait_out() -> None:
    steps = [
        {"step_s": 30.0, "data_wait_share": 0.0},  # the compile: not timed
        {"step_s": 1.0, "data_wait_share": 0.5},
        {"step_s": 1.0, "data_wait_share": 0.5},
        {"step_s": 2.0, "data_wait_share": 0.0},
    ]
    got = step_figures(steps, batch=8, flops=1e9, peak=1e11)
    assert got["steps_timed"] == 3 and got["first_step_s"] == 30.0
    assert got["samples_per_s"] == pytest.approx(8.0)  # the median step: 1 s
    assert got["data_wait_share"] == pytest.approx(0.5)
    assert got["samples_per_s_mean"] == pytest.approx(24 / 4.0)
    assert got["data_wait_share_mean"] == pytest.approx(1.0 / 4.0)
    assert got["compute_samples_per_s"] == pytest.approx(8 / 0.5)  # median compute 0.5 s
    assert got["tflops"] == pytest.approx(8e9 / 1e12)
    assert got["mfu"] == pytest.approx(8e9 / 1e11)
    assert step_figures(steps, 8, None, None)["mfu"] is None
    with pytest.raises(RuntimeError, match="no step"):
        step_figures([], 8, 1e9, 1e11)


def test_a_failing_part_is_recorded_and_a_late_one_skipped(tmp_path: Path) -> None:
    check = Check(GpuCheckConfig(out=str(tmp_path / "x.json"), budget_s=10.0), lambda _: None)

    def broken() -> dict[str, Any]:
        raise MemoryError("CUDA out of memory")

    failed = check.part("broken", 0.0, broken)
    assert failed["status"] == "failed" and "MemoryError: CUDA out of memory" in failed["error"]
    late = check.part("late", 11.0, lambda: {"x": 1})
    assert late["status"] == "skipped" and "budget" in late["reason"]
    assert check.part("fine", 1.0, lambda: {"x": 1}) == {
        "status": "ok",
        "x": 1,
        "seconds": pytest.approx(0.0, abs=1.0),
    }
    assert [p["status"] for p in check.result["parts"]] == ["failed", "skipped", "ok"]


def test_verdict_judges_the_best_xl_run_against_the_targets() -> None:
    def run(rate: float, mfu: float | None, wait: float) -> dict[str, Any]:
        return {"status": "ok", "samples_per_s": rate, "mfu": mfu, "data_wait_share": wait,
                "mfu_reason": None if mfu is not None else "no peak"}  # fmt: skip

    good = verdict(
        {"sizes": {GPU_SIZE: {"eager": run(1.0, 0.1, 0.2), "compiled": run(4.0, 0.45, 0.01)}}}
    )
    assert good["mode"] == "compiled" and good["mfu_met"] and good["data_wait_met"]
    low = verdict({"sizes": {GPU_SIZE: {"eager": run(2.0, TARGET_MFU - 0.01, 0.06)}}})
    assert low["mfu_met"] is False and low["data_wait_met"] is False and "NOT met" in low["summary"]
    none = verdict({"sizes": {GPU_SIZE: {"eager": {"status": "failed", "error": "x"}}}})
    assert none["mode"] is None and "not measured" in none["summary"]


def test_the_gpu_plan_uses_the_gpu_rig_and_fits_the_budget() -> None:
    plan = make_plan(GpuCheckConfig(out="x.json"), cores=16)
    assert plan.image_px == GPU_IMAGE_PX and plan.compiled_sizes == NET_SIZES
    assert 1 <= plan.num_workers <= 14
    assert plan.cap_eager_s < plan.cap_compiled_s < MAX_BUDGET_S / 2
    assert plan.eval_min_s + plan.ddp_cap_s < MAX_BUDGET_S / 2
    tiny = make_plan(GpuCheckConfig(out="x.json", device="cpu", tiny=True), cores=2)
    assert tiny.image_px is None and tiny.batch_size < plan.batch_size


def test_xl_trains_on_the_gpu_rig_through_dojo_train(tmp_path: Path) -> None:
    """The GPU-sized net on the GPU rig's pictures, with the real loader: one step on a CPU."""
    from dojo.bench.train import make_dataset
    from dojo.nets.flops import flops_per_sample
    from dojo.nets.policy import DrivingPolicy, PolicyConfig
    from dojo.train.config import TrainConfig
    from dojo.train.trainer import train

    store, name = make_dataset(tmp_path, lambda _: None, cars=2, seconds=3.0, image_px=GPU_IMAGE_PX)
    summary = train(
        TrainConfig(
            dataset=name, store=store, out=str(tmp_path / "run"), size=GPU_SIZE, steps=1,
            batch_size=2, progress=False, val_batches=1,
        )
    )  # fmt: skip
    assert summary["finished"] and summary["size"] == GPU_SIZE
    assert summary["parameters"] > 40_000_000
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (run["net_config"]["height"], run["net_config"]["width"]) == GPU_IMAGE_PX
    config = PolicyConfig.from_dict(run["net_config"])
    forward = flops_per_sample(DrivingPolicy(config), config)
    assert 20e9 < forward < 40e9  # docs/gpu.md: 27.8 GFLOP forward, 83 a training sample
