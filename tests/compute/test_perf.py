"""The performance model against closed forms, and its bad inputs."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from dojo.compute.calibration import Calibration, Fit, Measurement, all_families, predict_s
from dojo.compute.perf import (
    Job,
    allreduce_s,
    equivalence,
    hierarchical_allreduce_s,
    plan,
    ring_allreduce_s,
)
from dojo.compute.topology import parse_system
from dojo.compute.workload import Workload, net_workload
from dojo.errors import DojoConfigError

W = Workload("synthetic", train_flops_per_sample=3e9, params=10_000_000)


def test_ring_allreduce_closed_form() -> None:
    # 2 (n - 1) / n x bytes / bandwidth, plus 2 (n - 1) latencies
    assert ring_allreduce_s(1e9, 8, 100.0) == pytest.approx(2 * 7 / 8 * 1e9 / 100e9)
    assert ring_allreduce_s(1e9, 8, 100.0, latency_us=10.0) == pytest.approx(0.0175 + 14 * 10e-6)
    assert ring_allreduce_s(1e9, 1, 100.0) == 0.0
    # the bandwidth term tends to 2 x bytes / bandwidth as the ring grows
    assert ring_allreduce_s(1e9, 10_000, 100.0) == pytest.approx(0.02, rel=1e-3)


def test_allreduce_keeps_the_rings_bandwidth_and_takes_a_trees_latency() -> None:
    assert allreduce_s(1e9, 2, 100.0, 10.0) == pytest.approx(ring_allreduce_s(1e9, 2, 100.0, 10.0))
    # 1,024 members: the ring would pay 2 x 1,023 latencies, the tree 2 x 10
    assert allreduce_s(1e6, 1024, 100.0, 10.0) == pytest.approx(
        2 * 1023 / 1024 * 1e6 / 100e9 + 20 * 10e-6
    )
    assert allreduce_s(1e6, 1024, 100.0, 10.0) < ring_allreduce_s(1e6, 1024, 100.0, 10.0) / 50


def test_hierarchical_allreduce_sums_one_ring_per_level() -> None:
    topo = parse_system("h100-node:4")
    gpu, node = topo.levels
    times = hierarchical_allreduce_s(2e8, (8, 4), topo.levels, comm_efficiency=0.5)
    assert times[0] == pytest.approx(
        2 * 7 / 8 * 2e8 / (gpu.uplink_gbs * 0.5e9) + 2 * 3 * gpu.latency_us * 1e-6
    )
    assert times[1] == pytest.approx(
        2 * 3 / 4 * 2e8 / (node.uplink_gbs * 0.5e9) + 2 * 2 * node.latency_us * 1e-6
    )


def test_step_time_parts_on_a_gpu_node_pair() -> None:
    topo = parse_system("h100-node:2")
    model = topo.family.model
    p = plan(Job(W, samples=1e6, batch=1024, precision="bf16"), topo)
    assert p.chips == 16 and p.batch_per_chip == 64
    assert p.placement.ring_sizes == (8, 2)
    assert p.step.compute_s == pytest.approx(3e9 * 64 / (989e12 * model.efficiency))
    grad = W.params * 2  # bf16 gradients
    expected_ar = allreduce_s(grad, 8, 450 * model.comm_efficiency, 5.0) + ring_allreduce_s(
        grad, 2, 400 * model.comm_efficiency, 10.0
    )
    assert p.step.allreduce_s == pytest.approx(expected_ar)
    assert p.step.exposed_allreduce_s == pytest.approx(
        max(0.0, expected_ar - 2 / 3 * p.step.compute_s)
    )
    assert p.step.update_s == pytest.approx(W.params * 28 / 3350e9)
    assert p.steps == math.ceil(1e6 / 1024)
    assert p.time_to_train_s == pytest.approx(p.steps * p.step.total_s)
    # power: 16 GPUs at 700 W and two DGX overheads
    assert p.power_w == pytest.approx(16 * 700 + 2 * 4600)
    assert p.energy_kwh == pytest.approx(p.power_w * p.time_to_train_s / 3.6e6)


def test_energy_and_cost_of_a_tile_job() -> None:
    p = plan(
        Job(W, samples=1e6, batch=640, chips=20),
        parse_system("exapod"),
        price_kwh=0.2,
        price_chip_hour=1.5,
    )
    assert p.placement.block == "exapod0/cabinet0/tray0/tile0"
    assert p.power_w == pytest.approx(20 * 400 + 5000)  # the whole tile's overhead is spent
    assert p.cost == pytest.approx(p.energy_kwh * 0.2 + 20 * p.time_to_train_s / 3600 * 1.5)


def test_more_chips_train_faster_until_communication_dominates() -> None:
    small = Workload("comm-light", 1e10, 1_000_000)
    times = [
        plan(Job(small, 1e7, batch=3000, chips=n), parse_system("exapod")).time_to_train_s
        for n in (25, 150, 300, 3000)
    ]
    assert times == sorted(times, reverse=True)
    big_grads = Workload("comm-heavy", 1e6, 2_000_000_000 // 16)
    one, many = (
        plan(Job(big_grads, 1e6, batch=3000, chips=n), parse_system("exapod")) for n in (1, 3000)
    )
    assert many.step.exposed_allreduce_s > many.step.compute_s  # communication-bound at scale
    assert one.step.allreduce_s == 0.0


def test_state_beyond_sram_streams_from_the_trays_dram_or_does_not_fit() -> None:
    # 0.1 G params x 16 B = 1.6 GB > 0.44 GB of SRAM, < SRAM + 640 GB / 150 chips
    mid = Workload("mid", 1e9, 100_000_000)
    p = plan(Job(mid, 1e6, batch=150), parse_system("tray"))
    assert p.memory_home == "tray"
    assert p.step.update_s == pytest.approx(mid.params * 28 / (16000e9 / 150))
    with pytest.raises(DojoConfigError, match="cannot fit"):
        plan(Job(mid, 1e6, batch=25), parse_system("tile"))  # a tile alone has no DRAM
    with pytest.raises(DojoConfigError, match="cannot fit"):
        plan(Job(Workload("huge", 1e9, 10**11), 1e6, batch=3000), parse_system("exapod"))


def test_equivalence_is_the_smallest_matching_count() -> None:
    heavy = Workload("compute-heavy", train_flops_per_sample=3e11, params=10_000_000)
    job = Job(heavy, samples=1e8, batch=3000 * 8, precision="bf16")
    ours = plan(job, parse_system("exapod"))
    eq = equivalence(job, ours, parse_system("h100-node"))
    assert eq.units_needed is not None
    assert eq.plan.time_to_train_s <= ours.time_to_train_s * (1 + 1e-9)
    fewer = plan(replace(job, batch=ours.batch), parse_system(f"h100-node:{eq.units_needed - 1}"))
    assert fewer.time_to_train_s > ours.time_to_train_s
    # peak ratio as a sanity bound: 1,086 PFLOPS / 7.9 PFLOPS a node ~ 137 nodes at equal efficiency
    assert 80 <= eq.units_needed <= 250


def test_equivalence_can_be_none_within_the_batch() -> None:
    job = Job(W, samples=1e6, batch=3000, precision="fp32")
    ours = plan(job, parse_system("exapod"))
    eq = equivalence(job, ours, parse_system("cpu-host"))
    assert eq.units_needed is None and eq.max_units == 1  # no bandwidth between CPU hosts is known


def test_the_planner_on_this_cpu_is_the_calibrated_model() -> None:
    cal = Calibration(
        machine={"cpu": "test", "cores": 2},
        peak_tflops_per_core=0.064,
        peak_source="test",
        fit=Fit(
            efficiency=0.7,
            step_overhead_s=0.003,
            sample_overhead_s=0.0004,
            update_gbs=4.0,
            allreduce_gbs=0.2,
            allreduce_latency_us=900.0,
        ),
    )
    topo = parse_system("cpu-host", all_families(cal))
    for nproc, batch in ((1, 8), (2, 32)):
        m = Measurement(
            size="base",
            batch=batch,
            nproc=nproc,
            step_s=1.0,
            flops_per_sample=W.train_flops_per_sample,
            params=W.params,
        )
        p = plan(
            Job(W, samples=1e4, batch=batch, chips=nproc, precision="fp32"), topo, model=cal.model()
        )
        assert p.step.total_s == pytest.approx(predict_s(m, cal.fit, 0.064e12))


def test_net_workload_counts_the_real_nets() -> None:
    from dojo.bench.train import train_step_flops

    w = net_workload("policy", "tiny")
    assert w.train_flops_per_sample == train_step_flops("tiny")
    assert 100_000 < w.params < 1_000_000
    assert net_workload("occupancy", "tiny").train_flops_per_sample > w.train_flops_per_sample


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"samples": -1.0}, "samples=-1.0"),
        ({"samples": 0.0}, "samples=0.0"),
        ({"epochs": -2.0}, "epochs=-2.0"),
        ({"batch": -8}, "batch=-8"),
        ({"chips": 0}, "chips=0"),
    ],
)
def test_negative_sizes_are_one_clear_error(kwargs: dict[str, float], match: str) -> None:
    base: dict = {"workload": W, "samples": 1e6}
    with pytest.raises(DojoConfigError, match=match):
        Job(**{**base, **kwargs})


def test_jobs_that_cannot_run_are_one_clear_error() -> None:
    with pytest.raises(DojoConfigError, match="3,001 chips.*3,000"):
        plan(Job(W, 1e6, batch=4000, chips=3001), parse_system("exapod"))
    with pytest.raises(DojoConfigError, match="batch=10 is smaller than the 25 chips"):
        plan(Job(W, 1e6, batch=10), parse_system("tile"))
    with pytest.raises(DojoConfigError, match="precision='fp8'"):
        plan(Job(W, 1e6, precision="fp8"), parse_system("a100-node"))
    with pytest.raises(DojoConfigError, match="net='resnet'"):
        net_workload("resnet", "base")
    with pytest.raises(DojoConfigError, match="size='huge'"):
        net_workload("policy", "huge")
