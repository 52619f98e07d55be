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
from dojo.train.config import NETS, PRECISIONS, SCHEDULES, SIZES, DistEnv, TrainConfig, prepare

# (flag, TrainConfig field, type, help); defaults come from TrainConfig
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--steps", "steps", int, "optimizer steps of the whole run"),
    (
        "--batch-size",
        "batch_size",
        int,
        "global batch [windows] per optimizer step, over all processes",
    ),
    ("--grad-accum", "grad_accum", int, "micro-batches accumulated per optimizer step"),
    ("--lr", "lr", float, "peak learning rate (AdamW)"),
    ("--min-lr-ratio", "min_lr_ratio", float, "final LR as a share of the peak (cosine)"),
    (
        "--warmup-steps",
        "warmup_steps",
        int,
        "linear warmup steps (None: a tenth of the run, at most 100)",
    ),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay of the weight matrices"),
    ("--clip-grad-norm", "clip_grad_norm", float, "gradient-norm clip (0: off)"),
    ("--seed", "seed", int, "seed of the weights and the data order"),
    (
        "--checkpoint-every",
        "checkpoint_every",
        int,
        "steps between checkpoints (0: only at the end)",
    ),
    ("--val-every", "val_every", int, "steps between validations (0: only at the end)"),
    ("--val-batches", "val_batches", int, "micro-batches per process per validation (0: all)"),
    ("--frames", "frames", int, "k: frames per camera the network sees"),
    ("--stride", "stride", int, "one window every this many frames of a clip"),
    ("--buffer-windows", "buffer_windows", int, "shuffle buffer of the loader [windows]"),
    ("--num-workers", "num_workers", int, "DataLoader worker processes per training process"),
    (
        "--occupancy-weight",
        "occupancy_weight",
        float,
        "weight of the occupancy loss with --net both",
    ),
]
_DEFAULTS = {name: f.default for name, f in TrainConfig.__dataclass_fields__.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The trainer's flags, on ``parser``."""
    parser.add_argument("--dataset", required=True, help="dataset NAME, NAME@vN or NAME@latest")
    parser.add_argument("--store", required=True, help="clip store folder")
    parser.add_argument(
        "--out", required=True, help="run folder (checkpoint, metrics, TensorBoard)"
    )
    parser.add_argument(
        "--net",
        default="policy",
        choices=NETS,
        help="network to train: the driving policy, the occupancy grid, or both on one backbone",
    )
    parser.add_argument("--size", default="tiny", choices=SIZES, help="network size")
    for flag, name, kind, text in _OPTIONS:
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            default=_DEFAULTS[name],
            help=f"{text} (default {_DEFAULTS[name]})",
        )
    parser.add_argument("--schedule", default="cosine", choices=SCHEDULES, help="LR after warmup")
    parser.add_argument(
        "--precision", default="fp32", choices=PRECISIONS, help="bf16: autocast, CUDA only"
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="auto: CUDA if there is one",
    )
    parser.add_argument(
        "--nproc", type=int, default=1, help="processes on this machine (K > 1 starts torchrun)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    parser.add_argument(
        "--init-from",
        dest="init_from",
        default=None,
        help="start from this policy.pt's weights (fine-tuning; --net policy, same size and rig)",
    )
    parser.add_argument(
        "--deterministic", action="store_true", help="torch.use_deterministic_algorithms"
    )
    parser.add_argument(
        "--log-samples", action="store_true", help="record every window trained on, per step"
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop after this step with a checkpoint, as a preemption would (then --resume)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A TrainConfig from parsed flags (validated on construction)."""
    values = {
        name: getattr(args, name) for name in TrainConfig.field_names() if hasattr(args, name)
    }
    return TrainConfig(**values)


def _argv_without_nproc(args: argparse.Namespace) -> list[str]:
    """The flags that reproduce ``args``, without --nproc (torchrun sets the world size)."""
    argv = [
        "--dataset",
        args.dataset,
        "--store",
        args.store,
        "--out",
        args.out,
        "--net",
        args.net,
        "--size",
        args.size,
        "--schedule",
        args.schedule,
        "--precision",
        args.precision,
        "--device",
        args.device,
    ]
    for flag, name, _, _ in _OPTIONS:
        if getattr(args, name) is not None:
            argv += [flag, str(getattr(args, name))]
    for flag, name in (
        ("--compile", "compile"),
        ("--resume", "resume"),
        ("--deterministic", "deterministic"),
        ("--log-samples", "log_samples"),
        ("--json", "json"),
    ):
        if getattr(args, name):
            argv.append(flag)
    if not args.progress:
        argv.append("--no-progress")
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
