"""The compute hierarchy: systems from their published figures, a performance and energy planner,
its calibration on this machine, and topology-aware placement.

- :mod:`dojo.compute.specs`: the spec files (``specs/*.toml``), every figure with its source.
- :mod:`dojo.compute.topology`: :class:`Topology`, blocks at every level and their names.
- :mod:`dojo.compute.perf`: step time, time to train, energy and cost; equivalence of systems.
- :mod:`dojo.compute.calibration`, :mod:`dojo.bench.plan`: the CPU's terms, measured and fitted.
- :mod:`dojo.compute.placement`: :class:`Allocator`, the smallest contiguous block for a job.
- :mod:`dojo.compute.draw`: a picture of the hierarchy with the jobs placed on it.
"""

from dojo.compute.perf import Job, Plan, equivalence, plan, ring_allreduce_s
from dojo.compute.placement import Allocator, Placement
from dojo.compute.topology import Block, Topology, parse_system
from dojo.compute.workload import Workload, net_workload

__all__ = [
    "Allocator",
    "Block",
    "Job",
    "Placement",
    "Plan",
    "Topology",
    "Workload",
    "equivalence",
    "net_workload",
    "parse_system",
    "plan",
    "ring_allreduce_s",
]
