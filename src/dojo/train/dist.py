"""Process-level set-up of a training run: the process group, determinism, seeds."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist

from dojo.train.config import DistEnv


@contextlib.contextmanager
def process_group(env: DistEnv, device: str) -> Iterator[None]:
    """Join torchrun's process group (gloo on CPU, NCCL on CUDA) for the duration, if launched so."""
    if not env.distributed:
        yield
        return
    if device == "cuda":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def deterministic(on: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the duration, when ``on``."""
    before = torch.are_deterministic_algorithms_enabled()
    if on:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's global and torch's generators (library code may use any)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the global generator, for any library code that uses it)
    torch.manual_seed(seed)


__all__ = ["deterministic", "process_group", "seed_everything"]
