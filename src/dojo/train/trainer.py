"""The trainer: imitation learning of the driving policy and learning of the occupancy grid,
on one process or many (torchrun, DDP).

>>> summary = train(TrainConfig(dataset="hard_cases", store="store", out="runs/a", steps=500))

What one optimizer step is, for W processes and A accumulation micro-batches::

    every process r:  A micro-batches of b = batch_size / (W * A) windows from its own shard
                      loss_i = smooth L1 of (prediction - target) / scale, mean over (b, 2)
                      backward(loss_i / A), gradients all-reduced (averaged) only on the last
    then              clip the global gradient norm, AdamW step, LR schedule step

Averaging W equal-sized shards' mean gradients is the mean gradient of the global batch, so
the update does not depend on W or A (up to float summation order); the test compares a
2-process run with one process fed the same global batches.

Losses and the schedule are in :mod:`dojo.train.loss`; the process group in
:mod:`dojo.train.dist`.

Epochs and lockstep: each process reads its own shards of the train split (the loader deals
whole clips to shards), so processes hold different numbers of windows. An epoch here is
``steps_per_epoch`` steps, the same for every process (the poorest process's full
micro-batches); then every process moves to the next epoch together (``set_epoch``: a new
shuffle, a new deal of clips). No process ever waits in a collective for another that ran out
of data, and within an epoch no window is used twice. The leftover windows of richer shards
are not used in that epoch (like DistributedSampler's drop_last, but decided by the data).

Resume: the checkpoint (see :mod:`dojo.train.state`) holds the weights, AdamW and schedule
state, the step and epoch, every process's random states and the loader's position; a resumed
run reads the same windows in the same order and computes the same losses as one that never
stopped (bit for bit on CPU in the test).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dojo.data.loader import WindowDataset, WindowLoader, make_loader, merge_states
from dojo.errors import DojoConfigError, TrainingDivergedError
from dojo.nets.checkpoint import save_policy
from dojo.nets.occupancy import MultiTaskNet, make_net
from dojo.nets.policy import DrivingPolicy, parameter_count
from dojo.train import heads
from dojo.train.config import (
    CHECKPOINT_FILE,
    RUN_FILE,
    Prepared,
    TrainConfig,
    prepare,
    steps_per_epoch,
)
from dojo.train.dist import deterministic, process_group, seed_everything
from dojo.train.loss import (
    ACCEL_SCALE_MPS2,
    LANE_SHIFT_SCALE,
    lr_factor,
    occupancy_loss_for,
    policy_loss,
)
from dojo.train.metrics import JsonLines, Metrics, truncate_jsonl
from dojo.train.state import (
    build_payload,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from dojo.train.validation import validate
from dojo.validate import whole


class Trainer:
    """One process's share of a run: model, optimizer, data; :meth:`fit` runs it to the end.

    Building it writes nothing; :meth:`step` is one optimizer step over given micro-batches
    (the loop's unit, public so a test can feed a single process the exact global batches of
    a multi-process run).
    """

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        cfg = self.config = prepared.config
        env = self.env = prepared.env
        self.rank, self.world = env.rank, env.world_size
        self.device = torch.device(f"cuda:{env.local_rank}" if prepared.device == "cuda" else "cpu")
        self.out = Path(cfg.out)
        self.micro = prepared.micro_batch
        self.term_requested = (
            False  # set by SIGTERM (a preemption): stop after this step, checkpointed
        )
        self.stop_now = False  # some process was asked to stop: every process stops after this step
        seed_everything(cfg.seed)  # the same initial weights on every process
        self.model = make_net(cfg.net, prepared.net_config).to(self.device)
        if cfg.init_from is not None:  # fine-tuning; a resume then overwrites these with its own
            from dojo.nets.checkpoint import load_net

            self.model.load_state_dict(load_net(cfg.init_from, cfg.net).state_dict())
        # read the occupancy labels (and has_occupancy) and compute that head
        self.grids = heads.trains_occupancy(cfg.net, cfg.occupancy_weight)
        self.planner = heads.has_planner(prepared.net_config)  # read the planner targets
        self.occupancy_loss = occupancy_loss_for(cfg)  # (logits, target, labelled[, reduction])
        self.ddp: DistributedDataParallel | None = None
        forward: nn.Module = self.model
        if env.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # a perception net trained without its occupancy decoder leaves those weights unused
            unused = cfg.net == "perception" and not self.grids
            self.ddp = DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=unused
            )
            forward = self.ddp
        self.forward: Any = torch.compile(forward) if cfg.compile else forward
        decay = [p for p in self.model.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.ndim < 2]  # biases, norms
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
        )
        steps, warm, sched, floor = (
            cfg.steps,
            int(cfg.warmup_steps or 0),
            cfg.schedule,
            cfg.min_lr_ratio,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, steps, warm, sched, floor)
        )
        self.data = WindowDataset(
            cfg.store,
            prepared.train_entries,
            frames=cfg.frames,
            stride=cfg.stride,
            shuffle=True,
            buffer_windows=cfg.buffer_windows,
            seed=cfg.seed,
            occupancy=self.grids,
            labels=cfg.labels,
            rank=self.rank,
            world_size=self.world,
        )
        pin = self.device.type == "cuda"
        self.loader: WindowLoader = make_loader(
            self.data, batch_size=self.micro, num_workers=cfg.num_workers, pin_memory=pin
        )
        self.val_data: WindowDataset | None = None
        self.val_loader: WindowLoader | None = None
        if prepared.val_entries:
            self.val_data = WindowDataset(
                cfg.store,
                prepared.val_entries,
                frames=cfg.frames,
                stride=cfg.stride,
                shuffle=False,
                seed=cfg.seed,
                occupancy=self.grids,
                labels=cfg.labels,
                rank=self.rank,
                world_size=self.world,
            )
            if self.val_data.num_windows:
                self.val_loader = make_loader(
                    self.val_data,
                    batch_size=self.micro,
                    num_workers=cfg.num_workers,
                    pin_memory=pin,
                )
        self.step_count = 0  # optimizer steps done
        self.epoch = 0
        self.step_in_epoch = 0

    # ------------------------------------------------------------------------ one step
    def _to_device(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return heads.to_device(batch, self.device, self.grids, self.planner)

    def _predict(self, net: Any, x: Mapping[str, torch.Tensor]) -> heads.Outputs:
        """The outputs of ``net`` (this run's kind) on ``x``, in fp32 (see :mod:`dojo.train.heads`)."""
        return heads.predict(net, self.config.net, x, self._autocast(), occupancy=self.grids)

    def _loss(self, out: heads.Outputs, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of one micro-batch: the heads' losses, weighted."""
        cfg = self.config
        return heads.loss(
            out,
            x,
            self.occupancy_loss,
            cfg.occupancy_weight,
            cfg.planner_weight,
            cfg.hazard_weight,
            cfg.underbrake_weight,
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.precision == "bf16":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, micro_batches: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
        """One optimizer step over ``micro_batches``; returns (loss, gradient norm before clipping).

        The loss is the mean of the micro-batches' losses, averaged over processes when
        distributed (so every process returns the global batch's loss).
        """
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        n = len(micro_batches)
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(micro_batches):
            last = i == n - 1
            sync = (
                self.ddp.no_sync()
                if self.ddp is not None and not last
                else contextlib.nullcontext()
            )
            x = self._to_device(batch)
            with sync:
                loss = self._loss(self._predict(self.forward, x), x)
                (loss / n).backward()
            total += loss.detach()
        limit = self.config.clip_grad_norm if self.config.clip_grad_norm > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit)
        self.optimizer.step()
        self.scheduler.step()
        mean = total / n
        if self.env.distributed:
            # the loss for the record (DDP averaged the gradients already) and, in the same
            # collective, whether any process was told to stop: all of them stop at this step
            both = torch.stack([mean, torch.tensor(float(self.term_requested), device=self.device)])
            dist.all_reduce(both)
            mean = both[0] / self.world
            self.stop_now = bool(both[1] > 0)
        else:
            self.stop_now = self.term_requested
        return float(mean), float(grad_norm)

    def _next_full(self, batches: Iterator[dict[str, Any]]) -> dict[str, Any]:
        """The next micro-batch of exactly ``micro`` windows (a shard's short last one is skipped)."""
        for batch in batches:
            if len(batch["clip_id"]) == self.micro:
                return batch
        raise RuntimeError(  # steps_per_epoch guarantees enough full micro-batches: a bug if not
            f"process {self.rank} ran out of windows in epoch {self.epoch} at step {self.step_in_epoch}."
        )

    # ---------------------------------------------------------------------- validation
    def evaluate(self) -> dict[str, Any] | None:
        """Validation over the val split, all processes (see :func:`dojo.train.validation.validate`)."""
        return validate(self)

    # ---------------------------------------------------------------------- checkpoints
    def save(self, last_loss: float) -> Path | None:
        """Gather every process's data position and RNG state; rank 0 writes the checkpoint."""
        mine = (self.data.state_dict(), rng_state())
        if self.env.distributed:
            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, mine)
        else:
            gathered = [mine]
        path = None
        if self.rank == 0:
            p = self.prepared
            train = {
                "config": p.resolved,
                "step": self.step_count,
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": [g[1] for g in gathered],
                "data": merge_states([g[0] for g in gathered]),
                "dataset": p.dataset_ref,
                "dataset_hash": p.dataset_hash,
                "world_size": self.world,
            }
            extra = {
                "step": self.step_count,
                "dataset": p.dataset_ref,
                "dataset_hash": p.dataset_hash,
                "train_loss": last_loss,
            }
            payload = build_payload(
                model_state=self.model.state_dict(),
                net_config=p.net_config,
                train=train,
                extra=extra,
                kind=self.config.net,
            )
            path = save_checkpoint(self.out / CHECKPOINT_FILE, payload)
        if self.env.distributed:
            dist.barrier()  # no process goes on before the checkpoint of this step exists
        return path

    def load(self, path: Path) -> None:
        """Continue from the checkpoint at ``path`` (checked by :func:`prepare` to be this run's)."""
        payload = load_checkpoint(path)
        if payload.get("kind") != self.config.net:
            raise DojoConfigError(
                f"Checkpoint {path} holds a {payload.get('kind')!r} net; this run trains a {self.config.net!r} net."
            )
        train = payload["train"]
        if int(train["world_size"]) != self.world:
            raise DojoConfigError(
                f"Checkpoint {path} was written by {train['world_size']} processes; this run has {self.world}."
            )
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(train["optimizer"])
        self.scheduler.load_state_dict(train["scheduler"])
        self.step_count, self.epoch = int(train["step"]), int(train["epoch"])
        self.step_in_epoch = int(train["step_in_epoch"])
        self.data.load_state_dict(train["data"])
        set_rng_state(train["rng"][self.rank])

    # ---------------------------------------------------------------------------- loop
    def _start_files(self) -> None:
        """Rank 0 records the run (fresh start) or trims logs to the checkpoint (resume)."""
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.step_count == 0:
                (self.out / RUN_FILE).write_text(
                    json.dumps(self.prepared.resolved, indent=1) + "\n"
                )
                for stale in ("tb", "samples"):
                    shutil.rmtree(self.out / stale, ignore_errors=True)
        if self.env.distributed:
            dist.barrier()
        if self.config.log_samples:
            path = self.out / "samples" / f"rank{self.rank}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            truncate_jsonl(path, self.step_count)

    def _catch_sigterm(self) -> Any:
        """SIGTERM (a scheduler preempting the job, torchrun passing it on) asks for a stop after
        the current step with a checkpoint, instead of dying and losing the steps since the last
        one; returns the handler it replaced (None where signals cannot be caught: not the main
        thread)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(_signum: int, _frame: Any) -> None:
            self.term_requested = True

        return signal.signal(signal.SIGTERM, request_stop)

    def _advance_epoch(self) -> None:
        self.epoch += 1
        self.step_in_epoch = 0
        self.data.set_epoch(self.epoch)

    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``config.steps`` (or stop, checkpointed, after step ``stop_after``); a summary."""
        cfg, p = self.config, self.prepared
        if p.resume_from is not None:
            self.load(p.resume_from)
        else:
            self.data.set_epoch(0)
        start_step = self.step_count
        self._start_files()
        lead = self.rank == 0
        metrics = Metrics(self.out if lead else None, resume_step=start_step)
        samples_log = None
        if cfg.log_samples:  # which windows each step trained on, for the tests of resume and DDP
            samples_log = JsonLines(self.out / "samples" / f"rank{self.rank}.jsonl")
        notes: list[str] = []
        if self.val_loader is None:
            notes.append(f"the val split of {p.dataset_ref} is empty: validation skipped")
        if metrics.tb_kind == "dojo":
            notes.append("tensorboard is not installed: event files written by dojo's own writer")
        target = cfg.steps if stop_after is None else max(start_step, min(cfg.steps, stop_after))
        spe = steps_per_epoch(
            self.data, self.world, cfg.num_workers, self.micro, cfg.grad_accum, self.epoch
        )
        if lead and cfg.progress:
            print(
                f"train {cfg.net}/{cfg.size} ({parameter_count(self.model):,} parameters) on {p.dataset_ref}: "
                f"{p.train_windows} windows, {spe} steps of {cfg.batch_size} an epoch (uses {spe * cfg.batch_size}; "
                f"the rest of the fuller shards waits for a later deal), "
                f"{self.world} process(es) on {self.device.type}"
                + (f"; resuming at step {start_step}" if start_step else "")
                + "".join(f"; {n}" for n in notes),
                file=sys.stderr,
            )
        bar = tqdm(
            total=cfg.steps,
            initial=start_step,
            desc="train",
            unit="step",
            disable=not (lead and cfg.progress),
            leave=False,
        )
        batches: Iterator[dict[str, Any]] | None = (
            None  # started when needed (workers start with it)
        )
        loss, val, rates, waits, step_time_s = math.nan, None, [], [], 0.0
        checkpoint: Path | None = None
        started = time.perf_counter()
        previous_handler = self._catch_sigterm()
        try:
            while self.step_count < target:
                t0 = time.perf_counter()
                if batches is None:
                    batches = iter(self.loader)
                micro = [self._next_full(batches) for _ in range(cfg.grad_accum)]
                waited = time.perf_counter() - t0
                lr = self.optimizer.param_groups[0]["lr"]
                loss, grad_norm = self.step(micro)
                if not math.isfinite(loss):  # the same all-reduced value on every process: all stop
                    raise TrainingDivergedError(
                        f"Training diverged: the loss is {loss} at step {self.step_count + 1}; lower --lr "
                        f"(now {cfg.lr:g}) or keep --clip-grad-norm on.",
                        step=self.step_count + 1,
                    )
                took = time.perf_counter() - t0
                self.step_count += 1
                self.step_in_epoch += 1
                rate = cfg.batch_size / took
                step_time_s += took
                rates.append(rate)
                waits.append(waited / took)
                metrics.step(
                    {
                        "step": self.step_count,
                        "epoch": self.epoch,
                        "loss": loss,
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "samples_per_s": rate,
                        "data_wait_share": waited / took,
                        "step_s": took,
                    }
                )
                if samples_log is not None:
                    keys = [
                        [c, int(f)]
                        for b in micro
                        for c, f in zip(b["clip_id"], b["frame"].tolist(), strict=True)
                    ]
                    samples_log.write({"step": self.step_count, "epoch": self.epoch, "keys": keys})
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.0f}", refresh=False)
                if self.step_in_epoch == spe:  # every process ends the epoch at the same step
                    self._advance_epoch()
                    spe = steps_per_epoch(
                        self.data,
                        self.world,
                        cfg.num_workers,
                        self.micro,
                        cfg.grad_accum,
                        self.epoch,
                    )
                    batches = None
                done = self.step_count == target
                if (
                    cfg.val_every and self.step_count % cfg.val_every == 0
                ) or self.step_count == cfg.steps:
                    val = self.evaluate()
                    if val is not None:
                        metrics.validation(
                            self.step_count,
                            val["val_loss"],
                            val["val_windows"],
                            {k: v for k, v in val.items() if k not in ("val_loss", "val_windows")},
                        )
                if (
                    (cfg.checkpoint_every and self.step_count % cfg.checkpoint_every == 0)
                    or done
                    or self.stop_now
                ):
                    checkpoint = self.save(loss)
                if self.stop_now and not done:
                    if lead and cfg.progress:
                        print(
                            f"\nstopped by SIGTERM after step {self.step_count}, checkpointed; continue with "
                            "--resume",
                            file=sys.stderr,
                        )
                    break
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
            bar.close()
            metrics.close()
            if samples_log is not None:
                samples_log.close()
        wall = time.perf_counter() - started
        if self.step_count == start_step and lead:
            checkpoint = (
                self.out / CHECKPOINT_FILE if (self.out / CHECKPOINT_FILE).exists() else None
            )
        summary = {
            "run": str(self.out),
            "init_from": cfg.init_from,
            "dataset": p.dataset_ref,
            "dataset_hash": p.dataset_hash,
            "net": cfg.net,
            "size": cfg.size,
            "parameters": parameter_count(self.model),
            "world_size": self.world,
            "device": self.device.type,
            "steps": self.step_count,
            "steps_this_run": self.step_count - start_step,
            "finished": self.step_count >= cfg.steps,
            "stopped_by_signal": self.stop_now and self.step_count < cfg.steps,
            "epoch": self.epoch,
            "labels": cfg.labels,
            "train_windows_unlabelled": self.data.unlabelled_windows,  # no complete auto-label
            "loss": loss,
            "val_loss": None if val is None else val["val_loss"],
            "val_iou": None if val is None else val.get("val_iou"),
            **{k: v for k, v in (val or {}).items() if k.startswith(("val_iou_", "val_prior"))},
            **{k: v for k, v in (val or {}).items() if k.startswith("val_planner_")},
            "samples_per_s": float(np.median(rates[1:] or rates))
            if rates
            else math.nan,  # the first step warms up
            "samples_per_s_overall": (len(rates) * cfg.batch_size / step_time_s)
            if rates
            else math.nan,
            "data_wait_share": float(np.median(waits[1:] or waits)) if waits else math.nan,
            "wall_s": wall,
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "notes": notes,
        }
        if lead:
            driving = self.model.policy if isinstance(self.model, MultiTaskNet) else self.model
            if summary["finished"] and isinstance(
                driving, DrivingPolicy
            ):  # the occupancy net has no policy
                policy = save_policy(
                    self.out / "policy.pt",
                    driving,
                    extra={
                        "step": self.step_count,
                        "dataset": p.dataset_ref,
                        "dataset_hash": p.dataset_hash,
                    },
                )
                summary["policy"] = str(policy)
            (self.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        return summary


def train(config: TrainConfig, *, stop_after: int | None = None) -> dict[str, Any]:
    """Run (or resume) the training ``config`` describes; the summary of this process.

    Everything is checked (:func:`dojo.train.config.prepare`) before the process group is
    joined. Under torchrun every process calls this; on one process it trains alone.
    ``stop_after``: stop after this step with a checkpoint, as a preemption would (the run
    is then continued with ``resume=True``).
    """
    if stop_after is not None:
        stop_after = whole("stop_after", stop_after, 1)
    prepared = prepare(config)
    with deterministic(config.deterministic), process_group(prepared.env, prepared.device):
        if prepared.env.distributed and prepared.device == "cpu":
            cores = os.cpu_count() or 1
            torch.set_num_threads(max(1, cores // prepared.env.local_world_size))
        return Trainer(prepared).fit(stop_after=stop_after)


__all__ = [
    "ACCEL_SCALE_MPS2",
    "LANE_SHIFT_SCALE",
    "Trainer",
    "lr_factor",
    "policy_loss",
    "process_group",
    "train",
]
