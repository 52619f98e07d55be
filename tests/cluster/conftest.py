"""Real Ray clusters for the tests: one a module shares, or a fresh one a test may kill."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.raycluster import RayCluster


def _running() -> Iterator[RayCluster]:
    c = RayCluster(nodes=2)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    """A head and a second node of 1 CPU each, shared by a module's tests."""
    yield from _running()


@pytest.fixture
def fresh_cluster() -> Iterator[RayCluster]:
    """The same, for one test alone (it may lose nodes or the head)."""
    yield from _running()
