"""Placement: give a job the smallest contiguous block that holds it, and say how fragmented we are.

``Allocator(topology).allocate(job_id, chips)`` returns a :class:`Placement` (or ``None`` when
the free chips cannot hold the job). The rule: find the lowest level whose blocks are big enough
(20 D1 -> a tile of 25; 100 tiles -> an ExaPOD of 120), and among that level's blocks with room
take the fullest one (best fit, so whole blocks stay free for big jobs). Inside the block, chips
go to as few children as possible (the children with most free chips first, and a child that
holds the rest alone is preferred), recursively down to the chips. Only when no block of that
level has room does the job spill to the next level up (``Placement.contiguous`` is then False).

The placement's ``ring_sizes`` are what the performance model needs: for each level m, the most
level-m blocks the job touches inside one block of level m+1 (the last entry: top-level units
touched), i.e. the size of the ring at each hop of a hierarchical all-reduce.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dojo.compute.topology import Topology
from dojo.errors import DojoConfigError
from dojo.validate import whole


@dataclass(frozen=True)
class Placement:
    """Where a job runs: its chips and the smallest block that holds them."""

    job_id: str
    chips: tuple[int, ...]
    block: str  # name of the smallest block holding every chip ("" when it spans top-level units)
    level: str  # that block's level name ("system" when it spans top-level units)
    contiguous: (
        bool  # within one block of the lowest level big enough (or the fewest top-level units)
    )
    ring_sizes: tuple[int, ...]  # per member level 0..top, see the module doc
    blocks_touched: tuple[int, ...]  # per level 0..top: blocks with at least one of the job's chips

    @property
    def size(self) -> int:
        return len(self.chips)


class Allocator:
    """Chips of one :class:`Topology`, handed to jobs and taken back."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._owner = np.full(
            topology.total_chips, -1, dtype=np.int64
        )  # job slot per chip, -1 free
        self._slots: dict[str, int] = {}
        self._placements: dict[str, Placement] = {}
        self._next_slot = 0

    # ------------------------------------------------------------------ queries
    @property
    def placements(self) -> dict[str, Placement]:
        return dict(self._placements)

    @property
    def owners(self) -> np.ndarray:
        """Per chip, the slot number of its job (-1 free); :meth:`slot` maps a job to its slot."""
        return self._owner.copy()

    def slot(self, job_id: str) -> int:
        return self._slots[job_id]

    def free_chips(self) -> int:
        return int((self._owner < 0).sum())

    def utilization(self) -> float:
        """Share of the chips held by jobs."""
        return 1.0 - self.free_chips() / self.topology.total_chips

    def _free_per_block(self, level: int) -> np.ndarray:
        size = self.topology.chips_per_block(level)
        return (self._owner < 0).reshape(-1, size).sum(axis=1)  # (blocks,)

    def free_blocks(self, level: int | str) -> int:
        """Blocks of ``level`` with every chip free."""
        li = self.topology.level_index(level)
        return int((self._free_per_block(li) == self.topology.chips_per_block(li)).sum())

    def fragmentation(self, level: int | str | None = None) -> float:
        """Share of the free chips that sit in partly used blocks of ``level`` (0 = none).

        ``level`` defaults to the one above the chip (the tile, the node): a free chip in a
        tile another job half uses can only serve jobs small enough to share that tile.
        """
        li = min(1, self.topology.top) if level is None else self.topology.level_index(level)
        free = self.free_chips()
        if free == 0 or li == 0:
            return 0.0
        whole = self.free_blocks(li) * self.topology.chips_per_block(li)
        return 1.0 - whole / free

    # ------------------------------------------------------------------ allocate / free
    def allocate(self, job_id: str, chips: int) -> Placement | None:
        """Place ``chips`` chips for ``job_id``; ``None`` when the free chips cannot hold it."""
        if not isinstance(job_id, str) or not job_id:
            raise DojoConfigError(f"job_id={job_id!r} must be a non-empty string.")
        if job_id in self._placements:
            raise DojoConfigError(f"Job {job_id!r} is placed already; free it first.")
        chips = whole("chips", chips, 1)
        if chips > self.free_chips():
            return None
        topo = self.topology
        lowest = topo.smallest_level_for(chips)
        chosen: list[int] | None = None
        for li in range(lowest, topo.top + 1):
            free = self._free_per_block(li)
            fits = np.flatnonzero(free >= chips)
            if len(fits):
                best = int(fits[np.argmin(free[fits])])  # the fullest block with room
                chosen = self._fill([(li, best)], chips)
                break
        if chosen is None:  # spans top-level units
            chosen = self._fill([(topo.top, k) for k in range(topo.blocks_at(topo.top))], chips)
        slot = self._next_slot
        self._next_slot += 1
        self._owner[chosen] = slot
        self._slots[job_id] = slot
        placement = self._describe(job_id, sorted(chosen), lowest)
        self._placements[job_id] = placement
        return placement

    def free(self, job_id: str) -> Placement:
        """Give ``job_id``'s chips back; its placement is returned."""
        if job_id not in self._placements:
            raise DojoConfigError(f"Job {job_id!r} is not placed here.")
        slot = self._slots.pop(job_id)
        self._owner[self._owner == slot] = -1
        return self._placements.pop(job_id)

    def _fill(self, blocks: list[tuple[int, int]], n: int) -> list[int]:
        """``n`` free chips from ``blocks`` (same level), in as few of them as possible."""
        level = blocks[0][0]
        if level == 0:
            free_chips = [k for _, k in blocks if self._owner[k] < 0]
            return free_chips[:n]
        free = self._free_per_block(level)
        counts = [(int(free[k]), k) for _, k in blocks]
        alone = [c for c in counts if c[0] >= n]
        if alone:  # one block holds the rest: the fullest such
            _, k = min(alone)
            return self._children(level, k, n)
        taken: list[int] = []
        for have, k in sorted(counts, key=lambda c: (-c[0], c[1])):
            if n == 0:
                break
            if have == 0:
                continue
            take = min(have, n)
            taken += self._children(level, k, take)
            n -= take
        return taken

    def _children(self, level: int, index: int, n: int) -> list[int]:
        fanout = self.topology.levels[level].fanout
        first = index * fanout
        return self._fill([(level - 1, first + j) for j in range(fanout)], n)

    def _describe(self, job_id: str, chips: list[int], lowest: int) -> Placement:
        topo = self.topology
        arr = np.asarray(chips)
        touched = []
        rings = []
        for m in range(topo.top + 1):
            blocks_m = np.unique(arr // topo.chips_per_block(m))
            touched.append(len(blocks_m))
            if m < topo.top:
                parents = blocks_m // topo.levels[m + 1].fanout
                rings.append(int(np.bincount(parents).max()))
            else:
                rings.append(len(blocks_m))
        holder = next((m for m in range(topo.top + 1) if touched[m] == 1), None)
        if holder is None:
            block, level_name = "", "system"
        else:
            block = topo.block(holder, int(arr[0]) // topo.chips_per_block(holder)).name
            level_name = topo.levels[holder].name
        if chips and len(chips) > topo.chips_per_block(topo.top):  # needs several top-level units
            contiguous = touched[topo.top] == -(-len(chips) // topo.chips_per_block(topo.top))
        else:
            contiguous = holder is not None and holder <= lowest
        return Placement(
            job_id=job_id,
            chips=tuple(chips),
            block=block,
            level=level_name,
            contiguous=contiguous,
            ring_sizes=tuple(rings),
            blocks_touched=tuple(touched),
        )


__all__ = ["Allocator", "Placement"]
