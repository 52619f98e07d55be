"""`dojo bench train`: the trainer's speed beside a bare PyTorch loop, FLOPs counted, MFU stated.

One run, per net size:

- **dojo train**: :func:`dojo.train.trainer.train` on a real dataset (a fleet drive, ingested
  and mined in a temporary store; not timed), with the real streaming loader. Its summary
  gives samples/s (median step) and the share of step time spent waiting for data.
- **bare loop**: the same model, optimizer and loss on one synthetic batch held in memory, the
  fastest a PyTorch training step of this model runs here: no loader, no checkpoints, no
  metrics. ``dojo train`` / bare loop is the trainer's own efficiency.

FLOPs per sample of a training step (forward and backward) are counted with
``torch.utils.flop_counter.FlopCounterMode``, not estimated; achieved FLOP/s = FLOPs per
sample × samples/s. MFU divides that by the device's peak: on a GPU its dense BF16 figure
(H100/H200 SXM: 989 TFLOP/s), on a CPU cores × clock × 32 FP32 FLOPs a cycle (two 8-lane FMA
units, AVX2), an upper bound that this clock reading only approximates.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from dojo.bench.machine import cpu_clock_hz, cpu_flops_per_cycle, cpu_model, gpu_bf16_peak
from dojo.errors import DojoConfigError
from dojo.nets.flops import flops_per_sample
from dojo.nets.options import NET_SIZES
from dojo.nets.policy import DrivingPolicy, PolicyConfig, parameter_count
from dojo.train.config import TrainConfig
from dojo.train.trainer import policy_loss, train
from dojo.validate import whole

SIZES = NET_SIZES


def peak_flops(device: torch.device) -> tuple[float, str]:
    """(peak FLOP/s, how it was derived) for ``device``."""
    if device.type == "cuda":
        peak, how = gpu_bf16_peak(torch.cuda.get_device_name(device))
        return peak or 0.0, how
    cores = torch.get_num_threads()
    clock = cpu_clock_hz()
    per_cycle, ext = cpu_flops_per_cycle()
    return cores * clock * per_cycle, (
        f"{cores} threads x {clock / 1e9:.2f} GHz x {per_cycle} FP32 FLOPs/cycle ({ext})"
    )


def _batch(config: PolicyConfig, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, config.image_shape(batch), dtype=torch.uint8, generator=gen)
    speed = torch.rand(batch, generator=gen) * 30.0  # [m/s]
    command = torch.randint(0, config.commands, (batch,), generator=gen)
    action = torch.randn(batch, 2, generator=gen) * torch.tensor([1.0, 0.05])  # [m/s^2, rad]
    return tuple(t.to(device) for t in (images, speed, command, action))


def train_step_flops(size: str) -> int:
    """FLOPs of one training step (forward and backward) per sample of the policy, counted by torch."""
    config = PolicyConfig(size=size)
    return flops_per_sample(DrivingPolicy(config), config, backward=True)


def bare_loop(size: str, batch: int, steps: int, device: torch.device) -> float:
    """Samples/s of a plain PyTorch training loop on one in-memory batch (median step)."""
    config = PolicyConfig(size=size)
    model = DrivingPolicy(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, speed, command, action = _batch(config, batch, device)
    times = []
    for k in range(steps + 3):  # 3 warm-up steps
        tick = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        policy_loss(model(images, speed, command), action).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k >= 3:
            times.append(time.perf_counter() - tick)
    times.sort()
    return batch / times[len(times) // 2]


def make_dataset(
    root: Path,
    log: Callable[[str], None],
    cars: int = 4,
    seconds: float = 60.0,
    image_px: tuple[int, int] | None = None,
    processes: int = 1,
) -> tuple[str, str]:
    """(store, dataset name) of a fleet drive under ``root``, ingested and every window mined.

    ``image_px``: the cameras' (height, width) [px]; the default rig's when None.
    ``processes``: fleets driven at once, the cars dealt among them (a fleet renders and
    encodes on one core: at 192 x 384 px that is ~85 car-steps/s, a minute for 12 cars x 40 s).
    """
    from dojo.bench.ingest import make_logs
    from dojo.data.ingest import ingest
    from dojo.data.mine import mine

    rig = "" if image_px is None else f" at {image_px[1]}x{image_px[0]} px"
    log(f"driving {cars} cars x {seconds:g} s{rig}, ingesting and mining a dataset (not timed) ...")
    parts = max(1, min(whole("processes", processes, 1), cars))
    if parts == 1:
        files = make_logs(root / "logs", cars, seconds, image_px=image_px)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        shares = [cars // parts + (i < cars % parts) for i in range(parts)]
        firsts = [sum(shares[:i]) for i in range(parts)]  # seeds: as one fleet's cars 0..cars-1
        # spawn, not fork: the caller may hold a CUDA context, which a forked child must not touch
        with ProcessPoolExecutor(parts, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [
                pool.submit(make_logs, root / "logs" / f"fleet{i}", n, seconds, first, image_px)
                for i, (n, first) in enumerate(zip(shares, firsts, strict=True))
            ]
            files = [f for job in jobs for f in job.result()]
    store = root / "store"
    ingest(files, store)
    mine(store, ["near_miss"], sample_normal=1.0, out="bench")
    return str(store), "bench"


def bench_train(
    sizes: Sequence[str] = ("tiny", "base"),
    steps: int = 30,
    batch_size: int = 32,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure ``dojo train`` against the bare loop for each size; a JSON-able result."""
    bad = [s for s in sizes if s not in SIZES]
    if bad or not sizes:
        raise DojoConfigError(f"sizes={list(sizes)!r} must be some of {', '.join(SIZES)}.")
    steps, batch_size = whole("steps", steps, 5), whole("batch_size", batch_size, 1)
    say = log or (lambda _: None)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak, peak_how = peak_flops(device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dojo-bench-train-") as tmp:
        store, dataset = make_dataset(Path(tmp), say)
        for size in sizes:
            say(f"{size}: dojo train, {steps} steps of {batch_size} ...")
            config = TrainConfig(
                dataset=dataset,
                store=store,
                out=str(Path(tmp) / f"run-{size}"),
                size=size,
                steps=steps,
                batch_size=batch_size,
                progress=False,
                checkpoint_every=steps,
                val_every=steps,
                val_batches=1,
            )
            ours = train(config)
            say(f"{size}: bare PyTorch loop ...")
            bare = bare_loop(size, batch_size, steps, device)
            flops = train_step_flops(size)
            achieved = flops * ours["samples_per_s"]
            rows.append(
                {
                    "size": size,
                    "parameters": parameter_count(DrivingPolicy(PolicyConfig(size=size))),
                    "train_flops_per_sample": flops,
                    "samples_per_s": ours["samples_per_s"],
                    "samples_per_s_overall": ours["samples_per_s_overall"],
                    "data_wait_share": ours["data_wait_share"],
                    "bare_samples_per_s": bare,
                    "ratio_to_bare": ours["samples_per_s"] / bare if bare else 0.0,
                    "achieved_tflops": achieved / 1e12,
                    "bare_tflops": flops * bare / 1e12,
                    "mfu": achieved / peak if peak else None,
                }
            )
    return {
        "device": str(device),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "peak_flops": peak,
        "peak": peak_how,
        "batch_size": batch_size,
        "steps": steps,
        "sizes": rows,
    }


def format_train(result: dict[str, Any]) -> str:
    r = result
    lines = [
        f"dojo bench train on {r['device']} ({r['cores']} cores, torch {r['torch']}, {r['threads']} threads), "
        f"batch {r['batch_size']}, {r['steps']} steps, policy net",
        f"peak: {r['peak']}",
        "",
        f"{'size':<6}{'params':>11}{'GFLOP/sample':>14}{'dojo train':>12}{'bare loop':>11}{'ratio':>7}"
        f"{'data wait':>11}{'TFLOP/s':>9}{'MFU':>8}",
    ]
    for s in r["sizes"]:
        mfu = f"{100 * s['mfu']:.1f}%" if s["mfu"] is not None else "n/a"
        lines.append(
            f"{s['size']:<6}{s['parameters']:>11,}{s['train_flops_per_sample'] / 1e9:>14.3f}"
            f"{s['samples_per_s']:>10,.0f}/s{s['bare_samples_per_s']:>9,.0f}/s{s['ratio_to_bare']:>7.2f}"
            f"{100 * s['data_wait_share']:>10.1f}%{s['achieved_tflops']:>9.3f}{mfu:>8}"
        )
    return "\n".join(lines)


__all__ = [
    "bench_train",
    "bare_loop",
    "format_train",
    "make_dataset",
    "peak_flops",
    "train_step_flops",
]
