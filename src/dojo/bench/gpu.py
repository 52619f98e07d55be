"""`dojo bench gpu`: one prepared check of training, inference and evaluation speed (issue 23).

A lent GPU machine is held for minutes, so everything it should measure runs in one command
that fits in :data:`MAX_BUDGET_S` and writes ONE JSON file (``--out``; docs/gpu.md explains
every key). Parts, in the order they run (the most wanted first, so a run cut short still has
them):

1. ``environment``: device name and count, driver, torch, CUDA and cuDNN versions, the
   datasheet peak the MFU figures divide by (:func:`dojo.bench.machine.gpu_bf16_peak`).
2. ``dataset``: a fleet drive at the GPU rig's resolution (``GPU_IMAGE_PX``), ingested and mined
   into a temporary store: the real data every training part reads (not timed as a result).
3. ``sizes``: for ``xl`` first, then ``large``, ``base``, ``tiny``, eager and ``torch.compile``'d:
   :class:`dojo.train.trainer.Trainer` on that dataset with the real streaming loader (decoding
   in worker processes), bf16 on CUDA; samples/s, TFLOP/s and MFU from the FLOPs torch counts
   (:mod:`dojo.nets.flops`), and the share of step time spent waiting for data
   (:mod:`dojo.bench.gpu_parts`).
4. ``eval``: ``dojo bench eval``'s closed-loop decisions/s with the network on the device (and
   on the CPU beside it, same machine).
5. ``ddp``: ``dojo train --nproc N`` over all GPUs (NCCL) when there are several.

Every part has a time budget inside the run's ``budget_s``; a part that would start too late is
recorded as skipped with the reason, and a part that fails is recorded with its error while the
others go on. The file is rewritten (atomically) after every part, so even a run killed by the
wrapper's hard timeout leaves what it had measured. ``--device cpu --tiny`` runs the same code
paths on a CPU with the default rig, tiny batches and a few steps: the dry run a test makes so
that a GPU run can fail on nothing but the GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dojo import validate
from dojo.atomic import write_text
from dojo.errors import ConfigError
from dojo.nets.options import GPU_IMAGE_PX, GPU_SIZE, NET_SIZES

DEVICES = ("cuda", "cpu")
SKIPPABLE = ("compiled", "eval", "ddp")  # parts a run may leave out (--skip), recorded as such
MAX_BUDGET_S = 480.0  # a lent machine allows 10 min a command; bench/gpu-check.sh kills at 8
DEFAULT_BUDGET_S = 420.0  # leaves the wrapper's minute for start-up and the last part's overrun
TARGET_MFU = 0.40  # issue 23: the GPU-sized net, bf16, with the real loader
TARGET_DATA_WAIT = 0.05  # issue 23: share of step time spent waiting for data
SCHEMA = "dojo.bench.gpu/1"
Log = Callable[[str], None]


@dataclass(frozen=True)
class GpuCheckConfig:
    """One check. ``out``: the JSON file. ``device``: ``cuda``, or ``cpu`` for the dry run
    (``tiny`` then required). ``budget_s``: wall-clock budget of the whole run [s]. ``skip``:
    parts of :data:`SKIPPABLE` left out (the fast dry run of the tests skips the compiled runs,
    ~45 s a compile on a 2-core CPU, and the torchrun launch, ~30 s)."""

    out: str
    device: str = "cuda"
    tiny: bool = False
    budget_s: float = DEFAULT_BUDGET_S
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate.text("out", self.out)
        validate.choice("device", self.device, DEVICES)
        validate.flag("tiny", self.tiny)
        budget = validate.number("budget_s", self.budget_s, 0.0, MAX_BUDGET_S, low_open=True)
        object.__setattr__(self, "budget_s", budget)
        if not isinstance(self.skip, tuple):
            raise ConfigError(f"skip={self.skip!r} must be a tuple of part names.")
        for part in self.skip:
            validate.choice("skip", part, SKIPPABLE)
        if self.device == "cpu" and not self.tiny:
            raise ConfigError(
                "device='cpu' is the dry run of the GPU check and needs tiny=True (--tiny): "
                "the GPU-sized parts would take hours on a CPU."
            )


@dataclass(frozen=True)
class Plan:
    """What each part does, resolved from the config: the GPU's figures or the dry run's."""

    image_px: tuple[int, int] | None  # (height, width) of the rig [px]; None: the default rig
    cars: int  # cars driven for the dataset
    drive_processes: int  # fleets driven at once (one core each), the cars dealt among them
    seconds_per_car: float  # [s] simulated
    batch_size: int  # windows a step, per process
    num_workers: int  # loader worker processes
    measure_s: float  # [s] timed after a run's first step (which compiles and warms up)
    min_steps: int  # timed steps at least, whatever measure_s says
    cap_eager_s: float  # [s] a whole eager training run at most (set-up included)
    cap_compiled_s: float  # [s] the same with torch.compile (its compile included)
    compiled_sizes: tuple[str, ...]  # sizes measured compiled (the rest: skipped, with why)
    eval_decisions: int
    eval_cars: int
    eval_min_s: float  # [s] left at least for the eval part to start
    ddp_steps: int
    ddp_cap_s: float  # [s] the torchrun launch at most


def make_plan(config: GpuCheckConfig, cores: int) -> Plan:
    """The parts' sizes: what fits a GPU's minutes, or with ``tiny`` a few seconds each on a CPU."""
    gpu = Plan(
        image_px=GPU_IMAGE_PX,
        cars=12,
        drive_processes=max(1, min(6, cores - 1)),
        seconds_per_car=40.0,
        batch_size=128,  # xl: ~10 TFLOP a step, and 8 worker shards still fill an epoch
        num_workers=max(1, min(8, cores - 2)),  # the main process and the GPU's feeder keep 2
        measure_s=8.0,
        min_steps=10,
        cap_eager_s=45.0,
        cap_compiled_s=150.0,
        compiled_sizes=NET_SIZES,
        eval_decisions=24_000,
        eval_cars=64,
        eval_min_s=40.0,
        ddp_steps=30,
        ddp_cap_s=90.0,
    )
    if not config.tiny:
        return gpu
    # the dry run: the same parts at the default rig, a batch of 2 and the fewest steps
    return replace(
        gpu,
        image_px=None,
        cars=2,
        drive_processes=1,
        seconds_per_car=12.0,
        batch_size=2,
        num_workers=1,
        measure_s=0.5,
        min_steps=2,
        cap_eager_s=30.0,
        cap_compiled_s=90.0,
        compiled_sizes=("tiny",),  # one compile proves the path: 44 s on the 2-core dev CPU
        eval_decisions=1000,
        eval_cars=1,
        eval_min_s=5.0,
        ddp_steps=3,
        ddp_cap_s=60.0,
    )


def size_order() -> tuple[str, ...]:
    """The GPU-sized net first (the issue's target), then the others from large to tiny."""
    return (GPU_SIZE, *(s for s in reversed(NET_SIZES) if s != GPU_SIZE))


class Check:
    """The run's record and its clock: parts are run through :meth:`part` in order."""

    def __init__(self, config: GpuCheckConfig, log: Log) -> None:
        self.config, self.log = config, log
        self.start = time.perf_counter()
        self.result: dict[str, Any] = {
            "schema": SCHEMA,
            "status": "running",
            "config": asdict(self.config),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "targets": {"mfu": TARGET_MFU, "data_wait_share": TARGET_DATA_WAIT},
            "parts": [],
        }

    def left_s(self) -> float:
        """Seconds of the run's budget not yet spent."""
        return self.config.budget_s - (time.perf_counter() - self.start)

    def save(self) -> None:
        self.result["wall_s"] = time.perf_counter() - self.start
        write_text(self.config.out, json.dumps(self.result, indent=1, default=str) + "\n")

    def part(self, name: str, needs_s: float, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``fn`` if ``needs_s`` seconds are left; its record, or why it failed or was skipped.

        A failure is recorded (type, message and where it was raised), never raised:
        one broken part must not cost the run the others' figures.
        """
        left = self.left_s()
        tick = time.perf_counter()
        if left < needs_s:
            record: dict[str, Any] = {
                "status": "skipped",
                "reason": f"not started: {max(left, 0.0):.0f} s of the run's "
                f"{self.config.budget_s:.0f} s budget left, the part needs about {needs_s:.0f} s",
            }
        else:
            self.log(f"{name} ({left:.0f} s of the budget left) ...")
            try:
                record = {"status": "ok", **fn()}
            except Exception as e:  # any failure is data here; the run goes on
                record = {"status": "failed", "error": error_text(e)}
                self.log(f"{name} failed: {record['error']}")
        record["seconds"] = time.perf_counter() - tick
        self.result["parts"].append({"name": name, "status": record["status"]})
        return record


def error_text(e: BaseException) -> str:
    """One line for the JSON: the error's type and message, and where it was raised."""
    where = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    at = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    return f"{type(e).__name__}: {e}{at}"


def run_check(config: GpuCheckConfig, log: Log | None = None) -> dict[str, Any]:
    """Run every part of the check for ``config``; the record, also written to ``config.out``."""
    import os

    from dojo.bench import gpu_parts as parts

    say = log or (lambda _: None)
    out = Path(config.out)
    if out.is_dir():
        raise ConfigError(f"out={config.out!r} is a folder; name the JSON file to write.")
    out.parent.mkdir(parents=True, exist_ok=True)
    env = parts.environment(config.device)  # raises ConfigError before any work if no CUDA
    check = Check(config, say)
    plan = make_plan(config, os.cpu_count() or 1)
    check.result.update(environment=env, plan=asdict(plan))
    check.save()
    with tempfile.TemporaryDirectory(prefix="dojo-bench-gpu-") as tmp:
        root = Path(tmp)
        data = check.result["dataset"] = check.part(
            "dataset", 0.0, lambda: parts.dataset(root, plan, say)
        )
        check.save()
        sizes: dict[str, Any] = check.result.setdefault("sizes", {})
        for size in size_order():
            _measure_size(check, parts, root, data, plan, env, size, sizes)
            if size == GPU_SIZE:  # evaluation and DDP before the smaller sizes
                check.result["eval"] = (
                    {"status": "skipped", "reason": "left out by --skip"}
                    if "eval" in config.skip
                    else check.part(
                        "eval", plan.eval_min_s, lambda: parts.eval_speed(plan, config.device, say)
                    )
                )
                check.save()
                check.result["ddp"] = _ddp(check, parts, root, data, plan, sizes[GPU_SIZE])
                check.save()
    check.result["verdict"] = verdict(check.result)
    check.result["status"] = "complete"
    check.save()
    return check.result


def _measure_size(
    check: Check,
    parts: Any,
    root: Path,
    data: dict[str, Any],
    plan: Plan,
    env: dict[str, Any],
    size: str,
    sizes: dict[str, Any],
) -> None:
    """``sizes[size]``: the size's FLOPs, then a training run eager and one compiled (the
    record is in ``sizes`` from the start, so each save holds the runs done so far)."""
    device = check.config.device
    if data["status"] != "ok":
        skipped = {"status": "skipped", "reason": "the dataset part did not finish"}
        sizes[size] = {"eager": skipped, "compiled": skipped}
        return
    row = sizes[size] = check.part(
        f"{size} flops", 0.0, lambda: parts.size_header(size, data, device)
    )
    flops = row.get("train_flops_per_sample")
    for mode in ("eager", "compiled"):
        if mode == "compiled" and "compiled" in check.config.skip:
            row[mode] = {"status": "skipped", "reason": "left out by --skip"}
            continue
        if mode == "compiled" and size not in plan.compiled_sizes:
            row[mode] = {
                "status": "skipped",
                "reason": f"--tiny compiles only {', '.join(plan.compiled_sizes)}: "
                "a compile's first step takes ~45 s a size on a 2-core CPU",
            }
            continue
        compiled = mode == "compiled"
        cap = plan.cap_compiled_s if compiled else plan.cap_eager_s

        def run(compiled: bool = compiled, cap: float = cap) -> dict[str, Any]:
            cap = min(cap, check.left_s())
            return dict(
                parts.train_speed(root, data, plan, device, env, size, flops, compiled, cap)
            )

        row[mode] = check.part(f"{size} {mode}", min(cap, 2 * plan.measure_s + 10.0), run)
        check.save()


def _ddp(
    check: Check,
    parts: Any,
    root: Path,
    data: dict[str, Any],
    plan: Plan,
    single: dict[str, Any],
) -> dict[str, Any]:
    """The DDP part, or why there is none."""
    device = check.config.device
    if "ddp" in check.config.skip:
        return {"status": "skipped", "reason": "left out by --skip"}
    how = parts.ddp_plan(device)
    if isinstance(how, str):
        return {"status": "skipped", "reason": how}
    if data["status"] != "ok":
        return {"status": "skipped", "reason": "the dataset part did not finish"}
    processes, backend = how
    return check.part(
        "ddp",
        plan.ddp_cap_s / 2,
        lambda: parts.ddp_speed(
            root, data, plan, device, GPU_SIZE, processes, backend, single.get("eager", {}),
            min(plan.ddp_cap_s, check.left_s()),
        ),
    )  # fmt: skip


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets against the GPU-sized net's best measured variant (by samples/s)."""
    row = result.get("sizes", {}).get(GPU_SIZE, {})
    runs = [(m, row[m]) for m in ("eager", "compiled") if row.get(m, {}).get("status") == "ok"]
    if not runs:
        return {"mode": None, "mfu_met": None, "data_wait_met": None,
                "summary": f"{GPU_SIZE} was not measured"}  # fmt: skip
    mode, best = max(runs, key=lambda r: float(r[1]["samples_per_s"]))
    mfu, wait = best["mfu"], float(best["data_wait_share"])
    mfu_met = None if mfu is None else bool(mfu >= TARGET_MFU)
    wait_met = bool(wait < TARGET_DATA_WAIT)
    mfu_text = (
        f"MFU n/a ({best['mfu_reason']})"
        if mfu is None
        else f"MFU {mfu:.1%} ({'met' if mfu_met else 'NOT met'}, target >= {TARGET_MFU:.0%})"
    )
    return {
        "mode": mode,
        "mfu": mfu,
        "mfu_met": mfu_met,
        "data_wait_share": wait,
        "data_wait_met": wait_met,
        "summary": f"{GPU_SIZE} {mode}: {mfu_text}; data wait {wait:.1%} "
        f"({'met' if wait_met else 'NOT met'}, target < {TARGET_DATA_WAIT:.0%})",
    }


def format_check(result: dict[str, Any]) -> str:
    """A few lines for the terminal: the device, each size's figures, the verdict."""
    env = result["environment"]
    lines = [f"dojo bench gpu on {env['device_name']} (torch {env['torch']}, CUDA {env['cuda']})"]
    for size, row in result["sizes"].items():
        for mode in ("eager", "compiled"):
            r = row.get(mode, {})
            if r.get("status") != "ok":
                lines.append(
                    f"  {size:<6}{mode:<9}{r.get('status')}: {r.get('error') or r.get('reason')}"
                )
                continue
            mfu = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
            lines.append(
                f"  {size:<6}{mode:<9}{r['samples_per_s']:>10,.1f} samples/s {r['tflops']:>9.3f} "
                f"TFLOP/s  MFU {mfu:>6}  data wait {r['data_wait_share']:.1%}"
            )
    lines.append(f"  verdict: {result['verdict']['summary']}")
    return "\n".join(lines)


def _bench_gpu(args: argparse.Namespace) -> int:
    skip = tuple(p.strip() for p in args.skip.split(",") if p.strip())
    config = GpuCheckConfig(
        out=args.out, device=args.device, tiny=args.tiny, budget_s=args.budget, skip=skip
    )
    result = run_check(config, log=lambda m: print(m, file=sys.stderr))
    print(format_check(result), file=sys.stderr)
    print(Path(config.out).resolve())
    return 0


def add_bench_command(bench: argparse._SubParsersAction) -> None:
    """Register ``gpu`` under ``dojo bench``."""
    b = bench.add_parser(
        "gpu",
        help="one prepared GPU check: every size eager and compiled with the real loader, "
        "eval decisions/s, DDP; one JSON file (docs/gpu.md)",
    )
    b.add_argument(
        "--out", required=True, help="the JSON file to write (rewritten after each part)"
    )
    # no argparse choices: a bad value is a ConfigError, reported as `dojo: error: ...` like
    # every other bad setting
    b.add_argument("--device", default="cuda", help=f"{' | '.join(DEVICES)} (cpu: with --tiny)")
    b.add_argument(
        "--tiny", action="store_true", help="the dry run: default rig, tiny batches, few steps"
    )
    b.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"wall-clock budget of the whole run [s], at most {MAX_BUDGET_S:g} "
        "(default %(default)s)",
    )
    b.add_argument(
        "--skip", default="", help=f"comma-separated parts to leave out: {', '.join(SKIPPABLE)}"
    )
    b.set_defaults(func=_bench_gpu)


__all__ = [
    "DEFAULT_BUDGET_S",
    "DEVICES",
    "MAX_BUDGET_S",
    "SKIPPABLE",
    "TARGET_DATA_WAIT",
    "TARGET_MFU",
    "Check",
    "GpuCheckConfig",
    "Plan",
    "add_bench_command",
    "error_text",
    "format_check",
    "make_plan",
    "run_check",
    "size_order",
    "verdict",
]
