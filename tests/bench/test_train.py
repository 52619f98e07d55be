"""dojo bench train's parts: FLOPs counted by torch, a CPU peak, the bare loop, bad inputs."""

from __future__ import annotations

import pytest
import torch

from dojo.bench.train import bare_loop, bench_train, format_train, peak_flops, train_step_flops
from dojo.errors import DojoConfigError
from dojo.nets.policy import DrivingPolicy, PolicyConfig


def test_training_flops_are_counted_and_grow_with_the_net() -> None:
    tiny, base = train_step_flops("tiny"), train_step_flops("base")
    assert 0 < tiny < base
    # a training step is about a forward pass and a backward pass of twice its cost
    config = PolicyConfig(size="tiny")
    model = DrivingPolicy(config)
    images = torch.zeros(config.image_shape(8), dtype=torch.uint8)
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images, torch.zeros(8), torch.zeros(8, dtype=torch.long))
    forward = counter.get_total_flops() / 8
    assert 2.5 * forward <= tiny <= 3.5 * forward


def test_cpu_peak_and_bare_loop() -> None:
    peak, how = peak_flops(torch.device("cpu"))
    assert peak > 1e9 and "FLOPs/cycle" in how
    assert bare_loop("tiny", batch=4, steps=3, device=torch.device("cpu")) > 0


def test_table_and_bad_inputs() -> None:
    row = {
        "size": "tiny",
        "parameters": 166642,
        "train_flops_per_sample": 2.1e7,
        "samples_per_s": 1800.0,
        "bare_samples_per_s": 1950.0,
        "ratio_to_bare": 0.92,
        "data_wait_share": 0.04,
        "achieved_tflops": 0.037,
        "mfu": 0.24,
    }
    text = format_train(
        {
            "device": "cpu",
            "cores": 2,
            "torch": "x",
            "threads": 2,
            "peak": "p",
            "batch_size": 32,
            "steps": 20,
            "sizes": [row],
        }
    )
    assert "0.92" in text and "24.0%" in text
    with pytest.raises(DojoConfigError, match="sizes=\\['huge'\\]"):
        bench_train(["huge"])
    with pytest.raises(DojoConfigError, match="steps=2"):
        bench_train(["tiny"], steps=2)
