"""Batches for PyTorch: collation, the DataLoader wrapper that keeps the position, make_loader.

Workers build whole batches in place (:meth:`~dojo.data.loader.WindowDataset.iter_batches`), in
slots of shared memory the trainer's process hands back once it lets a batch go
(:mod:`dojo.data.slots`); :class:`WindowLoader` records each batch it hands over.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from dojo.data.buffers import reusable
from dojo.data.loader.dataset import _BIG_FIELDS, WindowDataset, _batch_memory
from dojo.data.slots import SlotRing, WorkerSlots
from dojo.errors import ConfigError
from dojo.validate import flag, whole

_NUMPY_STACK_BYTES = 1 << 16  # a field this large stacks faster through numpy than torch


def collate_windows(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack windows into a batch: tensors (B, ...), numbers a tensor (B,), strings a list.

    Like torch's default_collate for these dicts, but stacks through numpy, which measured
    faster for the many small uint8 images of a batch on CPU.
    """
    if not samples:
        raise ConfigError("collate_windows() got an empty batch.")
    out: dict[str, Any] = {}
    for key, first in samples[0].items():
        values = [s[key] for s in samples]
        if isinstance(first, torch.Tensor):
            if first.numel() * first.element_size() * len(values) < _NUMPY_STACK_BYTES:
                out[key] = torch.stack(
                    values
                )  # (B, ...) a few hundred bytes: torch's stack is quicker
            else:  # images, grids: numpy's stack is quicker for many large uint8 arrays
                out[key] = torch.from_numpy(np.stack([v.numpy() for v in values]))
        elif isinstance(first, str):
            out[key] = values
        else:
            out[key] = torch.from_numpy(
                np.array(values, dtype=np.float64 if isinstance(first, float) else np.int64)
            )
    return out


class _Batches(IterableDataset[dict[str, Any]]):
    """A :class:`WindowDataset` read ``batch_size`` windows at a time, for a DataLoader without auto-batching.

    Each DataLoader worker reads its own shard and yields the batches the DataLoader would have
    collated from that shard's windows (partial last batch included, unless ``drop_last``), so the
    sequence of batches, and with it the saved position, is the same as batching windows.
    """

    def __init__(self, dataset: WindowDataset, batch_size: int, drop_last: bool) -> None:
        super().__init__()
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.slots: SlotRing | None = None  # set by WindowLoader for each pass with workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        data = self.dataset
        shard, shards, start, _ = (
            data._place()
        )  # WindowLoader records each batch as it hands it over
        memory = _batch_memory(self.slots)
        for batch in data._batches(self.batch_size, shard, shards, start, memory):
            if self.drop_last and len(batch["clip_id"]) < self.batch_size:
                return
            if isinstance(memory, WorkerSlots):
                memory.stamp(batch, _BIG_FIELDS)
            yield batch


def _as_is(batch: Any) -> Any:
    """The DataLoader's per-item hook: batches are already built (small fields stay numpy to cross cheaply)."""
    return batch


class _WorkerInit:
    """A loader worker ignores SIGTERM, then runs the user's ``worker_init_fn``.

    A stop signal sent to the whole process group (a scheduler preempting a training job)
    would otherwise kill the workers under a trainer that is finishing its step to checkpoint;
    the trainer's loader stops them itself, and they exit on their own if it dies.
    """

    def __init__(self, then: Any) -> None:
        self.then = then

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.then is not None:
            self.then(worker_id)


class WindowLoader:
    """Batches of a :class:`WindowDataset` through a DataLoader, its position kept as they come.

    Iterating yields dicts of tensors (strings as lists) and records each batch with
    :meth:`WindowDataset.observe` as it is handed over, so ``dataset.state_dict()`` is the
    position after the last batch taken, with or without workers. The batches are what a
    DataLoader of ``batch_size`` over the windows with :func:`collate_windows` gives, built
    without a per-window detour (:meth:`WindowDataset.iter_batches`).
    """

    def __init__(
        self, dataset: WindowDataset, batch_size: int = 32, num_workers: int = 0, **options: Any
    ) -> None:
        if not isinstance(dataset, WindowDataset):
            raise ConfigError(f"WindowLoader needs a WindowDataset; got {type(dataset).__name__}.")
        batch_size = whole("batch_size", batch_size, 1)
        num_workers = whole("num_workers", num_workers, 0)
        if options.get("persistent_workers"):
            raise ConfigError(
                "persistent_workers=True would keep workers on their first epoch and position; leave it off."
            )
        for taken in ("collate_fn", "sampler", "batch_sampler"):
            if taken in options:
                raise ConfigError(
                    f"WindowLoader builds its own batches; {taken}= is not an option of it."
                )
        drop_last = flag("drop_last", options.pop("drop_last", False))
        self.dataset = dataset
        self.batch_size, self.num_workers = batch_size, num_workers
        if num_workers:
            options["worker_init_fn"] = _WorkerInit(options.get("worker_init_fn"))
        self.prefetch_factor = int(
            options.get("prefetch_factor") or 2
        )  # batches a worker has in flight
        self.pin_memory = bool(options.get("pin_memory"))
        self._batches = _Batches(dataset, batch_size, drop_last)
        self.loader: DataLoader[Any] = DataLoader(
            self._batches, batch_size=None, num_workers=num_workers, collate_fn=_as_is, **options
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # workers write batches into slots handed back once a batch is let go (see dojo.data.slots)
        slots = None
        if self.num_workers and reusable():
            slots = SlotRing(self.num_workers, self.prefetch_factor + 3, keep=not self.pin_memory)
        self._batches.slots = slots  # the workers start (and take their copy) in iter(self.loader)
        try:
            for batch in self.loader:
                if slots is not None:
                    slots.received(batch, _BIG_FIELDS)
                    slots.release_idle()
                # a batch is one shard's windows in order (see _Batches): its last one says where it stands
                shard, position = batch["shard"], batch["position"]
                if len(position):
                    self.dataset._record(
                        int(batch["shards"][0]), [int(shard[-1])], [int(position[-1])]
                    )
                yield {
                    k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                    for k, v in batch.items()
                }
        finally:
            self._batches.slots = None


def make_loader(
    dataset: WindowDataset, batch_size: int = 32, num_workers: int = 0, **options: Any
) -> WindowLoader:
    """A :class:`WindowLoader`; ``options`` go to torch's DataLoader (``pin_memory``, ...).

    Workers copy the dataset when each epoch's iteration starts, which is how
    :meth:`WindowDataset.set_epoch` and a loaded position reach them (so no persistent workers).
    """
    return WindowLoader(dataset, batch_size=batch_size, num_workers=num_workers, **options)
