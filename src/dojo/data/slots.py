"""Batch memory shared with DataLoader workers and used again once the trainer lets a batch go.

torch's DataLoader gives every batch a worker builds a fresh shared-memory segment: the worker
faults its pages in as it writes them and the trainer's process maps the segment anew and
faults them in again as it reads (about 3 us a 4 KiB page on the 2-core dev machine: a batch of
a megabyte and a half costs a millisecond on each side). Here each worker has a few *slots*:
shared storages it writes batches into, handed back to it through a small shared table of
flags once nothing in the trainer's process holds the batch any more (a storage's use count,
as :mod:`dojo.data.buffers` reads it). The trainer's process keeps each slot's storage, so torch
maps it once; the worker keeps its pages. A worker with no free slot (the trainer keeps many
batches) writes into fresh memory instead, as torch does: nothing waits and nothing held is
ever written over.

Protocol, per worker row of the flags table (int32, shared): 0 free, 1 lent. Only the worker
sets 1 (before it fills the slot and sends the batch) and only the trainer's process sets 0
(after it received the batch and nothing holds it any more), so the two never race.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dojo.data.buffers import held_elsewhere, nbytes_for, new_storage, views

FREE, LENT = 0, 1
SLOT_KEY = "_slot"  # the batch field naming its (worker, slot); -1 slot: fresh memory


class SlotRing:
    """The trainer's side: ``workers`` x ``slots`` flags, the slots' storages, and which are lent.

    ``keep``: keep each slot's storage once received, so a worker can send a batch in a slot
    it sent before as a few numbers (no file descriptor passed, nothing mapped again: that
    costs nearly a millisecond a batch here); off when DataLoader's pin_memory copies every
    batch before this side sees it.
    """

    def __init__(self, workers: int, slots: int, keep: bool = True) -> None:
        self.flags = torch.zeros((workers, slots), dtype=torch.int32).share_memory_()
        self.keep = keep
        self._flags = self.flags.numpy()
        self.storages: dict[tuple[int, int], torch.UntypedStorage] = {}
        self.lent: set[tuple[int, int]] = set()

    def received(self, batch: dict[str, Any], big: Sequence[str]) -> None:
        """Take the slot key off a batch from a worker, and put back the big fields it left out.

        ``big``: the names of the tensors the worker asked its slot for, in the order it asked.
        """
        worker, slot, left_out = batch.pop(SLOT_KEY)
        if slot < 0:
            return
        key = (int(worker), int(slot))
        if left_out is not None:  # sent before: the same storage, kept here
            shapes, present = left_out
            for name, view, there in zip(
                big, views(self.storages[key], shapes), present, strict=True
            ):
                if there:
                    batch[name] = view
        tensors = [batch[k] for k in big if k in batch]
        if not self.keep or any(t.is_pinned() for t in tensors):
            self._flags[key] = FREE  # copied already: the slot holds nothing the trainer reads
            return
        self.storages[key] = tensors[0].untyped_storage()
        self.lent.add(key)

    def release_idle(self) -> None:
        """Hand back to their workers the slots of batches nothing holds any more."""
        for key in [k for k in self.lent if not held_elsewhere(self.storages[k])]:
            self.lent.discard(key)
            self._flags[key] = FREE


class WorkerSlots:
    """A worker's side: its row of flags and the storages of its slots (made as first needed)."""

    def __init__(self, ring: SlotRing, worker: int, headroom: float = 0.125) -> None:
        self.worker, self.headroom, self.keep = worker, headroom, ring.keep
        self._flags: np.ndarray = ring.flags[worker].numpy()
        self.storages: list[torch.UntypedStorage | None] = [None] * len(self._flags)
        self.sent: set[int] = set()  # slots whose storage the trainer's side holds
        self.last = -1  # the slot of the last batch, -1: fresh memory
        self.last_shapes: list[tuple[int, ...]] = []

    def tensors(self, shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
        """uint8 tensors of ``shapes`` in a free slot (now lent), or in fresh shared memory."""
        nbytes = nbytes_for(shapes)
        free = np.flatnonzero(self._flags == FREE)
        if len(free) == 0:
            self.last = -1
            return views(new_storage(nbytes, shared=True), shapes)
        slot = int(free[0])
        storage = self.storages[slot]
        if storage is None or storage.nbytes() < nbytes:
            storage = self.storages[slot] = new_storage(
                int(nbytes * (1 + self.headroom)), shared=True
            )
            self.sent.discard(slot)
        self._flags[slot] = LENT
        self.last, self.last_shapes = slot, list(shapes)
        return views(storage, shapes)

    def stamp(self, batch: dict[str, Any], big: Sequence[str]) -> None:
        """Mark a batch built in the last :meth:`tensors` with its slot; leave out what the trainer's side has.

        ``big``: the names of the tensors asked for in that call, in its order (a batch may
        leave some out, as one without labels does).
        """
        slot, left_out = self.last, None
        if slot >= 0 and self.keep:
            if slot in self.sent:
                present = [batch.pop(k, None) is not None for k in big]
                left_out = (self.last_shapes, present)
            self.sent.add(slot)
        batch[SLOT_KEY] = (self.worker, slot, left_out)


class FreshShared:
    """Fresh shared memory for every batch (what torch's own collate does in a worker)."""

    def tensors(self, shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
        return views(new_storage(nbytes_for(shapes), shared=True), shapes)


__all__ = ["SLOT_KEY", "FreshShared", "SlotRing", "WorkerSlots"]
