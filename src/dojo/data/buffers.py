"""Reusable uint8 memory for the loader: a buffer is handed out again once nothing else holds it.

A fresh buffer of a megabyte costs hundreds of page faults (about 3 us each on the 2-core dev
machine) before it holds anything; the loader asks for one per clip it decodes and one per
batch it builds. :class:`BufferPool` keeps a few torch storages and reuses one only when its
use count says that no tensor, view or numpy array made from it is alive any more (a batch the
trainer still holds, a window waiting in the shuffle buffer), so reuse can never overwrite data
someone can still read. Where this torch has no use count, every request gets fresh memory.

Within one process only: a storage sent to another process is held there without this
process knowing, so a DataLoader worker's batches need the handshake of :mod:`dojo.data.slots`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_ALIGN = 64  # [bytes] each tensor of a request starts on a cache line
_use_count = getattr(torch._C, "_storage_Use_Count", None)


def reusable() -> bool:
    """Whether this torch tells how many hold a storage (without it, nothing is reused)."""
    return _use_count is not None


def held_elsewhere(storage: torch.UntypedStorage) -> bool:
    """Whether anything other than the caller's one reference holds ``storage``."""
    return _use_count is None or _use_count(storage._cdata) > 1


def _layout(shapes: Sequence[tuple[int, ...]]) -> tuple[list[int], int]:
    """(byte offset of each shape's tensor, total bytes) for uint8 tensors laid out one after another."""
    offsets, end = [], 0
    for shape in shapes:
        offsets.append(end)
        end += -(-max(math.prod(shape), 1) // _ALIGN) * _ALIGN
    return offsets, end


def nbytes_for(shapes: Sequence[tuple[int, ...]]) -> int:
    """Bytes of storage that :func:`views` of ``shapes`` take."""
    return _layout(shapes)[1]


def views(storage: torch.UntypedStorage, shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
    """uint8 tensors of ``shapes`` laid out one after another in ``storage``."""
    offsets, _ = _layout(shapes)
    return [
        torch.empty(0, dtype=torch.uint8).set_(storage, at, shape, _strides(shape))
        for at, shape in zip(offsets, shapes, strict=True)
    ]


def _strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a C-contiguous tensor of ``shape``."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def new_storage(nbytes: int, shared: bool) -> torch.UntypedStorage:
    """Uninitialised storage of ``nbytes``; in shared memory when ``shared`` (what crosses from a
    DataLoader worker as a handle instead of a copy, as torch's own collate does)."""
    return (
        torch.UntypedStorage._new_shared(max(nbytes, 1))
        if shared
        else torch.UntypedStorage(max(nbytes, 1))
    )


class BufferPool:
    """Storages lent out again once nothing holds what was made of them.

    The pool remembers every storage it lent that is still held, and keeps at most ``spare``
    idle ones besides, so it never holds more than that many buffers beyond what is in use.
    ``headroom``: a new storage is this much larger than asked (0.125: an eighth), so the next
    request of a slightly larger size can use it too.
    """

    def __init__(self, spare: int = 2, headroom: float = 0.125) -> None:
        self.spare, self.headroom = spare, headroom
        self.storages: list[torch.UntypedStorage] = []

    def tensors(self, shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
        """Uninitialised uint8 tensors of ``shapes``, in one storage nobody else holds."""
        return views(self._storage(nbytes_for(shapes)), shapes)

    def _storage(self, nbytes: int) -> torch.UntypedStorage:
        if not reusable():
            return new_storage(nbytes, shared=False)
        idle = sorted((s for s in self.storages if not held_elsewhere(s)), key=lambda s: s.nbytes())
        fits = [s for s in idle if s.nbytes() >= nbytes]
        if fits:
            return fits[0]  # the smallest that fits: the larger stay free for larger requests
        fresh = new_storage(int(nbytes * (1 + self.headroom)), shared=False)
        drop = idle[: max(len(idle) + 1 - self.spare, 0)]  # the smallest idle ones, too small now
        self.storages = [s for s in self.storages if all(s is not d for d in drop)] + [fresh]
        return fresh


__all__ = ["BufferPool", "held_elsewhere", "nbytes_for", "new_storage", "reusable", "views"]
