"""Typed training settings, checked before any work: field by field, then against the world.

Two stages, both free of side effects and both run before any process group starts:

* :class:`TrainConfig` checks every field on construction (types, ranges, known names) and
  raises a :class:`~dojo.errors.DojoConfigError` of one sentence naming the bad value.
* :func:`prepare` checks the config against the machine and the files: the process count
  against the cores (or GPUs), the dataset (exists, has training windows, enough for one
  step), the output folder (empty, or the same run when resuming) and the checkpoint to
  resume (same net and size). It returns a :class:`Prepared` run, the *resolved* config
  included: the dataset pinned to ``name@vN`` with its content hash, the store as an absolute
  path, the process count as actually launched and the network's shape.

Importing this module does not import torch (``dojo --help`` stays quick).

``torchrun`` starts every rank with the same arguments, so each rank calls :func:`prepare`
itself; ``--nproc K`` calls it once more in the launching process, so a bad input is reported
once, before torchrun starts anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from dojo import validate
from dojo.errors import DojoConfigError
from dojo.nets.options import (
    FOCAL_GAMMA,
    NET_SIZES,
    OCCUPANCY_HEAD,
    OCCUPANCY_HEADS,
    OCCUPANCY_LOSS,
    OCCUPANCY_LOSSES,
    RARE_CLASS_WEIGHT,
)
from dojo.nets.targets import LABEL_SOURCE, LABEL_SOURCES, PLANNER_TARGETS
from dojo.settings import setting

NETS = ("policy", "occupancy", "both", "perception")
SIZES = NET_SIZES
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
RUN_FILE = "run.json"  # the resolved config of the run a folder holds
CHECKPOINT_FILE = "checkpoint.pt"  # the latest checkpoint (written atomically)
# Fields that do not change what is trained (only where it is written, how often it is looked
# at or how fast it runs): a run resumed with other values of these is still the same run.
OPERATIONAL = frozenset(
    {
        "out",
        "resume",
        "checkpoint_every",
        "val_every",
        "val_batches",
        "progress",
        "log_samples",
        "compile",
        "device",
        "deterministic",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Units: steps are optimizer updates; batch sizes count windows.

    ``batch_size`` is the *global* batch of one optimizer step: it is split over ``nproc``
    processes and ``grad_accum`` micro-batches, so each process runs micro-batches of
    ``batch_size / (nproc * grad_accum)`` windows and the update is the same whatever the split.
    ``lr`` is the peak learning rate, reached linearly over ``warmup_steps`` (default: a tenth of
    the run, at most 100) and then, with
    ``schedule="cosine"``, decayed to ``lr * min_lr_ratio`` at ``steps``. ``clip_grad_norm``
    of 0 turns clipping off. ``frames`` is k, the frames per camera the network sees.
    ``checkpoint_every``/``val_every`` of 0 mean only at the end / never. ``val_batches``: the
    most micro-batches each process evaluates per validation (0: the whole val split).
    ``log_samples`` writes the (clip_id, frame) of every window each process trained on, per
    step, to ``OUT/samples/rank<R>.jsonl`` (for tests and debugging; costs a little disk).
    ``deterministic`` turns on ``torch.use_deterministic_algorithms`` for the run.
    ``net``: ``policy`` (driving policy), ``occupancy`` (bird's-eye grid) or ``both`` (one
    backbone, both heads; loss = policy loss + ``occupancy_weight`` x occupancy loss).
    ``occupancy_weight`` defaults to 1.0 because both losses are already on a unit scale: the
    policy's Huber loss is in units of an ordinary manoeuvre, and the occupancy cross-entropy is
    a mean over cells (ln 5 = 1.6 at chance, well under 1 once the road layout is learned), so
    neither head drowns the other at the start; it is a knob, not a fitted value.
    ``labels``: where the targets come from (:data:`dojo.nets.targets.LABEL_SOURCES`):
    ``autolabel`` trains on the auto-labeler's action and grid, and gives ``both`` and
    ``perception`` (occupancy + planner heads, auto-labels only) the planner heads, their loss
    weighted by ``planner_weight`` (1.0: the planner's Huber loss is on a unit scale too, one
    unit a 10 % gap error or 1 m/s). ``perception`` weighs its occupancy loss by
    ``occupancy_weight`` too; at 0 the occupancy decoder is not computed, the planner heads
    train alone (several times cheaper a step on CPU: docs/train.md) and the run's occupancy
    metrics are NaN.
    """

    dataset: str = setting(help="dataset NAME, NAME@vN or NAME@latest", required=True)
    store: str = setting(help="clip store folder", required=True)
    out: str = setting(help="run folder (checkpoint, metrics, TensorBoard)", required=True)
    net: str = setting(
        "policy",
        help="network to train: the driving policy, the occupancy grid, both on one backbone, or "
        "perception (the grid and the planner heads; --labels autolabel)",
        choices=NETS,
        cli_choices=True,
    )
    size: str = setting("tiny", help="network size", choices=SIZES, cli_choices=True)
    steps: int = setting(1000, help="optimizer steps of the whole run (default %(default)s)")
    batch_size: int = setting(
        32,
        help="global batch [windows] per optimizer step, over all processes (default %(default)s)",
        unit="windows",
    )
    grad_accum: int = setting(
        1, help="micro-batches accumulated per optimizer step (default %(default)s)"
    )
    lr: float = setting(1e-3, help="peak learning rate (AdamW) (default %(default)s)")
    min_lr_ratio: float = setting(
        0.1, help="final LR as a share of the peak (cosine) (default %(default)s)"
    )
    warmup_steps: int | None = setting(  # None: a tenth of the run, at most 100 steps
        None,
        help="linear warmup steps (None: a tenth of the run, at most 100) (default %(default)s)",
    )
    schedule: str = setting("cosine", help="LR after warmup", choices=SCHEDULES, cli_choices=True)
    weight_decay: float = setting(
        0.01, help="AdamW weight decay of the weight matrices (default %(default)s)"
    )
    clip_grad_norm: float = setting(1.0, help="gradient-norm clip (0: off) (default %(default)s)")
    seed: int = setting(0, help="seed of the weights and the data order (default %(default)s)")
    checkpoint_every: int = setting(
        200, help="steps between checkpoints (0: only at the end) (default %(default)s)"
    )
    val_every: int = setting(
        200, help="steps between validations (0: only at the end) (default %(default)s)"
    )
    val_batches: int = setting(
        20, help="micro-batches per process per validation (0: all) (default %(default)s)"
    )
    frames: int = setting(2, help="k: frames per camera the network sees (default %(default)s)")
    stride: int = setting(
        1, help="one window every this many frames of a clip (default %(default)s)"
    )
    buffer_windows: int = setting(
        256, help="shuffle buffer of the loader [windows] (default %(default)s)", unit="windows"
    )
    num_workers: int = setting(
        0, help="DataLoader worker processes per training process (default %(default)s)"
    )
    nproc: int = setting(1, help="processes on this machine (K > 1 starts torchrun)")
    compile: bool = setting(False, help="torch.compile the network")
    precision: str = setting(
        "fp32", help="bf16: autocast, CUDA only", choices=PRECISIONS, cli_choices=True
    )
    device: str = setting(
        "auto", help="auto: CUDA if there is one", choices=DEVICES, cli_choices=True
    )
    resume: bool = setting(False, help="continue the run in --out from its checkpoint")
    log_samples: bool = setting(False, help="record every window trained on, per step")
    progress: bool = setting(True, help="no progress bar", negate="--no-progress")
    deterministic: bool = setting(False, help="torch.use_deterministic_algorithms")
    occupancy_weight: float = setting(  # weight of the occupancy loss beside another head's
        1.0,
        help="weight of the occupancy loss with --net both or perception; 0 with perception "
        "trains the planner heads alone, without the occupancy decoder (default %(default)s)",
    )
    occupancy_head: str = setting(
        OCCUPANCY_HEAD,
        help="occupancy head: spatial (attends to each camera's patch tokens) or pooled (one "
        "token a camera) (default %(default)s)",
        choices=OCCUPANCY_HEADS,
        cli_choices=True,
    )
    occupancy_loss: str = setting(
        OCCUPANCY_LOSS,
        help="occupancy loss: ce, weighted (rare classes x --rare-class-weight) or focal "
        "(default %(default)s)",
        choices=OCCUPANCY_LOSSES,
        cli_choices=True,
    )
    rare_class_weight: float = setting(
        RARE_CLASS_WEIGHT,
        help="weight of a vehicle or obstacle cell in the weighted loss (default %(default)s)",
    )
    focal_gamma: float = setting(
        FOCAL_GAMMA, help="focusing exponent of the focal loss (default %(default)s)"
    )
    labels: str = setting(
        LABEL_SOURCE,
        help="targets: the logged telemetry and grid, or the auto-labels (`dojo autolabel`) "
        "(default %(default)s)",
        choices=LABEL_SOURCES,
        cli_choices=True,
    )
    planner_weight: float = setting(
        1.0, help="weight of the planner heads' loss with --labels autolabel (default %(default)s)"
    )
    hazard_weight: float = setting(
        1.0,
        help="policy-loss weight of a window whose target brakes hard or changes lane "
        "(default %(default)s: no up-weighting)",
    )
    underbrake_weight: float = setting(
        1.0,
        help="policy-loss weight of braking less than the target brakes (default %(default)s)",
    )
    init_from: str | None = setting(  # a checkpoint of the same net whose weights start the run
        None,
        help="start from these weights (fine-tuning): a policy.pt for --net policy, a run's "
        "checkpoint.pt for any net; same net, size and rig",
    )

    def __post_init__(self) -> None:
        for name in ("dataset", "store", "out"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise DojoConfigError(f"{name}={value!r} must be a non-empty string.")
        if (
            self.warmup_steps is None
            and isinstance(self.steps, int)
            and not isinstance(self.steps, bool)
        ):
            object.__setattr__(self, "warmup_steps", min(100, max(0, self.steps) // 10))
        validate.choice("net", self.net, NETS)
        validate.choice("size", self.size, SIZES)
        validate.choice("schedule", self.schedule, SCHEDULES)
        validate.choice("precision", self.precision, PRECISIONS)
        validate.choice("device", self.device, DEVICES)
        validate.choice("occupancy_head", self.occupancy_head, OCCUPANCY_HEADS)
        validate.choice("occupancy_loss", self.occupancy_loss, OCCUPANCY_LOSSES)
        validate.choice("labels", self.labels, LABEL_SOURCES)
        if self.net == "perception" and self.labels != "autolabel":
            raise DojoConfigError(
                f"net='perception' learns the planner targets of the auto-labels; "
                f"labels={self.labels!r} has none: use labels='autolabel'."
            )
        for name, low in (
            ("steps", 1),
            ("batch_size", 1),
            ("grad_accum", 1),
            ("warmup_steps", 0),
            ("seed", 0),
            ("checkpoint_every", 0),
            ("val_every", 0),
            ("val_batches", 0),
            ("frames", 1),
            ("stride", 1),
            ("buffer_windows", 0),
            ("num_workers", 0),
            ("nproc", 1),
        ):
            validate.whole(name, getattr(self, name), low)
        validate.positive("lr", self.lr)
        validate.number("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        validate.number("weight_decay", self.weight_decay, 0.0)
        validate.number("clip_grad_norm", self.clip_grad_norm, 0.0)
        validate.number("occupancy_weight", self.occupancy_weight, 0.0)
        validate.number("planner_weight", self.planner_weight, 0.0)
        validate.positive("hazard_weight", self.hazard_weight)
        validate.positive("underbrake_weight", self.underbrake_weight)
        validate.positive("rare_class_weight", self.rare_class_weight)
        validate.number("focal_gamma", self.focal_gamma, 0.0)
        for name in ("compile", "resume", "log_samples", "progress", "deterministic"):
            validate.flag(name, getattr(self, name))
        if self.init_from is not None and (
            not isinstance(self.init_from, str) or not self.init_from.strip()
        ):
            raise DojoConfigError(f"init_from={self.init_from!r} must be the path of a checkpoint.")
        assert self.warmup_steps is not None
        if self.warmup_steps > self.steps:
            raise DojoConfigError(
                f"warmup_steps={self.warmup_steps} is longer than the run (steps={self.steps})."
            )
        self.micro_batch(self.nproc)  # the global batch must split evenly

    def micro_batch(self, world_size: int) -> int:
        """Windows per micro-batch on each process: batch_size / (world_size * grad_accum)."""
        parts = world_size * self.grad_accum
        if self.batch_size % parts:
            raise DojoConfigError(
                f"batch_size={self.batch_size} does not split evenly into {world_size} processes x "
                f"grad_accum {self.grad_accum} micro-batches; use a multiple of {parts}."
            )
        return self.batch_size // parts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a torchrun launch (0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> DistEnv:
        """Read torchrun's RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE, if it set them."""
        env = os.environ if environ is None else environ
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return cls()
        try:
            rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
            local = int(env.get("LOCAL_RANK", "0"))
            local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
        except ValueError as e:
            raise DojoConfigError(
                f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK are not numbers ({e})."
            ) from e
        if not 0 <= rank < world or not 0 <= local < local_world:
            raise DojoConfigError(
                f"RANK={rank} / WORLD_SIZE={world} from the environment do not fit."
            )
        return cls(rank, world, local, local_world)


@dataclass(frozen=True)
class Prepared:
    """A checked run: the config, where it stands, and what it resolved to."""

    config: TrainConfig
    env: DistEnv
    device: str  # "cpu" or "cuda" (the index comes from the local rank)
    resolved: dict[str, Any]  # the run's identity, written to OUT/run.json
    dataset_ref: str  # name@vN
    dataset_hash: str  # the manifest's content hash
    train_entries: list[dict[str, Any]]
    val_entries: list[dict[str, Any]]
    net_config: dict[
        str, Any
    ]  # PolicyConfig (net=policy) or OccupancyConfig .to_dict() for the rig
    resume_from: Path | None  # the checkpoint to continue from, if any
    micro_batch: int  # windows per micro-batch on each process
    train_windows: int  # windows of the train split (all shards)


def resolve_device(config: TrainConfig) -> str:
    import torch

    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if config.device == "cuda" and not torch.cuda.is_available():
        raise DojoConfigError("device='cuda' was asked for but torch sees no CUDA device here.")
    return config.device


def _check_processes(config: TrainConfig, env: DistEnv, device: str, launching: int | None) -> int:
    """The world size the run will have, checked against the config and the machine."""
    import torch

    if launching is not None:  # the --nproc launcher, before torchrun
        world, local_world = launching, launching
    else:
        world, local_world = env.world_size, env.local_world_size
        if config.nproc != 1 and config.nproc != world:
            raise DojoConfigError(
                f"nproc={config.nproc} but torchrun started {world} processes; leave --nproc out under torchrun."
            )
    if device == "cuda":
        gpus = torch.cuda.device_count()
        if local_world > gpus:
            raise DojoConfigError(
                f"nproc={local_world} processes on this machine but it has {gpus} CUDA devices; use at most {gpus}."
            )
    else:
        cores = os.cpu_count() or 1
        if local_world > cores:
            raise DojoConfigError(
                f"nproc={local_world} processes on this machine but it has {cores} CPU cores; use at most {cores}."
            )
    if config.precision == "bf16" and device != "cuda":
        raise DojoConfigError(
            "precision='bf16' (autocast) is for CUDA devices; on CPU use precision='fp32'."
        )
    return world


def identity(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that says which run it is (everything but OPERATIONAL)."""
    return {k: v for k, v in resolved.items() if k not in OPERATIONAL}


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [f"{k} {a.get(k)!r} there, {b.get(k)!r} here" for k in keys if a.get(k) != b.get(k)]


def _check_out(config: TrainConfig, resolved: dict[str, Any]) -> Path | None:
    """The checkpoint to resume from (None: start fresh); raise if the folder holds another run."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise DojoConfigError(f"out={config.out!r} is a file; the run needs a folder.")
    run_file, ckpt = out / RUN_FILE, out / CHECKPOINT_FILE
    if not out.exists() or not any(out.iterdir()):
        if config.resume:
            raise DojoConfigError(
                f"--resume: {config.out} holds no run to resume; leave --resume out to start one."
            )
        return None
    if not run_file.exists():
        raise DojoConfigError(
            f"out={config.out!r} is not empty and holds no Dojo run ({RUN_FILE} is missing); choose a new folder."
        )
    try:
        there = json.loads(run_file.read_text())
        assert isinstance(there, dict)
    except (OSError, ValueError, AssertionError) as e:
        raise DojoConfigError(
            f"{run_file} cannot be read as a run's config ({e}); choose a new folder."
        ) from e
    if config.resume and ckpt.exists():
        saved = _checkpoint_config(ckpt)
        if (saved.get("net"), saved.get("size")) != (config.net, config.size):
            raise DojoConfigError(
                f"--resume: checkpoint {ckpt} is of a {saved.get('net')!r} net of size {saved.get('size')!r}; "
                f"this run asks for a {config.net!r} net of size {config.size!r}."
            )
        there = saved  # the checkpoint is the truth if run.json and it ever disagree
    diff = _differences(identity(there), identity(resolved))
    if diff:
        raise DojoConfigError(
            f"out={config.out!r} holds another run ({'; '.join(diff[:3])}"
            f"{f'; and {len(diff) - 3} more' if len(diff) > 3 else ''}); choose another --out."
        )
    if ckpt.exists():
        if not config.resume:
            raise DojoConfigError(
                f"out={config.out!r} holds this run already (checkpoint at step "
                f"{_checkpoint_step(ckpt)}); pass --resume to continue it or choose another --out."
            )
        return ckpt
    return None  # the same run, stopped before its first checkpoint: start it again


def _checkpoint_payload(path: Path) -> dict[str, Any]:
    from dojo.train.state import load_checkpoint  # imports torch: only when there is one to read

    return load_checkpoint(path)


def _checkpoint_config(path: Path) -> dict[str, Any]:
    config: dict[str, Any] = _checkpoint_payload(path)["train"]["config"]
    return config


def _checkpoint_step(path: Path) -> int:
    return int(_checkpoint_payload(path)["train"]["step"])


def prepare(
    config: TrainConfig, env: DistEnv | None = None, launching: int | None = None
) -> Prepared:
    """Check ``config`` against the machine, the dataset and the output folder; nothing is written.

    ``env``: this process's place in a torchrun launch (read from the environment by default).
    ``launching``: the process count ``--nproc`` is about to start (the launcher's check).
    """
    from dojo.data.datasets import load_dataset
    from dojo.data.loader import WindowDataset
    from dojo.nets.occupancy import OccupancyConfig
    from dojo.nets.policy import PolicyConfig
    from dojo.world.occupancy import CLASS_NAMES

    if not isinstance(config, TrainConfig):
        raise DojoConfigError(f"prepare() needs a TrainConfig; got {type(config).__name__}.")
    env = DistEnv.from_environ() if env is None else env
    device = resolve_device(config)
    world = _check_processes(config, env, device, launching)
    micro = config.micro_batch(world)
    store = Path(config.store)
    if not store.is_dir():
        raise DojoConfigError(f"store={config.store!r} is not a clip store folder.")
    ds = load_dataset(store, config.dataset)
    train, val = ds.split("train"), ds.split("val")
    if not train:
        raise DojoConfigError(f"Dataset {ds.ref} is empty: it has no train windows.")
    data = WindowDataset(
        store,
        train,
        frames=config.frames,
        stride=config.stride,
        shuffle=True,
        buffer_windows=config.buffer_windows,
        seed=config.seed,
        occupancy=False,
        labels=config.labels,
        rank=0,
        world_size=world,
    )
    if data.rig is None or data.num_windows == 0:
        unlabelled = (
            f" with a complete auto-label ({data.unlabelled_windows} have none)"
            if config.labels == "autolabel"
            else ""
        )
        raise DojoConfigError(
            f"Dataset {ds.ref} is empty: its train split yields no {config.frames}-frame "
            f"windows{unlabelled}."
        )
    steps = steps_per_epoch(data, world, config.num_workers, micro, config.grad_accum, epoch=0)
    if steps == 0:
        raise DojoConfigError(
            f"Dataset {ds.ref} has {data.num_windows} train windows, too few for one step of "
            f"batch_size={config.batch_size} over {world} processes; lower --batch-size."
        )
    rig = data.rig
    policy = PolicyConfig(
        size=config.size,
        cameras=len(rig.cameras),
        frames=config.frames,
        height=rig.height_px,
        width=rig.width_px,
        rgb=rig.rgb,
    )
    net = policy.to_dict()
    if config.net != "policy":
        rows, cols = data.occupancy_shape
        if rows * cols == 0:
            raise DojoConfigError(
                f"net={config.net!r} learns the occupancy grid, but dataset {ds.ref} has no occupancy "
                "labels; use net='policy' or a dataset whose drives logged them."
            )
        planner = config.labels == "autolabel" and config.net in ("both", "perception")
        net = OccupancyConfig(
            **net,
            rows=rows,
            cols=cols,
            classes=len(CLASS_NAMES),
            head=config.occupancy_head,
            planner=len(PLANNER_TARGETS) if planner else 0,
        ).to_dict()
    if config.init_from is not None:
        from dojo.nets.checkpoint import load_net_config

        start = load_net_config(config.init_from, config.net)  # a bad file names itself here
        if start != net:
            diff = ", ".join(
                f"{k} {start.get(k)!r} (run: {net.get(k)!r})"
                for k in net
                if start.get(k) != net.get(k)
            )
            raise DojoConfigError(
                f"init_from {config.init_from} is another network than this run's: {diff}."
            )
    resolved = {
        **config.to_dict(),
        "store": str(store.resolve()),
        "dataset": ds.ref,
        "dataset_hash": ds.manifest["content_hash"],
        "nproc": world,
        "net_config": net,
    }
    resume_from = _check_out(config, resolved)
    return Prepared(
        config=config,
        env=env,
        device=device,
        resolved=resolved,
        dataset_ref=ds.ref,
        dataset_hash=ds.manifest["content_hash"],
        train_entries=train,
        val_entries=val,
        net_config=net,
        resume_from=resume_from,
        micro_batch=micro,
        train_windows=data.num_windows,
    )


def steps_per_epoch(
    data: Any, world: int, num_workers: int, micro: int, grad_accum: int, epoch: int
) -> int:
    """Optimizer steps every process can take in ``epoch``: the same number on all of them.

    Each process reads ``max(1, num_workers)`` shards (one per DataLoader worker); a shard's last
    micro-batch may be short and is skipped, so a process has ``sum(shard // micro)`` full
    micro-batches. The epoch ends for everyone when the poorest process runs out; the rest of
    the others' shards is not used in that epoch (each epoch deals clips to shards anew).
    """
    workers = max(1, num_workers)
    counts = data.windows_per_shard(world * workers, epoch)
    full = [sum(n // micro for n in counts[r * workers : (r + 1) * workers]) for r in range(world)]
    return min(full) // grad_accum


__all__ = [
    "CHECKPOINT_FILE",
    "DistEnv",
    "Prepared",
    "RUN_FILE",
    "TrainConfig",
    "identity",
    "prepare",
    "resolve_device",
    "steps_per_epoch",
]
