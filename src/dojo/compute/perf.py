"""The performance and energy model: step time, time to train, energy and cost of a training job.

Data-parallel training, one replica per chip, global batch B over N chips (B/N a chip, rounded
up: the slowest chip sets the pace). One step takes::

    compute   = B/N x (FLOPs/sample / (chip peak at the precision x efficiency)
                       + time a sample beyond its FLOPs; zero but on the calibrated CPU)
    update    = parameters x bytes per parameter update / memory bandwidth   (the optimizer)
    allreduce = sum over the levels the job spans of an all-reduce of the gradients:
                2 (n - 1) / n x bytes / (uplink x comm efficiency) + 2 ceil(log2 n) x latency
                (a ring's bandwidth term, a tree's latency term, as NCCL does at scale)
    exposed   = max(0, allreduce - overlap x backward),  backward = 2/3 of compute
    step      = compute + update + exposed + fixed overhead per step

The hierarchical all-reduce reduce-scatters inside the lowest blocks, all-reduces the shards
across the next level up, and so on, then all-gathers back down: at every level each member
block moves (n - 1)/n of the full gradient twice over its own uplink (the sum of its chips'
links), which gives the sum above; ``n`` at each level is the ring size the placement reports.
Memory: a replica's state (weights, gradients, AdamW moments: 16 B a parameter) must fit in a
chip's memory, or in the chip's share of the DRAM attached above it (Dojo's interface
processors), in which case the optimizer streams it from there. Energy counts the job's chips at
their TDP plus the overhead power of every block it touches (an upper bound: chips rarely sit
at TDP).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dojo.compute.placement import Allocator, Placement
from dojo.compute.specs import Level, ModelDefaults
from dojo.compute.topology import Topology
from dojo.compute.workload import Workload
from dojo.errors import DojoConfigError
from dojo.validate import positive, store_canonical, whole

DEFAULT_BATCH_PER_CHIP = 32
BACKWARD_SHARE = 2.0 / 3.0  # of a training step's FLOPs (backward is about twice the forward)


def ring_allreduce_s(nbytes: float, n: int, bandwidth_gbs: float, latency_us: float = 0.0) -> float:
    """Time [s] of a ring all-reduce of ``nbytes`` over ``n`` members, each ``bandwidth_gbs`` each way."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    if bandwidth_gbs <= 0:
        raise DojoConfigError(
            f"An all-reduce over {n} members needs a bandwidth; got {bandwidth_gbs} GB/s."
        )
    return 2.0 * (n - 1) / n * nbytes / (bandwidth_gbs * 1e9) + 2.0 * (n - 1) * latency_us * 1e-6


def allreduce_s(nbytes: float, n: int, bandwidth_gbs: float, latency_us: float = 0.0) -> float:
    """Time [s] of an all-reduce as NCCL runs one at scale: a ring's bandwidth, a tree's latency.

    ``2 (n - 1) / n x bytes / bandwidth + 2 ceil(log2 n) x latency``: the bandwidth term is the
    ring's (optimal), the latency term a (double binary) tree's, which is what keeps an
    all-reduce over thousands of nodes from paying thousands of hops. For n = 2 it is the ring.
    """
    if n <= 1 or nbytes <= 0:
        return 0.0
    ring_bandwidth = ring_allreduce_s(nbytes, n, bandwidth_gbs)
    return ring_bandwidth + 2.0 * math.ceil(math.log2(n)) * latency_us * 1e-6


def hierarchical_allreduce_s(
    nbytes: float,
    ring_sizes: tuple[int, ...],
    levels: tuple[Level, ...],
    comm_efficiency: float = 1.0,
) -> list[float]:
    """Per member level m, the time [s] of the all-reduce over ``ring_sizes[m]`` level-m blocks."""
    times = []
    for m, n in enumerate(ring_sizes):
        level = levels[m]
        if n > 1 and level.uplink_gbs <= 0:
            raise DojoConfigError(
                f"No bandwidth is known between {level.name}s; a job cannot span {n} of them."
            )
        times.append(allreduce_s(nbytes, n, level.uplink_gbs * comm_efficiency, level.latency_us))
    return times


@dataclass(frozen=True)
class Job:
    """A data-parallel training job: ``samples`` [per epoch] x ``epochs`` at global ``batch``.

    ``chips``: data-parallel degree (``None``: every chip of the system); ``batch``: global batch
    (``None``: 32 a chip).
    """

    workload: Workload
    samples: float
    epochs: float = 1.0
    batch: int | None = None
    precision: str = "bf16"
    chips: int | None = None

    def __post_init__(self) -> None:
        for name in ("samples", "epochs"):
            store_canonical(self, name, positive(name, getattr(self, name)))
        for name in ("batch", "chips"):
            if getattr(self, name) is not None:
                store_canonical(self, name, whole(name, getattr(self, name), 1))


@dataclass(frozen=True)
class StepTime:
    """One optimizer step, its parts [s]; ``allreduce_levels_s`` per member level."""

    compute_s: float
    update_s: float
    overhead_s: float
    allreduce_s: float
    exposed_allreduce_s: float
    allreduce_levels_s: tuple[float, ...] = field(default=())

    @property
    def total_s(self) -> float:
        return self.compute_s + self.update_s + self.overhead_s + self.exposed_allreduce_s


@dataclass(frozen=True)
class Plan:
    """What a job costs on a system."""

    system: str
    family: str
    workload: str
    precision: str
    chips: int
    batch: int
    batch_per_chip: int
    placement: Placement
    step: StepTime
    steps: int
    time_to_train_s: float
    samples_per_s: float
    power_w: float
    energy_kwh: float
    cost: float
    peak_pflops: float
    achieved_pflops: float
    memory_home: (
        str  # where a replica's state lives: "chip" or the level of the DRAM it streams from
    )

    @property
    def mfu(self) -> float:
        return self.achieved_pflops / self.peak_pflops

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["step"]["total_s"] = self.step.total_s
        d["mfu"] = self.mfu
        d["placement"] = {k: v for k, v in d["placement"].items() if k != "chips"}
        return d


def _memory_path(topology: Topology, workload: Workload) -> tuple[float, str]:
    """(memory bandwidth [GB/s] a chip's optimizer update streams at, where the state lives)."""
    chip = topology.family.chip
    need_gb = workload.state_bytes / 1e9
    if chip.memory_gb <= 0 or need_gb <= chip.memory_gb:
        return chip.memory_bw_gbs, "chip"
    for i, level in enumerate(topology.levels[1:], start=1):
        per_chip = topology.chips_per_block(i)
        if level.dram_gb > 0 and need_gb <= chip.memory_gb + level.dram_gb / per_chip:
            return level.dram_bw_gbs / per_chip, level.name
    raise DojoConfigError(
        f"{workload.name} needs {need_gb:.3g} GB a replica (weights, gradients, optimizer), more than "
        f"a {chip.part} has ({chip.memory_gb:.3g} GB{' plus its share of the DRAM' if len(topology.levels) > 1 else ''}); "
        "the job cannot fit."
    )


def step_time(
    workload: Workload,
    topology: Topology,
    placement: Placement,
    batch_per_chip: int,
    precision: str,
    model: ModelDefaults,
) -> tuple[StepTime, str]:
    """One step of ``workload`` on ``placement`` (and where the optimizer's state lives)."""
    peak = topology.peak_tflops(0, precision) * 1e12  # [FLOP/s] one chip
    compute = (
        workload.train_flops_per_sample / (peak * model.efficiency) + model.sample_overhead_s
    ) * batch_per_chip
    bw_gbs, home = _memory_path(topology, workload)
    update = workload.params * model.bytes_per_param_update / (bw_gbs * 1e9) if bw_gbs > 0 else 0.0
    levels = hierarchical_allreduce_s(
        workload.gradient_bytes(precision),
        placement.ring_sizes,
        topology.levels,
        model.comm_efficiency,
    )
    allreduce = sum(levels)
    exposed = max(0.0, allreduce - model.overlap * BACKWARD_SHARE * compute)
    return StepTime(
        compute_s=compute,
        update_s=update,
        overhead_s=model.step_overhead_s,
        allreduce_s=allreduce,
        exposed_allreduce_s=exposed,
        allreduce_levels_s=tuple(levels),
    ), home


def plan(
    job: Job,
    topology: Topology,
    model: ModelDefaults | None = None,
    price_kwh: float = 0.10,
    price_chip_hour: float = 0.0,
    placement: Placement | None = None,
) -> Plan:
    """Step time, time to train, energy [kWh] and cost of ``job`` on ``topology``.

    ``model``: the efficiency terms (the family's defaults, or the CPU's calibration, unless
    given). ``placement``: where the job runs (default: the allocator's choice on an empty
    system). Cost = energy x ``price_kwh`` + chip-hours x ``price_chip_hour``.
    """
    terms = model or topology.family.model
    for name, value in (("price_kwh", price_kwh), ("price_chip_hour", price_chip_hour)):
        if not value >= 0:
            raise DojoConfigError(f"{name}={value!r} must be zero or more.")
    topology.peak_tflops(0, job.precision)  # the precision must exist
    chips = topology.total_chips if job.chips is None else job.chips
    if chips > topology.total_chips:
        raise DojoConfigError(
            f"The job asks for {chips:,} chips but {topology.name} has {topology.total_chips:,}; "
            "the job cannot fit (choose a bigger system or fewer chips)."
        )
    batch = DEFAULT_BATCH_PER_CHIP * chips if job.batch is None else job.batch
    if batch < chips:
        raise DojoConfigError(
            f"batch={batch:,} is smaller than the {chips:,} chips; each chip needs at least one sample."
        )
    if placement is None:
        placed = Allocator(topology).allocate("plan", chips)
        assert placed is not None  # an empty system holds any job up to its size
        placement = placed
    per_chip = math.ceil(batch / chips)
    step, home = step_time(job.workload, topology, placement, per_chip, job.precision, terms)
    steps = math.ceil(job.samples * job.epochs / batch)
    time_s = steps * step.total_s
    power = chips * topology.family.chip.power_w + sum(
        lv.overhead_w * n for lv, n in zip(topology.levels, placement.blocks_touched, strict=True)
    )
    energy_kwh = power * time_s / 3.6e6
    peak = chips * topology.peak_tflops(0, job.precision) / 1e3  # [PFLOP/s]
    achieved = job.workload.train_flops_per_sample * batch / step.total_s / 1e15
    return Plan(
        system=topology.name,
        family=topology.family.name,
        workload=job.workload.name,
        precision=job.precision,
        chips=chips,
        batch=batch,
        batch_per_chip=per_chip,
        placement=placement,
        step=step,
        steps=steps,
        time_to_train_s=time_s,
        samples_per_s=batch / step.total_s,
        power_w=power,
        energy_kwh=energy_kwh,
        cost=energy_kwh * price_kwh + chips * time_s / 3600.0 * price_chip_hour,
        peak_pflops=peak,
        achieved_pflops=achieved,
        memory_home=home,
    )


@dataclass(frozen=True)
class Equivalence:
    """How many units of another system match ``ours`` on the same job (same global batch)."""

    unit: str
    units_needed: int | None  # None: no count up to ``max_units`` is as fast
    max_units: int  # the most units the batch allows (one sample a chip at least)
    plan: Plan  # the other system at ``units_needed`` (or at ``max_units`` when none matches)


def equivalence(
    job: Job,
    ours: Plan,
    other: Topology,
    model: ModelDefaults | None = None,
    price_kwh: float = 0.10,
    price_chip_hour: float = 0.0,
) -> Equivalence:
    """The fewest ``other`` units (``other.unit``) whose time to train is at most ``ours``.

    The job keeps its global batch; a unit count is allowed while every chip gets a sample (and
    only one unit when no bandwidth between such units is known).
    The search doubles the count until it matches, then bisects below that: it assumes that
    between two counts a factor of two apart, more units are never slower (the plan at the
    answer is returned so it can be checked).
    """
    cpu = other.chips_per_block(other.top)
    joined = other.levels[-1].uplink_gbs > 0  # can units of this kind work as one?
    max_units = max(1, ours.batch // cpu) if joined else 1
    per = replace(job, batch=ours.batch, chips=None)

    def at(units: int) -> Plan:
        topo = Topology(other.family, other.top, units)
        return plan(
            per if units * cpu <= ours.batch else replace(per, chips=ours.batch),
            topo,
            model,
            price_kwh,
            price_chip_hour,
        )

    target = ours.time_to_train_s * (1 + 1e-9)
    lo, hi = 1, 1
    while at(hi).time_to_train_s > target:  # doubling: the first power of two that matches
        if hi == max_units:
            return Equivalence(
                unit=other.unit, units_needed=None, max_units=max_units, plan=at(max_units)
            )
        lo, hi = hi + 1, min(2 * hi, max_units)
    while lo < hi:  # then bisection between the last miss and the first match
        mid = (lo + hi) // 2
        if at(mid).time_to_train_s <= target:
            hi = mid
        else:
            lo = mid + 1
    return Equivalence(unit=other.unit, units_needed=hi, max_units=max_units, plan=at(hi))


__all__ = [
    "DEFAULT_BATCH_PER_CHIP",
    "Equivalence",
    "Job",
    "Plan",
    "StepTime",
    "allreduce_s",
    "equivalence",
    "hierarchical_allreduce_s",
    "plan",
    "ring_allreduce_s",
]
