"""BufferPool: memory is lent again only once nothing made from it is alive."""

from __future__ import annotations

import gc

import pytest
import torch

from dojo.data.buffers import BufferPool, nbytes_for, reusable, views

pytestmark = pytest.mark.skipif(not reusable(), reason="this torch has no storage use count")


def test_a_held_tensor_is_never_lent_again_and_a_released_one_is() -> None:
    pool = BufferPool(spare=2)
    (a,) = pool.tensors([(1000,)])
    a.fill_(7)
    (b,) = pool.tensors([(1000,)])  # a is held: b must be other memory
    b.fill_(1)
    assert a.data_ptr() != b.data_ptr() and bool((a == 7).all())
    where = a.data_ptr()
    del a
    (c,) = pool.tensors([(900,)])  # a let go: its memory comes back (the smaller fits too)
    assert c.data_ptr() == where and bool((b == 1).all())


def test_numpy_arrays_and_views_hold_their_memory() -> None:
    pool = BufferPool(spare=2)
    (t,) = pool.tensors([(4, 256)])
    array = t.numpy()
    row = t[1]
    where = t.data_ptr()
    del t
    (other,) = pool.tensors([(4, 256)])
    assert other.data_ptr() != where  # the numpy array and the view still read it
    del array
    (other2,) = pool.tensors([(4, 256)])
    assert other2.data_ptr() != where  # the view alone still does
    del row
    gc.collect()
    (again,) = pool.tensors([(4, 256)])
    assert again.data_ptr() == where


def test_several_tensors_of_one_request_share_a_storage_without_overlap() -> None:
    pool = BufferPool()
    images, grid = pool.tensors([(3, 5, 7), (2, 11)])
    assert (
        images.shape == (3, 5, 7)
        and grid.shape == (2, 11)
        and images.dtype == grid.dtype == torch.uint8
    )
    images.fill_(200)
    grid.fill_(9)
    assert bool((images == 200).all()) and bool((grid == 9).all())
    assert grid.data_ptr() % 64 == 0 and grid.data_ptr() >= images.data_ptr() + images.numel()
    assert nbytes_for([(3, 5, 7), (2, 11)]) == 128 + 64
    assert [v.shape for v in views(torch.UntypedStorage(192), [(3, 5, 7), (2, 11)])] == [
        (3, 5, 7),
        (2, 11),
    ]


def test_the_pool_keeps_few_idle_buffers() -> None:
    pool = BufferPool(spare=2)
    held = [pool.tensors([(100 * (i + 1),)])[0] for i in range(6)]
    assert len(pool.storages) == 6  # all in use: all remembered
    del held
    (big,) = pool.tensors([(10_000,)])  # none fits: a new one, and the idle beyond spare go
    assert len(pool.storages) <= 2 + 1 and any(
        big.data_ptr() == s.data_ptr() for s in pool.storages
    )
