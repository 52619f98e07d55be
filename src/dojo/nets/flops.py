"""FLOPs and parameters of the networks, counted by torch (not estimated by hand).

:func:`flops_per_sample` runs the model once on a synthetic batch under
``torch.utils.flop_counter.FlopCounterMode``, which counts the floating-point operations of
matmuls, convolutions (and their transposes) and attention from the shapes of the ops actually
dispatched: 2 FLOPs per multiply-add. Element-wise ops (ReLU, softmax, norms, the loss) are not
counted; in these conv/linear nets they are a few percent at most, and MFU figures elsewhere
are quoted the same way. With ``backward=True`` the backward pass is counted too (measured, not
assumed): for a conv/linear net it is about 2x the forward (gradients for inputs and for
weights), so forward + backward is about 3x the forward, less where the first layer needs no
gradient for its input (the images).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dojo.nets.occupancy import NET_KINDS, MultiTaskNet, OccupancyConfig, OccupancyNet, make_net
from dojo.nets.policy import SIZES, DrivingPolicy, PolicyConfig, parameter_count
from dojo.nets.targets import PLANNER_TARGETS


def example_inputs(
    model: nn.Module, config: PolicyConfig, batch: int = 1
) -> tuple[torch.Tensor, ...]:
    """Random inputs ``model`` accepts for ``batch`` cars, on its device: (images[, speed, command])."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, config.image_shape(batch), dtype=torch.uint8, generator=gen).to(
        device
    )
    if isinstance(model, OccupancyNet):
        return (images,)
    speed = (torch.rand(batch, generator=gen) * 30.0).to(device)  # [m/s]
    command = torch.randint(0, config.commands, (batch,), generator=gen).to(device)
    return images, speed, command


def count_flops(
    model: nn.Module, config: PolicyConfig, batch: int = 1, backward: bool = False
) -> int:
    """FLOPs of one forward (and backward, if asked) of ``model`` on ``batch`` samples."""
    inputs = example_inputs(model, config, batch)
    was_training = model.training
    model.train(backward)
    try:
        with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(backward):
            out = model(*inputs)
            if backward:
                outputs = out if isinstance(out, tuple) else (out,)
                sum(o.float().sum() for o in outputs).backward()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def flops_per_sample(model: nn.Module, config: PolicyConfig, backward: bool = False) -> int:
    """FLOPs of one sample (a batch of 1): forward, or forward + backward with ``backward``."""
    if isinstance(model, (OccupancyNet, MultiTaskNet)) and not isinstance(config, OccupancyConfig):
        raise ValueError(f"{type(model).__name__} needs an OccupancyConfig for its inputs.")
    if not isinstance(model, (DrivingPolicy, OccupancyNet, MultiTaskNet)):
        raise ValueError(f"flops_per_sample: unknown network {type(model).__name__}.")
    return count_flops(model, config, 1, backward)


def size_table(config: OccupancyConfig | None = None) -> list[dict[str, Any]]:
    """Parameters and FLOPs per sample of every net x size, for ``config``'s rig (default rig;
    ``perception`` with its planner heads).

    One row a net and size: ``net``, ``size``, ``parameters``, ``forward_flops``,
    ``train_flops`` (forward + backward, measured) and their ratio.
    """
    base = config or OccupancyConfig()
    rows = []
    for kind in NET_KINDS:
        for size in SIZES:
            planner = len(PLANNER_TARGETS) if kind == "perception" else base.planner
            cfg = OccupancyConfig(**{**base.to_dict(), "size": size, "planner": planner})
            net_cfg: PolicyConfig = cfg.policy_config() if kind == "policy" else cfg
            torch.manual_seed(0)
            model = make_net(kind, net_cfg)
            fwd = flops_per_sample(model, net_cfg)
            both = flops_per_sample(model, net_cfg, backward=True)
            rows.append(
                {
                    "net": kind,
                    "size": size,
                    "parameters": parameter_count(model),
                    "forward_flops": fwd,
                    "train_flops": both,
                    "train_over_forward": both / fwd,
                }
            )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`size_table` rows (MFLOPs, parameters in thousands)."""
    lines = [
        "| net | size | parameters | forward MFLOPs/sample | fwd+bwd MFLOPs/sample | ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['net']} | {r['size']} | {r['parameters']:,} | {r['forward_flops'] / 1e6:,.1f} | "
            f"{r['train_flops'] / 1e6:,.1f} | {r['train_over_forward']:.2f} |"
        )
    return "\n".join(lines)


__all__ = ["count_flops", "example_inputs", "flops_per_sample", "format_table", "size_table"]
