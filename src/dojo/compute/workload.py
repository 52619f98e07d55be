"""What one training sample costs: FLOPs (forward + backward, counted by torch) and parameters.

:func:`net_workload` builds the real net (``dojo.nets``) at its default rig and counts a training
step's FLOPs per sample with :func:`dojo.nets.flops.flops_per_sample`; the parameter count gives
the gradient bytes every step all-reduces. :class:`Workload` can also be made by hand (for a
net that is not in ``dojo.nets``, or a test).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from dojo.errors import DojoConfigError
from dojo.nets.options import NET_SIZES
from dojo.validate import store_canonical, whole

NETS = ("policy", "occupancy", "both")
SIZES = NET_SIZES
STATE_BYTES_PER_PARAM = (
    16  # [B] weight + gradient + two AdamW moments, fp32 (or bf16 + fp32 master)
)


@dataclass(frozen=True)
class Workload:
    """A training step's cost per sample: ``train_flops_per_sample`` [FLOP], ``params``."""

    name: str
    train_flops_per_sample: float
    params: int

    def __post_init__(self) -> None:
        if not self.train_flops_per_sample > 0:
            raise DojoConfigError(f"Workload {self.name!r}: FLOPs per sample must be positive.")
        store_canonical(self, "params", whole(f"Workload {self.name!r}: params", self.params, 1))

    def gradient_bytes(self, precision: str) -> float:
        """Bytes all-reduced per step: 4 a parameter in fp32/tf32, 2 in the 16- and 8-bit formats."""
        return self.params * (4 if precision in ("fp32", "tf32") else 2)

    @property
    def state_bytes(self) -> float:
        """Weights, gradients and optimizer moments one data-parallel replica holds [B]."""
        return float(self.params * STATE_BYTES_PER_PARAM)


@cache
def net_workload(net: str = "policy", size: str = "base") -> Workload:
    """The workload of ``dojo.nets``' ``net`` at ``size`` on the default rig (FLOPs counted by torch)."""
    if net not in NETS:
        raise DojoConfigError(f"net={net!r} is not known; choose one of: {', '.join(NETS)}.")
    if size not in SIZES:
        raise DojoConfigError(f"size={size!r} is not known; choose one of: {', '.join(SIZES)}.")
    import torch

    from dojo.nets.flops import flops_per_sample
    from dojo.nets.occupancy import OccupancyConfig, make_net
    from dojo.nets.policy import PolicyConfig, parameter_count

    config = PolicyConfig(size=size) if net == "policy" else OccupancyConfig(size=size)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = make_net(net, config)
    return Workload(
        name=f"{net}/{size}",
        train_flops_per_sample=float(flops_per_sample(model, config, backward=True)),
        params=parameter_count(model),
    )


__all__ = ["NETS", "SIZES", "STATE_BYTES_PER_PARAM", "Workload", "net_workload"]
