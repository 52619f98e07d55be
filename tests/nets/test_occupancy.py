"""The occupancy head, the occupancy and multi-task nets, the IoU metric and the FLOP counter."""

from __future__ import annotations

import math

import pytest
import torch

from dojo.errors import DojoConfigError
from dojo.nets import (
    SIZES,
    DrivingPolicy,
    MultiTaskNet,
    OccupancyConfig,
    OccupancyNet,
    PolicyConfig,
    count_flops,
    flops_per_sample,
    format_table,
    iou_counts,
    iou_from_counts,
    iou_per_class,
    make_net,
    occupancy_iou,
    occupancy_loss,
    parameter_count,
)
from dojo.world.occupancy import CLASS_NAMES, EGO, FREE, NOT_DRIVABLE, OBSTACLE, VEHICLE

SMALL = OccupancyConfig(size="tiny", cameras=2, frames=2, height=32, width=64, rows=20, cols=12)


def _inputs(
    cfg: OccupancyConfig, batch: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, cfg.image_shape(batch), dtype=torch.uint8, generator=gen)
    return (
        images,
        torch.rand(batch, generator=gen) * 30.0,
        torch.randint(0, cfg.commands, (batch,), generator=gen),
    )


# ---------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("rgb", [False, True])
def test_occupancy_net_predicts_the_whole_grid(rgb: bool) -> None:
    cfg = OccupancyConfig(
        size="tiny", cameras=3, rgb=rgb, rows=21, cols=13
    )  # not multiples of 8: cropped
    images, _, _ = _inputs(cfg, 2)
    logits = OccupancyNet(cfg)(images)
    assert logits.shape == (2, len(CLASS_NAMES), 21, 13) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_default_grid_is_the_worlds_and_both_returns_both_outputs() -> None:
    cfg = OccupancyConfig()
    assert (cfg.rows, cfg.cols, cfg.classes) == (120, 80, 5)
    images, speed, command = _inputs(cfg, 2)
    controls, logits = MultiTaskNet(cfg)(images, speed, command)
    assert controls.shape == (2, 2) and logits.shape == (2, 5, 120, 80)


def test_both_shares_one_backbone_and_its_policy_is_the_plain_policy() -> None:
    torch.manual_seed(0)
    both = MultiTaskNet(SMALL)
    assert isinstance(both.policy, DrivingPolicy)
    head_params = parameter_count(both.occupancy)
    assert parameter_count(both) == parameter_count(both.policy) + head_params  # no second backbone
    images, speed, command = _inputs(SMALL, 3)
    controls, _ = both(images, speed, command)
    assert torch.equal(controls, both.policy(images, speed, command))
    occ = OccupancyNet(SMALL)
    assert parameter_count(occ) == parameter_count(occ.encoder) + head_params


def test_gradients_of_both_losses_reach_the_shared_backbone() -> None:
    torch.manual_seed(0)
    both = MultiTaskNet(SMALL)
    images, speed, command = _inputs(SMALL, 2)
    _, logits = both(images, speed, command)
    target = torch.zeros(2, SMALL.rows, SMALL.cols, dtype=torch.uint8)
    occupancy_loss(logits, target, torch.ones(2, dtype=torch.bool)).backward()
    assert both.policy.stem.weight.grad is not None and both.policy.stem.weight.grad.abs().sum() > 0
    assert both.policy.head[-1].weight.grad is None  # the policy head is not on this loss's path


def test_make_net_builds_each_kind_and_refuses_the_wrong_config() -> None:
    assert isinstance(make_net("policy", SMALL.policy_config().to_dict()), DrivingPolicy)
    assert isinstance(make_net("occupancy", SMALL.to_dict()), OccupancyNet)
    assert isinstance(make_net("both", SMALL), MultiTaskNet)
    with pytest.raises(DojoConfigError, match="needs an OccupancyConfig"):
        make_net("occupancy", PolicyConfig())
    with pytest.raises(DojoConfigError, match="not known"):
        make_net("lidar", SMALL)
    with pytest.raises(DojoConfigError, match="rows=0"):
        OccupancyConfig(rows=0)
    assert OccupancyConfig.from_dict(SMALL.to_dict()) == SMALL


def test_occupancy_net_checks_its_images() -> None:
    with pytest.raises(
        DojoConfigError, match=r"OccupancyNet images must have shape \(B, 2, 2, 32, 64\)"
    ):
        OccupancyNet(SMALL)(torch.zeros(1, 3, 2, 32, 64, dtype=torch.uint8))


# ------------------------------------------------------------------------------- the metric
def _grid(*cells: tuple[int, int, int]) -> torch.Tensor:
    """A (1, 4, 4) FREE grid with (row, col, class) cells set."""
    g = torch.full((1, 4, 4), FREE, dtype=torch.uint8)
    for r, c, k in cells:
        g[0, r, c] = k
    return g


def test_iou_is_one_for_a_perfect_prediction_and_zero_for_a_disjoint_one() -> None:
    target = _grid((0, 0, VEHICLE), (0, 1, VEHICLE), (3, 3, NOT_DRIVABLE), (2, 2, EGO))
    assert occupancy_iou(target.clone(), target) == 1.0
    disjoint = _grid((1, 0, VEHICLE), (1, 1, VEHICLE), (3, 2, NOT_DRIVABLE), (2, 2, EGO))
    assert occupancy_iou(disjoint, target) == 0.0


def test_iou_of_a_hand_made_half_overlap() -> None:
    # vehicle: target 4 cells, prediction 2 of them -> 2/4; obstacle: target {a, b}, prediction
    # {b, c} -> 1/3; not_drivable in neither: not counted; EGO and FREE never count
    target = _grid(
        (0, 0, VEHICLE),
        (0, 1, VEHICLE),
        (0, 2, VEHICLE),
        (0, 3, VEHICLE),
        (2, 0, OBSTACLE),
        (2, 1, OBSTACLE),
        (3, 3, EGO),
    )
    pred = _grid((0, 0, VEHICLE), (0, 1, VEHICLE), (2, 1, OBSTACLE), (2, 2, OBSTACLE))
    counts = iou_counts(pred, target)
    assert counts.tolist() == [
        [2, 1, 0],
        [4, 3, 0],
    ]  # (intersections, unions) of vehicle, obstacle, not_drivable
    assert occupancy_iou(pred, target) == pytest.approx((2 / 4 + 1 / 3) / 2)
    per_class = iou_per_class(counts)
    assert per_class["vehicle"] == 0.5 and per_class["obstacle"] == pytest.approx(1 / 3)
    assert math.isnan(per_class["not_drivable"]) and list(per_class) == [
        "vehicle",
        "obstacle",
        "not_drivable",
    ]


def test_iou_pools_cells_over_windows_skips_unlabelled_ones_and_is_nan_when_empty() -> None:
    a, b = _grid((0, 0, VEHICLE)), _grid((1, 1, VEHICLE), (1, 2, VEHICLE))
    pred = torch.cat([a, _grid((1, 1, VEHICLE))])
    target = torch.cat([a, b])
    assert occupancy_iou(pred, target) == pytest.approx(2 / 3)  # pooled: (1 + 1) / (1 + 2)
    assert occupancy_iou(pred, target, torch.tensor([True, False])) == 1.0
    split = iou_counts(pred[:1], target[:1]) + iou_counts(pred[1:], target[1:])
    assert torch.equal(split, iou_counts(pred, target))  # counts add up across batches
    assert math.isnan(iou_from_counts(iou_counts(_grid(), _grid())))


def test_occupancy_loss_masks_unlabelled_windows_and_divides_by_the_batch() -> None:
    logits = torch.randn(2, 5, 4, 4)
    target = torch.randint(0, 5, (2, 4, 4))
    both = occupancy_loss(logits, target, torch.tensor([True, True]))
    first = occupancy_loss(logits[:1], target[:1], torch.tensor([True]))
    masked = occupancy_loss(logits, target, torch.tensor([True, False]))
    assert masked == pytest.approx(float(first) / 2)
    assert occupancy_loss(
        logits, target, torch.tensor([True, True]), reduction="sum"
    ) == pytest.approx(float(both) * 2)


# ------------------------------------------------------------------------------ it learns
def test_a_tiny_occupancy_net_overfits_one_small_batch() -> None:
    torch.manual_seed(0)
    cfg = SMALL
    net = OccupancyNet(cfg)
    images, _, _ = _inputs(cfg, 4)
    target = torch.full((4, cfg.rows, cfg.cols), FREE, dtype=torch.uint8)
    target[:, :, :2] = NOT_DRIVABLE  # the road's edges
    target[:, :, -2:] = NOT_DRIVABLE
    for i in range(4):  # one car in a different place in each window: only the images tell where
        target[i, 1 + 4 * i : 5 + 4 * i, 3 + i : 6 + i] = VEHICLE
    target[:, 14:16, 4:6] = OBSTACLE
    labelled = torch.ones(4, dtype=torch.bool)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    with torch.no_grad():
        before = occupancy_iou(net(images).argmax(1), target)
    for _ in range(300):  # ~3 s on one core
        opt.zero_grad()
        occupancy_loss(net(images), target, labelled).backward()
        opt.step()
    with torch.no_grad():
        after = occupancy_iou(net(images).argmax(1), target)
    assert after > 0.8 and after > before + 0.5, (before, after)


# ------------------------------------------------------------------------------- FLOPs
def test_flops_are_counted_grow_with_size_and_scale_with_the_batch() -> None:
    cfg = OccupancyConfig()
    per_size = {}
    for size in SIZES:
        sized = OccupancyConfig(**{**cfg.to_dict(), "size": size})
        per_size[size] = flops_per_sample(OccupancyNet(sized), sized)
    assert 0 < per_size["tiny"] < per_size["base"] < per_size["large"]
    net = OccupancyNet(cfg)
    one, four, seven = (count_flops(net, cfg, batch=b) for b in (1, 4, 7))
    assert seven - four == four - one  # linear in the batch: a fixed cost per sample...
    assert 0 < 4 * one - four < 0.03 * four  # ...plus the cell queries' projection, once per batch
    train = flops_per_sample(net, cfg, backward=True)
    assert 2.5 * one < train < 3.1 * one  # backward ~ 2x forward (the images need no gradient)


def test_policy_and_both_flops_and_the_table() -> None:
    cfg = OccupancyConfig()
    policy = flops_per_sample(DrivingPolicy(cfg.policy_config()), cfg.policy_config())
    occupancy = flops_per_sample(OccupancyNet(cfg), cfg)
    both = flops_per_sample(MultiTaskNet(cfg), cfg)
    assert 0 < policy < both and occupancy < both < policy + occupancy  # one backbone, not two
    table = format_table(
        [
            {
                "net": "both",
                "size": "tiny",
                "parameters": 1234,
                "forward_flops": 2e6,
                "train_flops": 6e6,
                "train_over_forward": 3.0,
            }
        ]
    )
    assert "| both | tiny | 1,234 | 2.0 | 6.0 | 3.00 |" in table
