"""The hierarchy as an object: blocks at every level, their names, and what each level adds up to.

A :class:`Topology` is ``count`` units of one level of a family: ``Topology(dojo, "exapod")``
is one ExaPOD, ``Topology(h100, "h100-node", 64)`` is 64 DGX H100 nodes. Chips are numbered
0..N-1 in order, so a block at any level is a contiguous range of chips, and its name is its
path from the top, e.g. ``exapod0/cabinet3/tray1/tile4`` (``.../chip7`` for one chip).

Everything a level has is computed from the chip up: peak FLOP/s per precision, on-chip memory,
attached DRAM, power (chips plus each block's overhead) and uplink bandwidth. The published
headline figures are not read here; the tests check that they fall out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from dojo.compute.specs import Family, Level
from dojo.errors import DojoConfigError
from dojo.validate import whole

_SYSTEM_RE = re.compile(r"^([a-z0-9][a-z0-9_-]*?)(?::(\d+))?$")


@dataclass(frozen=True)
class Block:
    """One block: its level (0 = chip), its index among that level's blocks, name and chips."""

    level: int
    index: int
    name: str
    chips: range


@dataclass(frozen=True)
class LevelSummary:
    """What one block of a level adds up to (per block, not per level)."""

    name: str
    part: str
    blocks: int  # blocks of this level in the topology
    chips: int  # chips per block
    peak_tflops: Mapping[str, float]  # per precision, one block [TFLOP/s]
    sram_gb: float  # on-chip memory of one block [GB]
    dram_gb: float  # memory attached at or below this level, one block [GB]
    power_w: float  # one block, chips at their TDP plus overheads [W]
    uplink_gbs: float  # one block to its peers, each way [GB/s]


class Topology:
    """``count`` units of ``family``'s level ``unit`` (a level name, unit name or index)."""

    def __init__(self, family: Family, unit: str | int | None = None, count: int = 1) -> None:
        count = whole("System count", count, 1)
        top = len(family.levels) - 1 if unit is None else _unit_index(family, unit)
        self.family = family
        self.levels: tuple[Level, ...] = family.levels[: top + 1]
        self.count = count
        self._cpb = [1]  # chips per block, per level
        for level in self.levels[1:]:
            self._cpb.append(self._cpb[-1] * level.fanout)

    # ------------------------------------------------------------------ shape
    @property
    def top(self) -> int:
        """Index of the unit level (the level of the topology's top blocks)."""
        return len(self.levels) - 1

    @property
    def unit(self) -> str:
        return self.levels[-1].unit

    @property
    def name(self) -> str:
        """The system reference this topology answers to, e.g. ``exapod`` or ``h100-node:64``."""
        return self.unit if self.count == 1 else f"{self.unit}:{self.count}"

    @property
    def total_chips(self) -> int:
        return self._cpb[-1] * self.count

    def chips_per_block(self, level: int | str) -> int:
        return self._cpb[self.level_index(level)]

    def blocks_at(self, level: int | str) -> int:
        """How many blocks of ``level`` the topology has."""
        return self.total_chips // self.chips_per_block(level)

    def level_index(self, level: int | str) -> int:
        if isinstance(level, int) and not isinstance(level, bool):
            if 0 <= level <= self.top:
                return level
            raise DojoConfigError(f"Level {level} is outside 0..{self.top} of {self.name}.")
        for i, lv in enumerate(self.levels):
            if level in (lv.name, lv.unit):
                return i
        raise DojoConfigError(
            f"Level {level!r} is not in {self.name}: {', '.join(lv.name for lv in self.levels)}."
        )

    # ------------------------------------------------------------------ blocks
    def block(self, level: int | str, index: int) -> Block:
        """Block ``index`` of ``level`` (0-based over the whole topology)."""
        li = self.level_index(level)
        if not 0 <= index < self.blocks_at(li):
            raise DojoConfigError(
                f"{self.levels[li].name} index {index} is outside 0..{self.blocks_at(li) - 1}."
            )
        size = self._cpb[li]
        first = index * size
        parts = []
        for j in range(self.top, li - 1, -1):
            k = first // self._cpb[j]
            if j < self.top:
                k %= self.levels[j + 1].fanout
            parts.append(f"{self.levels[j].name}{k}")
        return Block(level=li, index=index, name="/".join(parts), chips=range(first, first + size))

    def blocks(self, level: int | str) -> Iterator[Block]:
        """Every block of ``level``, in chip order."""
        li = self.level_index(level)
        for k in range(self.blocks_at(li)):
            yield self.block(li, k)

    def find(self, name: str) -> Block:
        """The block a path names, e.g. ``exapod0/cabinet3/tray1/tile4``."""
        parts = [p for p in name.strip("/").split("/") if p]
        if not parts or len(parts) > len(self.levels):
            raise DojoConfigError(
                f"Block name {name!r} is not a path like {self.block(0, 0).name!r}."
            )
        first = 0
        for depth, part in enumerate(parts):
            j = self.top - depth
            level = self.levels[j]
            m = re.fullmatch(re.escape(level.name) + r"(\d+)", part)
            limit = self.count if j == self.top else self.levels[j + 1].fanout
            if m is None or int(m.group(1)) >= limit:
                raise DojoConfigError(
                    f"Block name {name!r}: {part!r} should be {level.name}0..{level.name}{limit - 1}."
                )
            first += int(m.group(1)) * self._cpb[j]
        li = self.top - len(parts) + 1
        return self.block(li, first // self._cpb[li])

    def chip_block(self, chip: int, level: int | str) -> int:
        """Index of the ``level`` block that holds ``chip``."""
        return chip // self.chips_per_block(level)

    # ------------------------------------------------------------------ figures per block
    def peak_tflops(self, level: int | str, precision: str) -> float:
        """Peak [TFLOP/s] of one block of ``level`` at ``precision`` (chips x the chip's peak)."""
        rate = self.family.chip.tflops.get(precision)
        if rate is None:
            raise DojoConfigError(
                f"precision={precision!r} is not one {self.family.chip.part} has; "
                f"it has: {', '.join(self.family.precisions)}."
            )
        return self.chips_per_block(level) * rate

    def _below(self, li: int) -> Iterator[tuple[Level, int]]:
        """Each level j <= li with the number of its blocks inside one block of level li."""
        for j in range(li + 1):
            yield self.levels[j], self._cpb[li] // self._cpb[j]

    def sram_gb(self, level: int | str) -> float:
        return self.chips_per_block(level) * self.family.chip.memory_gb

    def dram_gb(self, level: int | str) -> float:
        return sum(
            lv.dram_gb * n
            for lv, n in self._below(self.level_index(level))
            if lv is not self.family.chip
        )

    def power_w(self, level: int | str) -> float:
        li = self.level_index(level)
        return self._cpb[li] * self.family.chip.power_w + sum(
            lv.overhead_w * n for lv, n in self._below(li)
        )

    def summary(self) -> list[LevelSummary]:
        """One row a level, chip first."""
        return [
            LevelSummary(
                name=lv.name,
                part=lv.part,
                blocks=self.blocks_at(i),
                chips=self._cpb[i],
                peak_tflops={p: self.peak_tflops(i, p) for p in self.family.precisions},
                sram_gb=self.sram_gb(i),
                dram_gb=self.dram_gb(i),
                power_w=self.power_w(i),
                uplink_gbs=lv.uplink_gbs,
            )
            for i, lv in enumerate(self.levels)
        ]

    def smallest_level_for(self, chips: int) -> int:
        """The lowest level one block of which holds ``chips`` (the top when none does)."""
        for i, size in enumerate(self._cpb):
            if chips <= size:
                return i
        return self.top

    def __repr__(self) -> str:
        return f"Topology({self.family.name}, {self.name}: {self.total_chips:,} chips)"


def _unit_index(family: Family, unit: str | int) -> int:
    if isinstance(unit, int) and not isinstance(unit, bool):
        if 0 <= unit < len(family.levels):
            return unit
    else:
        for i, lv in enumerate(family.levels):
            if unit in (lv.unit, lv.name):
                return i
    raise DojoConfigError(
        f"Unit {unit!r} is not one of {family.name}'s: {', '.join(lv.unit for lv in family.levels)}."
    )


def system_names(families: Mapping[str, Family] | None = None) -> list[str]:
    """Every unit a system can be asked for by (``d1``, ``tile``, ..., ``h100-node``, ...)."""
    if families is None:
        from dojo.compute.calibration import all_families

        families = all_families()
    return [lv.unit for f in families.values() for lv in f.levels]


def parse_system(ref: str, families: Mapping[str, Family] | None = None) -> Topology:
    """A topology from ``UNIT[:COUNT]``, e.g. ``exapod``, ``tile:4``, ``h100-node:64``."""
    if families is None:  # the packaged families and the CPU's, from its calibration
        from dojo.compute.calibration import all_families

        families = all_families()
    fams = dict(families)
    if not isinstance(ref, str):
        raise DojoConfigError(f"system={ref!r} must be text like 'exapod' or 'h100-node:64'.")
    m = _SYSTEM_RE.match(ref.strip().lower())
    if m is None:
        raise DojoConfigError(
            f"system={ref!r} is not UNIT[:COUNT], e.g. 'exapod' or 'h100-node:64'."
        )
    unit, count = m.group(1), int(m.group(2)) if m.group(2) else 1
    if count < 1:
        raise DojoConfigError(f"system={ref!r}: the count must be at least 1.")
    for family in fams.values():
        for i, lv in enumerate(family.levels):
            if lv.unit == unit:
                return Topology(family, i, count)
    raise DojoConfigError(
        f"system={ref!r} is not known; choose one of: {', '.join(system_names(fams))}."
    )


__all__ = ["Block", "LevelSummary", "Topology", "parse_system", "system_names"]
