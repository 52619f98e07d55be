"""A defect classifier trained as a Dojo `script` job (or on a laptop: the same file).

    torchrun --standalone --nproc-per-node 2 train.py --epochs 8     # what the agent runs

Reads ``DOJO_DATA_DIR/{ok,defect}/*.png``, trains a small convolutional net with
DistributedDataParallel (gloo, CPU), reports loss and held-out accuracy through
``dojo.client.report``, checkpoints every epoch and on SIGTERM (a preemption) into
``DOJO_CHECKPOINT_DIR``, resumes from there when started again, and leaves the model in
``DOJO_OUTPUT_DIR/defects.pt``.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn

import dojo.client as dojo

STOP = False  # set by SIGTERM: checkpoint at the next step and leave


def _on_sigterm(_sig: int, _frame: object) -> None:
    global STOP
    STOP = True


def load(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, 64, 64], standardised, and labels [N] (1 = defect), in a fixed order."""
    xs, ys = [], []
    for label, name in enumerate(("ok", "defect")):
        for path in sorted((root / name).glob("*.png")):
            xs.append(np.asarray(Image.open(path), dtype=np.float32) / 255.0)
            ys.append(label)
    if not xs:
        raise SystemExit(f"no images under {root}/ok or {root}/defect")
    x = torch.from_numpy(np.stack(xs))[:, None]
    # each image to zero mean, unit spread: the lighting varies far more than a defect darkens
    x = (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True)
    return x, torch.tensor(ys)


def net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32x32
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16x16
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
        nn.Flatten(), nn.Linear(32, 2),
    )  # fmt: skip


@torch.no_grad()
def accuracy_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=32, help="per process")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--data", default=None, help="image folder (default: DOJO_DATA_DIR)")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    torch.set_num_threads(1)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("gloo")
    rank, world = dojo.rank(), int(os.environ.get("WORLD_SIZE", "1"))

    data = Path(args.data) if args.data else dojo.data_dir()
    if data is None:
        raise SystemExit("no data: give --data or run with a dataset")
    x, y = load(data)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    held = order[: len(y) // 5]  # a fixed fifth held out for accuracy
    train = order[len(y) // 5 :]

    torch.manual_seed(0)  # the same initial weights on every rank
    model = net()
    ddp = nn.parallel.DistributedDataParallel(model) if distributed else model
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    ckpt = dojo.checkpoint_dir() / "last.pt"
    epoch, step = 0, 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        epoch, step = state["epoch"], state["step"]
        print(f"rank {rank}: resumed from {ckpt.name} at epoch {epoch}, step {step}", flush=True)

    def save() -> None:
        if rank == 0:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "epoch": epoch, "step": step}, tmp)  # fmt: skip
            os.replace(tmp, ckpt)  # a kill mid-save leaves the last checkpoint whole

    while epoch < args.epochs:
        perm = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch))]
        mine = perm[rank::world]  # this rank's share of the epoch
        batches = len(perm) // (args.batch * world)
        for b in range(batches):
            idx = mine[b * args.batch : (b + 1) * args.batch]
            loss = nn.functional.cross_entropy(ddp(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            dojo.report(step=step, loss=loss.item())
            stop = torch.tensor([float(STOP)])
            if distributed:  # every rank stops at the same step, or the next all-reduce hangs
                dist.all_reduce(stop)
            if stop.item() > 0:
                save()  # mid-epoch: this epoch restarts on resume, from these weights
                print(f"rank {rank}: SIGTERM at step {step}; checkpointed", flush=True)
                raise SystemExit(143)
        epoch += 1
        dojo.report(step=step, accuracy=accuracy_on(model, x[held], y[held]), epoch=epoch)
        save()
    accuracy = accuracy_on(model, x[held], y[held])
    if rank == 0:
        torch.save(model.state_dict(), dojo.output_dir() / "defects.pt")
        print(f"done: held-out accuracy {accuracy:.3f} after {epoch} epochs", flush=True)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
