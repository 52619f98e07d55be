"""Placement: smallest contiguous block, best fit, spill only when needed, free, fragmentation."""

from __future__ import annotations

import numpy as np
import pytest

from dojo.compute.placement import Allocator
from dojo.compute.topology import parse_system
from dojo.errors import DojoConfigError


def _check_invariants(alloc: Allocator) -> None:
    owners = alloc.owners
    for job, p in alloc.placements.items():
        assert len(set(p.chips)) == p.size
        assert (owners[list(p.chips)] == alloc.slot(job)).all()
    assert (owners >= 0).sum() == sum(p.size for p in alloc.placements.values())


def test_twenty_chips_stay_in_one_tile() -> None:
    alloc = Allocator(parse_system("exapod"))
    p = alloc.allocate("a", 20)
    assert p is not None and p.level == "tile" and p.contiguous
    assert p.block == "exapod0/cabinet0/tray0/tile0"
    assert p.ring_sizes == (20, 1, 1, 1, 1)
    # a second small job goes into the same (fullest) tile while it fits: whole tiles stay free
    q = alloc.allocate("b", 5)
    assert q is not None and q.block == p.block
    assert alloc.free_blocks("tile") == 119
    _check_invariants(alloc)


def test_hundred_tiles_stay_in_one_exapod_on_the_fewest_blocks() -> None:
    alloc = Allocator(parse_system("exapod:2"))
    alloc.allocate("small", 3)
    p = alloc.allocate("big", 100 * 25)
    assert p is not None and p.level == "exapod" and p.contiguous
    assert p.blocks_touched[1] == 100  # exactly 100 tiles, all whole
    assert p.blocks_touched[3] == 9  # ceil(100 / 12) cabinets
    # best fit: the fullest ExaPOD with room (the one the small job dented), whole cabinets first
    assert p.block == "exapod0"
    assert p.ring_sizes == (25, 6, 2, 9, 1)
    _check_invariants(alloc)


def test_a_job_spills_up_only_when_no_block_of_its_size_has_room() -> None:
    alloc = Allocator(parse_system("tray"))  # 6 tiles of 25
    for k in range(6):
        assert alloc.allocate(f"t{k}", 20) is not None  # every tile holds 20, 5 free each
    p = alloc.allocate("x", 10)  # no tile has 10 free: spread over tiles of the tray
    assert p is not None and not p.contiguous and p.level == "tray"
    assert p.blocks_touched[1] == 2
    assert alloc.allocate("y", 21) is None  # 20 chips are left
    assert alloc.free_chips() == 20
    _check_invariants(alloc)


def test_free_gives_chips_back_and_fragmentation_follows() -> None:
    alloc = Allocator(parse_system("tray"))
    assert alloc.fragmentation() == 0.0 and alloc.utilization() == 0.0
    alloc.allocate("a", 10)
    # 140 free: 125 in 5 whole tiles, 15 in the dented tile
    assert alloc.fragmentation() == pytest.approx(15 / 140)
    assert alloc.utilization() == pytest.approx(10 / 150)
    placed = alloc.free("a")
    assert placed.size == 10 and alloc.free_chips() == 150 and alloc.fragmentation() == 0.0
    with pytest.raises(DojoConfigError, match="not placed"):
        alloc.free("a")


def test_random_churn_keeps_the_books_right() -> None:
    rng = np.random.default_rng(0)
    alloc = Allocator(parse_system("cabinet"))
    live: list[str] = []
    for k in range(300):
        if live and rng.random() < 0.45:
            alloc.free(live.pop(int(rng.integers(len(live)))))
        else:
            size = int(rng.integers(1, 60))
            p = alloc.allocate(f"j{k}", size)
            if p is None:
                assert size > alloc.free_chips()  # anything up to the free chips is placed
            else:
                live.append(f"j{k}")
                lowest = alloc.topology.smallest_level_for(size)
                if p.contiguous:
                    assert alloc.topology.level_index(p.level) <= lowest
        _check_invariants(alloc)
        assert 0.0 <= alloc.fragmentation() <= 1.0


def test_bad_requests() -> None:
    alloc = Allocator(parse_system("tile"))
    with pytest.raises(DojoConfigError, match="chips=0"):
        alloc.allocate("a", 0)
    with pytest.raises(DojoConfigError, match="chips=-3"):
        alloc.allocate("a", -3)
    assert alloc.allocate("a", 26) is None  # more than the tile has
    alloc.allocate("a", 1)
    with pytest.raises(DojoConfigError, match="placed already"):
        alloc.allocate("a", 1)
