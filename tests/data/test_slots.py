"""The slot handshake between a DataLoader worker and the trainer's process, one step at a time.

Both sides run here in one process so each step can be checked (tests/data/test_loader.py runs
the same through real workers): a slot is lent again only after the trainer's side let its
batch go, and a batch in a slot sent before arrives without its tensors and is rebuilt there.
"""

from __future__ import annotations

import gc

import pytest

from dojo.data.buffers import reusable
from dojo.data.slots import SLOT_KEY, SlotRing, WorkerSlots

pytestmark = pytest.mark.skipif(not reusable(), reason="this torch has no storage use count")
BIG = ("images", "occupancy")
SHAPES = [(2, 3, 4), (2, 5)]


def build(worker: WorkerSlots, value: int) -> dict[str, object]:
    """What a worker does: fill tensors from its slots, stamp the batch; then it crosses (a dict copy here)."""
    images, occupancy = worker.tensors(SHAPES)
    images.fill_(value)
    occupancy.fill_(value + 1)
    batch: dict[str, object] = {"images": images, "occupancy": occupancy, "frame": value}
    worker.stamp(batch, BIG)
    return dict(batch)


def test_a_slot_comes_back_only_once_its_batch_is_let_go() -> None:
    ring = SlotRing(workers=1, slots=2)
    worker = WorkerSlots(ring, 0)
    first = build(worker, 10)
    assert first[SLOT_KEY] == (0, 0, None)  # first use of slot 0: the tensors themselves cross
    ring.received(first, BIG)
    assert SLOT_KEY not in first and int(first["images"][0, 0, 0]) == 10  # type: ignore[index]
    second = build(worker, 20)
    assert second[SLOT_KEY][1] == 1  # type: ignore[index]  # slot 0 is lent: the next one
    ring.received(second, BIG)
    ring.release_idle()
    third = build(worker, 30)
    assert third[SLOT_KEY][1] == -1  # type: ignore[index]  # both held: fresh memory, nothing waits
    assert int(first["images"][0, 0, 0]) == 10 and int(second["images"][1, 2, 3]) == 20  # type: ignore[index]
    where = first["images"].data_ptr()  # type: ignore[attr-defined]
    del first
    gc.collect()
    ring.release_idle()  # the trainer let the first batch go: slot 0 goes back to its worker
    fourth = build(worker, 40)
    worker_key = fourth.pop(SLOT_KEY)
    assert (
        isinstance(worker_key, tuple) and worker_key[:2] == (0, 0) and worker_key[2] is not None
    )  # sent before: only shapes cross
    assert "images" not in fourth and "occupancy" not in fourth
    fourth[SLOT_KEY] = worker_key
    ring.received(fourth, BIG)  # rebuilt from the storage the trainer's side kept
    assert fourth["images"].data_ptr() == where  # type: ignore[attr-defined]
    assert fourth["images"].shape == SHAPES[0] and bool((fourth["images"] == 40).all())  # type: ignore[attr-defined]
    assert bool((fourth["occupancy"] == 41).all()) and int(second["images"][0, 0, 0]) == 20  # type: ignore[attr-defined,index]


def test_a_batch_without_a_field_is_rebuilt_without_it_and_pinned_batches_hand_slots_back_at_once() -> (
    None
):
    ring = SlotRing(workers=1, slots=1)
    worker = WorkerSlots(ring, 0)
    images = worker.tensors(SHAPES)[0]
    first: dict[str, object] = {"images": images}  # no labels: the occupancy field is left out
    worker.stamp(first, BIG)
    ring.received(first, BIG)
    del images, first  # (in a real worker these live in another process)
    ring.release_idle()  # nothing holds it in the trainer's side
    images = worker.tensors(SHAPES)[0]
    again: dict[str, object] = {"images": images}
    worker.stamp(again, BIG)
    assert "images" not in again
    ring.received(again, BIG)
    assert set(again) == {"images"} and again["images"].shape == SHAPES[0]  # type: ignore[attr-defined]

    pinned_ring = SlotRing(workers=1, slots=1, keep=False)  # DataLoader's pin_memory copies first
    pinned_worker = WorkerSlots(pinned_ring, 0)
    batch = build(pinned_worker, 1)
    assert batch[SLOT_KEY][2] is None  # type: ignore[index]  # never left out: the trainer keeps nothing
    pinned_ring.received(batch, BIG)
    assert pinned_ring.flags.tolist() == [[0]] and build(pinned_worker, 2)[SLOT_KEY][2] is None  # type: ignore[index]
