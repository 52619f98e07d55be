"""Fixtures of the trainer's tests (the dataset is built once per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.train.support import FleetData, build_fleet_data


@pytest.fixture(scope="session")
def fleet_data(tmp_path_factory: pytest.TempPathFactory) -> FleetData:
    return build_fleet_data(tmp_path_factory.mktemp("train_data"))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tests train on one intra-op thread: on a 2-core machine shared with DataLoader workers and
    other processes, two OpenMP threads stall each other (steps of 15 ms took up to 800 ms)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
