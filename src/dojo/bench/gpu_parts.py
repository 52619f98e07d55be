"""The measured parts of `dojo bench gpu` (:mod:`dojo.bench.gpu` runs them, times and records them).

Each part returns a JSON-able dict and raises on failure; the runner records the failure. The
training part drives :class:`dojo.train.trainer.Trainer` itself (not :func:`dojo.train.train`)
for one reason: to stop it by time. A watcher thread sets the trainer's ``term_requested``, the
flag a SIGTERM sets, once enough steps after the first (which compiles and warms up) have been
timed, so every run ends after a known number of seconds, checkpointed like a preempted run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dojo.bench.gpu import Plan
from dojo.errors import ConfigError

RUN_STEPS = 1_000_000  # a run's nominal length: the watcher stops it long before
NO_CPU_PEAK = (
    "MFU is against a GPU's dense BF16 datasheet peak; a CPU has none "
    "(dojo bench train states an FP32 estimate for one)"
)


def environment(device: str) -> dict[str, Any]:
    """The machine, the software and the peak FLOP/s the MFU figures divide by.

    Raises :class:`ConfigError` when ``device`` is ``cuda`` and torch sees no CUDA device: the
    one bad input found before any work.
    """
    import torch

    from dojo.bench.machine import cpu_model, gpu_bf16_peak

    cuda = torch.cuda.is_available()
    env: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "device_count": torch.cuda.device_count() if cuda else 0,
    }
    if device == "cpu":
        return {
            **env,
            "device_name": cpu_model(),
            "driver": None,
            "driver_reason": "the CPU dry run: no CUDA driver is used",
            "peak_flops": None,
            "peak_source": None,
            "mfu_reason": NO_CPU_PEAK,
        }
    if not cuda:
        raise ConfigError(
            "device='cuda' was asked for but torch sees no CUDA device here; "
            "use --device cpu --tiny for the dry run."
        )
    props = torch.cuda.get_device_properties(0)
    peak, how = gpu_bf16_peak(props.name)
    driver, driver_reason = driver_version()
    return {
        **env,
        "device_name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "memory_gb": props.total_memory / 1e9,
        "driver": driver,
        "driver_reason": driver_reason,
        "peak_flops": peak,
        "peak_source": how if peak else None,
        "mfu_reason": None if peak else how,
    }


def driver_version() -> tuple[str | None, str | None]:
    """(the NVIDIA driver's version, None) or (None, why it could not be read)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.split()
        if out:
            return out[0], None
    except (OSError, subprocess.SubprocessError) as e:
        first = f"nvidia-smi: {type(e).__name__}"
    else:
        first = "nvidia-smi printed nothing"
    try:  # the kernel module's own line, where nvidia-smi is not installed
        text = Path("/proc/driver/nvidia/version").read_text()
        return text.split("Kernel Module", 1)[1].split()[0], None
    except (OSError, IndexError):
        return None, f"{first}; /proc/driver/nvidia/version unreadable"


def dataset(root: Path, plan: Plan, log: Any) -> dict[str, Any]:
    """A fleet drive at the plan's rig, ingested and mined; checked as a training run would be."""
    from dojo.bench.train import make_dataset
    from dojo.train.config import TrainConfig, prepare

    store, name = make_dataset(
        root / "data",
        log,
        cars=plan.cars,
        seconds=plan.seconds_per_car,
        image_px=plan.image_px,
        processes=plan.drive_processes,
    )
    # the check `dojo train` makes (enough windows for a step with these workers, the rig's
    # shape) before any part spends its budget on it
    prepared = prepare(
        TrainConfig(
            dataset=name,
            store=store,
            out=str(root / "prepare"),
            batch_size=plan.batch_size,
            num_workers=plan.num_workers,
            progress=False,
        )
    )
    net = prepared.net_config
    return {
        "store": store,
        "dataset": prepared.dataset_ref,
        "cars": plan.cars,
        "seconds_per_car": plan.seconds_per_car,
        "train_windows": prepared.train_windows,
        "rig": {k: net[k] for k in ("cameras", "frames", "height", "width", "rgb")},
    }


def size_header(size: str, data: dict[str, Any], device: str) -> dict[str, Any]:
    """Parameters and FLOPs a sample of the policy net at ``size`` on the dataset's rig."""
    from dojo.nets.flops import flops_per_sample
    from dojo.nets.policy import DrivingPolicy, PolicyConfig, parameter_count

    config = PolicyConfig(size=size, **data["rig"])
    model = DrivingPolicy(config).to(device)  # counted where it runs: quick on a GPU
    header = {
        "parameters": parameter_count(model),
        "forward_flops_per_sample": flops_per_sample(model, config),
        "train_flops_per_sample": flops_per_sample(model, config, backward=True),
    }
    del model
    return header


class _Stopper:
    """Asks ``trainer`` to stop (as a SIGTERM would) once ``min_steps`` steps after its first
    have run for ``measure_s`` seconds, or once ``cap_s`` seconds have passed since it started.

    The first step is not timed: it compiles (with torch.compile) and warms the loader up. A
    stop acts after the step under way, so a first step longer than ``cap_s`` is not cut.
    """

    def __init__(self, trainer: Any, min_steps: int, measure_s: float, cap_s: float) -> None:
        self.trainer, self.min_steps, self.measure_s, self.cap_s = (
            trainer,
            min_steps,
            measure_s,
            cap_s,
        )
        self.done = threading.Event()
        self.start = time.perf_counter()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        first_done: float | None = None
        while not self.done.wait(0.02):
            now = time.perf_counter()
            steps = self.trainer.step_count
            if first_done is None and steps >= 1:
                first_done = now
            measured = first_done is not None and now - first_done >= self.measure_s
            if (measured and steps > self.min_steps) or now - self.start >= self.cap_s:
                self.trainer.term_requested = True
                return

    def close(self) -> None:
        self.done.set()
        self.thread.join()


def train_speed(
    root: Path,
    data: dict[str, Any],
    plan: Plan,
    device: str,
    env: dict[str, Any],
    size: str,
    flops: float | None,
    compiled: bool,
    cap_s: float,
) -> dict[str, Any]:
    """`dojo train`'s speed at ``size`` with the real loader, eager or compiled; bf16 on CUDA."""
    import torch

    from dojo.train.config import TrainConfig, prepare
    from dojo.train.trainer import Trainer

    out = root / f"run-{size}-{'compiled' if compiled else 'eager'}"
    config = TrainConfig(
        dataset=data["dataset"],
        store=data["store"],
        out=str(out),
        size=size,
        steps=RUN_STEPS,
        batch_size=plan.batch_size,
        num_workers=plan.num_workers,
        compile=compiled,
        precision="bf16" if device == "cuda" else "fp32",  # dojo train's bf16 is CUDA autocast
        device=device,
        progress=False,
        checkpoint_every=0,
        val_every=0,
    )
    trainer = Trainer(prepare(config))
    stopper = _Stopper(trainer, plan.min_steps, plan.measure_s, cap_s)
    try:
        summary = trainer.fit()
    finally:
        stopper.close()
        del trainer
        if compiled:
            torch._dynamo.reset()  # the next size compiles afresh, not against this one's cache
        if device == "cuda":
            torch.cuda.empty_cache()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(out, ignore_errors=True)  # an xl checkpoint is ~600 MB
    return step_figures(
        [r for r in rows if "step_s" in r], config.batch_size, flops, env["peak_flops"]
    ) | {
        "steps": summary["steps"],
        "precision": config.precision,
        "batch_size": config.batch_size,
        "num_workers": config.num_workers,
        "mfu_reason": env["mfu_reason"],
    }


def step_figures(
    steps: list[dict[str, Any]], batch: int, flops: float | None, peak: float | None
) -> dict[str, Any]:
    """Rates of a run from its per-step metrics (``OUT/metrics.jsonl``); the first step apart.

    ``samples_per_s``: the batch over the median step time; ``data_wait_share``: the median
    step's share spent waiting for data. ``*_mean`` weigh every timed step by its length (so the
    loader's restarts at epoch ends count). ``compute_*`` leave the wait out: what the device
    sustains once fed. Rates come from median *times* (not the trainer's median of per-step
    rates, which with an even count averages two rates and can exceed both of them).
    """
    if not steps:
        raise RuntimeError("the run recorded no step")
    timed = steps[1:] or steps  # the first compiles (with torch.compile) and warms up
    step_s = [float(r["step_s"]) for r in timed]
    wait = [float(r["data_wait_share"]) for r in timed]
    compute_s = statistics.median(s * (1.0 - w) for s, w in zip(step_s, wait, strict=True))
    rate = batch / statistics.median(step_s)
    compute_rate = batch / compute_s if compute_s > 0 else None

    def tflops(r: float | None) -> float | None:
        return None if flops is None or r is None else flops * r / 1e12

    def mfu(r: float | None) -> float | None:
        return None if not peak or flops is None or r is None else flops * r / peak

    return {
        "steps_timed": len(timed),
        "first_step_s": float(steps[0]["step_s"]),
        "step_s_median": statistics.median(step_s),
        "samples_per_s": rate,
        "samples_per_s_mean": batch * len(step_s) / sum(step_s),
        "data_wait_share": statistics.median(wait),
        "data_wait_share_mean": sum(s * w for s, w in zip(step_s, wait, strict=True)) / sum(step_s),
        "compute_samples_per_s": compute_rate,
        "tflops": tflops(rate),
        "compute_tflops": tflops(compute_rate),
        "mfu": mfu(rate),
        "compute_mfu": mfu(compute_rate),
    }


def eval_speed(plan: Plan, device: str, log: Any) -> dict[str, Any]:
    """`dojo bench eval`'s closed-loop decisions/s with the net on ``device`` (and on the CPU
    beside it, when ``device`` is a GPU): the tiny policy at the default rig, as that bench."""
    from dojo.bench.eval import bench_eval
    from dojo.bench.gpu import error_text

    out: dict[str, Any] = {"net": "tiny policy, untrained, default rig (as dojo bench eval)"}
    for dev in (device, "cpu") if device != "cpu" else (device,):
        try:
            result = bench_eval(
                decisions=plan.eval_decisions, cars=(plan.eval_cars,), device=dev, log=log
            )
        except Exception as e:  # the CPU side failing must not lose the device's figure
            if dev == device:
                raise
            out[dev] = {"status": "failed", "error": error_text(e)}
            continue
        row = result["rows"][0]
        out[dev] = {
            "status": "ok",
            "decisions_per_s": row["tiny_decisions_per_s"],
            "naive_decisions_per_s": row["naive_decisions_per_s"],
            "inference_share": row["inference_share"],
            "decisions": row["tiny_decisions"],
            "cars": row["cars"],
            "workers": result["workers"],
            "torch_threads": result["torch_threads"],
        }
    out["decisions_per_s"] = out[device]["decisions_per_s"]
    return out


def ddp_plan(device: str) -> tuple[int, str] | str:
    """(processes, backend) of the DDP part, or why it is skipped.

    On a GPU: one process a GPU over NCCL, when there are several. In the CPU dry run: two
    processes over gloo, so the launch itself is tried before a GPU machine is asked for.
    """
    import torch

    if device == "cpu":
        cores = os.cpu_count() or 1
        return (2, "gloo") if cores >= 2 else f"{cores} CPU core: the dry run's DDP needs 2"
    gpus = torch.cuda.device_count()
    if gpus < 2:
        return f"{gpus} CUDA device here: NCCL DDP needs 2 or more"
    return gpus, "nccl"


def ddp_speed(
    root: Path,
    data: dict[str, Any],
    plan: Plan,
    device: str,
    size: str,
    processes: int,
    backend: str,
    single: dict[str, Any],
    timeout_s: float,
) -> dict[str, Any]:
    """``dojo train --nproc N`` (torchrun, one process a device) at ``size``: samples/s over all
    processes, and the scaling efficiency against ``single`` (the one-device eager run)."""
    out = root / "run-ddp"
    workers = max(1, plan.num_workers // processes)
    argv = [
        sys.executable, "-m", "dojo.cli", "train",
        "--dataset", data["dataset"], "--store", data["store"], "--out", str(out),
        "--size", size, "--steps", str(plan.ddp_steps),
        "--batch-size", str(plan.batch_size * processes), "--nproc", str(processes),
        "--num-workers", str(workers), "--device", device,
        "--precision", "bf16" if device == "cuda" else "fp32",
        "--checkpoint-every", "0", "--val-every", "0", "--no-progress",
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise TimeoutError(f"dojo train --nproc {processes} ran past {timeout_s:.0f} s") from e
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"dojo train --nproc {processes} exited {done.returncode}: {tail}")
    summary = json.loads((out / "summary.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    rate = float(summary["samples_per_s"])
    one = single.get("samples_per_s") if single.get("status") == "ok" else None
    return {
        "processes": processes,
        "backend": backend,
        "size": size,
        "global_batch": plan.batch_size * processes,
        "steps": summary["steps"],
        "samples_per_s": rate,
        "data_wait_share": summary["data_wait_share"],
        "scaling_efficiency": rate / (processes * one) if one else None,
    }


__all__ = [
    "NO_CPU_PEAK",
    "RUN_STEPS",
    "dataset",
    "ddp_plan",
    "ddp_speed",
    "driver_version",
    "environment",
    "eval_speed",
    "size_header",
    "step_figures",
    "train_speed",
]
