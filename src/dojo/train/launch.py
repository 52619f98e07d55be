"""``dojo train`` / ``python -m dojo.train``: the command line of the trainer.

    python -m dojo.train --dataset hard_cases --store store --steps 500 --out runs/a
    python -m dojo.train ... --nproc 2          # starts torchrun itself (one machine)
    torchrun --nproc-per-node 2 -m dojo.train ...   # or torchrun directly, across nodes too
    python -m dojo.train ... --resume           # continue runs/a from its checkpoint

``--nproc K`` (K > 1) checks everything first, in this process, then runs
``python -m torch.distributed.run --standalone --nproc-per-node K -m dojo.train <the same
arguments without --nproc>`` and returns its exit code: a bad input is one clear message
before torchrun starts anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from dojo.errors import DojoError
from dojo.proc import die_with_parent
from dojo.settings import add_flags, argv_for, from_args
from dojo.train.config import DistEnv, TrainConfig, prepare

# the TrainConfig fields `dojo train` exposes, in --help order (flag, default, help: the fields')
TRAIN_FLAGS = (
    "dataset",
    "store",
    "out",
    "net",
    "size",
    "steps",
    "batch_size",
    "grad_accum",
    "lr",
    "min_lr_ratio",
    "warmup_steps",
    "weight_decay",
    "clip_grad_norm",
    "seed",
    "checkpoint_every",
    "val_every",
    "val_batches",
    "frames",
    "stride",
    "buffer_windows",
    "num_workers",
    "occupancy_weight",
    "occupancy_head",
    "occupancy_loss",
    "rare_class_weight",
    "focal_gamma",
    "labels",
    "planner_weight",
    "schedule",
    "precision",
    "device",
    "nproc",
    "compile",
    "resume",
    "init_from",
    "deterministic",
    "log_samples",
    "progress",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The trainer's flags, on ``parser``."""
    add_flags(parser, TrainConfig, TRAIN_FLAGS)
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop after this step with a checkpoint, as a preemption would (then --resume)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A TrainConfig from parsed flags (validated on construction)."""
    config: TrainConfig = from_args(TrainConfig, args, TRAIN_FLAGS)
    return config


def _argv_without_nproc(args: argparse.Namespace) -> list[str]:
    """The flags that reproduce ``args``, without --nproc (torchrun sets the world size)."""
    paths = [p for p in TRAIN_FLAGS if p != "nproc"]
    argv = argv_for(TrainConfig, {p: getattr(args, p) for p in paths}, paths)
    if args.json:
        argv.append("--json")
    if args.stop_after is not None:
        argv += ["--stop-after", str(args.stop_after)]
    return argv


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The command ``--nproc`` runs: torchrun on this machine, this module, the same flags."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "dojo.train",
        *argv,
    ]


def run_torchrun(cmd: list[str]) -> int:
    """Run torchrun and pass SIGTERM and SIGINT on to it exactly once; its exit code.

    torchrun runs in a session of its own so that a signal to this launcher's process group
    (a scheduler's or agent's stop, Ctrl-C) reaches torchrun once, through us: torchrun then
    stops its workers (they checkpoint on SIGTERM) and waits for them. Had it shared our group
    it would get the group's signal and ours, and a second signal cuts its shutdown short.
    """
    # SIGTERM if this launcher dies: a killed launcher leaves no torchrun behind
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def format_summary(s: dict[str, Any]) -> str:
    """The human-readable end of a run."""
    state = (
        "finished"
        if s["finished"]
        else "stopped by SIGTERM"
        if s.get("stopped_by_signal")
        else "stopped"
    )
    val = "n/a" if s["val_loss"] is None else f"{s['val_loss']:.4f}"
    lines = [
        f"{state} at step {s['steps']} ({s['steps_this_run']} this run, {s['wall_s']:.1f} s) of {s['net']}/{s['size']} "
        f"on {s['dataset']}, {s['world_size']} process(es) on {s['device']}",
        f"  loss {s['loss']:.4f}   val loss {val}   {s['samples_per_s']:.1f} samples/s (median step; "
        f"{s['samples_per_s_overall']:.1f} over all steps)   "
        f"data wait {100 * s['data_wait_share']:.1f}% of step time",
        f"  checkpoint {s['checkpoint']}",
    ]
    if s.get("policy"):
        lines.append(f"  policy     {s['policy']}")
    lines += [f"  note: {n}" for n in s["notes"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say; the exit code (torchrun's when ``--nproc`` K > 1 launched it)."""
    from dojo.train.trainer import train

    config = config_from_args(args)
    env = DistEnv.from_environ()
    if config.nproc > 1 and not env.distributed and "RANK" not in os.environ:
        prepare(config, env, launching=config.nproc)  # every check, once, before torchrun starts
        return run_torchrun(torchrun_command(config.nproc, _argv_without_nproc(args)))
    summary = train(config, stop_after=args.stop_after)
    if env.rank == 0:
        print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    if summary.get("stopped_by_signal"):
        return (
            128 + signal.SIGTERM
        )  # what a terminated process reports, though it saved its state first
    return 0 if summary["finished"] or args.stop_after is not None else 1


def add_train_command(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` on the top-level ``dojo`` parser (``dojo train ...``)."""
    p = sub.add_parser(
        "train",
        help="train a network on a dataset (DDP through torchrun, checkpoints, exact resume)",
        description="Imitation training of the driving policy on a dataset's train split, with "
        "validation on its val split, JSONL and TensorBoard metrics, atomic checkpoints and "
        "--resume. --nproc K starts K processes through torchrun.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dojo.train``."""
    parser = argparse.ArgumentParser(
        prog="python -m dojo.train", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except DojoError as err:
        print(f"dojo train: error: {err}", file=sys.stderr)
        return 2


__all__ = [
    "add_arguments",
    "add_train_command",
    "config_from_args",
    "main",
    "run",
    "run_torchrun",
    "torchrun_command",
]
