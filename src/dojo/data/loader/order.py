"""An epoch's order: the shuffle buffer's emit order, and this process's place in DDP.

Clips are shuffled (seed, epoch) and dealt round robin to the shards
(:meth:`~dojo.data.loader.WindowDataset.shard_order`); within a shard, windows pass through a
bounded shuffle buffer whose whole order is worked out before anything is decoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _emit_order(
    counts: Sequence[int], buffer_windows: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """(clip, window) in the order a shuffle buffer of ``buffer_windows`` emits the windows.

    Windows enter clip by clip; once the buffer is full each new one takes the place of a
    uniformly drawn one, which leaves; at the end the rest leave in random order. Only ids move,
    so a shard's whole order costs a fraction of a microsecond a window to work out.
    """
    out: list[tuple[int, int]] = []
    if buffer_windows <= 1:
        return [(c, w) for c, n in enumerate(counts) for w in range(n)]
    total = int(sum(counts))
    draws = rng.integers(0, buffer_windows, size=max(total - buffer_windows, 0)).tolist()
    buf: list[tuple[int, int]] = []
    d = 0
    for c, n in enumerate(counts):
        for w in range(n):
            if len(buf) < buffer_windows:
                buf.append((c, w))
                continue
            i = draws[d]
            d += 1
            out.append(buf[i])
            buf[i] = (c, w)
    out.extend(buf[i] for i in rng.permutation(len(buf)).tolist())
    return out


def _resolve_dist(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
