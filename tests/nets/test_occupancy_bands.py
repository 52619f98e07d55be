"""The rare-class occupancy losses in closed form, the IoU per distance band, the per-cell prior,
and the spatial head's shapes."""

from __future__ import annotations

import math

import pytest
import torch

from dojo.errors import DojoConfigError
from dojo.nets import (
    DISTANCE_BANDS_M,
    MultiTaskNet,
    OccupancyConfig,
    OccupancyNet,
    band_masks,
    cell_distance_m,
    class_histogram,
    class_weights,
    occupancy_loss,
    prior_iou_counts,
    region_iou_counts,
    region_ious,
)
from dojo.nets.policy import POOL_GRID
from dojo.world.occupancy import (
    CLASS_NAMES,
    EGO,
    FREE,
    NOT_DRIVABLE,
    OBSTACLE,
    VEHICLE,
    OccupancySpec,
)

K = len(CLASS_NAMES)


# ------------------------------------------------------------------------------------ losses
def test_focal_loss_of_a_known_logit_is_the_formula() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, 0.0, -3.0]).view(1, K, 1, 1)  # one window, one cell
    labelled = torch.tensor([True])
    p = torch.softmax(logits.flatten(), 0).tolist()
    for t in (FREE, VEHICLE):
        target = torch.full((1, 1, 1), t)
        for gamma in (0.0, 0.5, 2.0):
            got = occupancy_loss(logits, target, labelled, kind="focal", gamma=gamma)
            want = (1.0 - p[t]) ** gamma * -math.log(p[t])
            assert float(got) == pytest.approx(want, rel=1e-6)
        # gamma 0 is plain cross-entropy
        ce = occupancy_loss(logits, target, labelled, kind="ce")
        assert float(ce) == pytest.approx(-math.log(p[t]), rel=1e-6)


def test_the_rare_class_weight_scales_exactly_the_vehicle_and_obstacle_cells() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, K, 4, 3, generator=gen)
    target = torch.full((2, 4, 3), FREE)
    target[0, 0, 0] = target[1, 2, 1] = VEHICLE
    target[0, 3, 2] = OBSTACLE
    target[1, 1, 1] = NOT_DRIVABLE
    labelled = torch.tensor([True, True])
    per_cell = torch.nn.functional.cross_entropy(logits, target, reduction="none")  # (2, 4, 3)
    rare = (target == VEHICLE) | (target == OBSTACLE)
    ce = occupancy_loss(logits, target, labelled, kind="ce")
    for w in (1.0, 3.0, 10.0):
        weighted = occupancy_loss(logits, target, labelled, kind="weighted", rare_weight=w)
        # mean over 12 cells a window, then over 2 windows: (w - 1) x the rare cells' share
        extra = (w - 1.0) * float(per_cell[rare].sum()) / 24.0
        assert float(weighted) == pytest.approx(float(ce) + extra, rel=1e-6)
    assert class_weights(K, 4.0).tolist() == [1.0, 4.0, 4.0, 1.0, 1.0]


@pytest.mark.parametrize("kind", ["ce", "weighted", "focal"])
def test_every_loss_masks_unlabelled_windows_and_divides_by_the_whole_batch(kind: str) -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, K, 2, 2, generator=gen)
    target = torch.randint(0, K, (3, 2, 2), generator=gen)
    one = occupancy_loss(logits[:1], target[:1], torch.tensor([True]), kind=kind)
    masked = occupancy_loss(logits, target, torch.tensor([True, False, False]), kind=kind)
    assert float(masked) == pytest.approx(float(one) / 3.0, rel=1e-6)
    summed = occupancy_loss(logits, target, torch.tensor([True, False, False]), "sum", kind=kind)
    assert float(summed) == pytest.approx(float(one), rel=1e-6)


def test_a_bad_loss_kind_or_reduction_is_one_clear_error() -> None:
    args = (torch.zeros(1, K, 1, 1), torch.zeros(1, 1, 1, dtype=torch.long), torch.tensor([True]))
    with pytest.raises(DojoConfigError, match="kind='dice' is not known; choose one of: ce"):
        occupancy_loss(*args, kind="dice")
    with pytest.raises(DojoConfigError, match="reduction='none' must be 'mean' or 'sum'"):
        occupancy_loss(*args, reduction="none")


# ------------------------------------------------------------------------- IoU per band
# A 6 x 4 grid of 1 m cells, 4 m ahead, 2 m behind, 2 m aside: cell (r, c) is centred
# x = 3.5 - r ahead, y = 1.5 - c left of the ego.
SPEC = OccupancySpec(cell_m=1.0, forward_m=4.0, backward_m=2.0, side_m=2.0)
BANDS = ((0.0, 2.0), (2.0, 4.0))


def _grid(*cells: tuple[int, int, int]) -> torch.Tensor:
    g = torch.full((1, SPEC.rows, SPEC.cols), FREE, dtype=torch.uint8)
    for r, c, k in cells:
        g[0, r, c] = k
    return g


def test_cell_distance_is_from_the_ego_centre() -> None:
    d = cell_distance_m(SPEC)
    assert d.shape == (6, 4)
    assert d[3, 1] == pytest.approx(math.hypot(0.5, 0.5))
    assert d[0, 3] == pytest.approx(math.hypot(3.5, 1.5))
    default = cell_distance_m()
    assert default.shape == (120, 80) and default.max() == pytest.approx(math.hypot(39.75, 19.75))


def test_band_iou_of_a_hand_made_grid_pair() -> None:
    # target vehicles: 2 near cells (0.71 m, 1.58 m), 2 far (3.54 m, 2.55 m); the prediction
    # finds 1 near and both far and adds one far cell (2.55 m): near 1/2, far 2/3, all 3/5
    target = _grid((3, 1, VEHICLE), (2, 1, VEHICLE), (0, 1, VEHICLE), (1, 1, VEHICLE), (4, 1, EGO))
    pred = _grid(
        (3, 1, VEHICLE), (0, 1, VEHICLE), (1, 1, VEHICLE), (1, 2, VEHICLE), (5, 0, OBSTACLE)
    )
    masks = band_masks(cell_distance_m(SPEC), BANDS)
    assert masks.shape == (3, 6, 4) and bool(masks[0].all())
    assert int(masks[1].sum() + masks[2].sum()) == 24  # every cell of this grid is within 4 m
    counts = region_iou_counts(pred, target, masks)
    assert counts.shape == (2, 3, 3)
    ious = region_ious(counts, BANDS)
    assert ious["vehicle"] == pytest.approx(3 / 5)
    assert ious["vehicle_0_2"] == pytest.approx(1 / 2)
    assert ious["vehicle_2_4"] == pytest.approx(2 / 3)
    assert ious["obstacle"] == 0.0  # only predicted
    assert math.isnan(ious["not_drivable"])  # in neither
    # unlabelled windows are left out
    both = region_iou_counts(
        torch.cat([pred, target]), torch.cat([target, pred]), masks, torch.tensor([True, False])
    )
    assert torch.equal(both, counts)


def test_bands_and_counts_refuse_what_does_not_fit() -> None:
    with pytest.raises(DojoConfigError, match=r"band \(5.0, 2.0\) must have 0 <= lo < hi"):
        band_masks(cell_distance_m(SPEC), ((5.0, 2.0),))
    masks = band_masks(cell_distance_m(SPEC), BANDS)
    with pytest.raises(DojoConfigError, match="do not fit grids"):
        region_iou_counts(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), masks)
    with pytest.raises(DojoConfigError, match="do not fit 4 bands"):
        region_ious(region_iou_counts(_grid(), _grid(), masks), DISTANCE_BANDS_M)


def test_the_prior_is_the_mode_map_scored_window_by_window() -> None:
    gen = torch.Generator().manual_seed(3)
    # cells biased to a class each, so the mode map holds vehicles, obstacles and road edges
    bias = torch.randint(0, K, (SPEC.rows, SPEC.cols), generator=gen)
    noise = torch.randint(0, K, (40, SPEC.rows, SPEC.cols), generator=gen)
    keep = torch.rand(40, SPEC.rows, SPEC.cols, generator=gen) < 0.6
    target = torch.where(keep, bias[None], noise).to(torch.uint8)  # (40, R, S)
    labelled = torch.rand(40, generator=gen) < 0.8
    masks = band_masks(cell_distance_m(SPEC), BANDS)
    hist = class_histogram(target, K, labelled)
    assert hist.shape == (K, SPEC.rows, SPEC.cols) and int(hist.sum()) == int(labelled.sum()) * 24
    mode = hist.argmax(dim=0)
    scored = region_iou_counts(mode.expand_as(target), target, masks, labelled)
    assert torch.equal(prior_iou_counts(hist, masks), scored)
    assert 0.0 < region_ious(scored, BANDS)["vehicle"] < 1.0


# ------------------------------------------------------------------------ the spatial head
SMALL = OccupancyConfig(size="tiny", cameras=3, frames=2, height=32, width=64, rows=20, cols=12)


@pytest.mark.parametrize("head", ["pooled", "spatial"])
def test_an_untrained_net_of_either_head_predicts_the_whole_grid(head: str) -> None:
    cfg = OccupancyConfig(**{**SMALL.to_dict(), "head": head})
    images = torch.randint(0, 256, cfg.image_shape(2), dtype=torch.uint8)
    logits = OccupancyNet(cfg)(images)
    assert logits.shape == (2, K, 20, 12) and bool(torch.isfinite(logits).all())
    controls, grid = MultiTaskNet(cfg)(images, torch.zeros(2), torch.zeros(2, dtype=torch.long))
    assert controls.shape == (2, 2) and grid.shape == (2, K, 20, 12)


def test_the_spatial_head_attends_to_every_patch_of_every_camera() -> None:
    net = OccupancyNet(SMALL)
    assert SMALL.head == "spatial"
    images = torch.randint(0, 256, SMALL.image_shape(2), dtype=torch.uint8)
    tokens, maps = net.encoder.encode_features(images)
    assert tokens.shape == (2, 3, 64) and maps.shape == (2, 3, 64, *POOL_GRID)
    keys = net.occupancy.keys(tokens, maps)
    assert keys.shape == (2, 3 * (1 + POOL_GRID[0] * POOL_GRID[1]), 64)
    # one patch of one camera moves the prediction: the head reads the patches themselves
    moved = maps.clone()
    moved[0, 1, :, 2, 4] += 5.0
    assert not torch.allclose(net.occupancy(tokens, moved)[0], net.occupancy(tokens, maps)[0])
    assert torch.equal(net.occupancy(tokens, moved)[1], net.occupancy(tokens, maps)[1])
    with pytest.raises(DojoConfigError, match="needs the backbone's feature maps"):
        net.occupancy(tokens)


def test_the_policy_path_is_unchanged_by_the_feature_maps() -> None:
    net = MultiTaskNet(SMALL)
    images = torch.randint(0, 256, SMALL.image_shape(2), dtype=torch.uint8)
    speed, command = torch.rand(2) * 30.0, torch.tensor([0, 3])
    controls, _ = net(images, speed, command)
    assert torch.equal(controls, net.policy(images, speed, command))
    assert torch.equal(net.policy.encode(images), net.policy.encode_features(images)[0])


def test_a_config_written_before_the_head_existed_is_a_pooled_net() -> None:
    old = {k: v for k, v in SMALL.to_dict().items() if k != "head"}
    cfg = OccupancyConfig.from_dict(old)
    assert cfg.head == "pooled"
    # and its weights are the pooled head's, by name: no patch weights
    names = set(OccupancyNet(cfg).state_dict())
    assert not any("patch" in n for n in names) and "occupancy.cells" in names
    with pytest.raises(DojoConfigError, match="head='grid' is not known; choose one of: pooled"):
        OccupancyConfig(head="grid")
