"""The planner heads: the targets' encoding, the masked loss in closed form, the errors on
hand-made predictions, and the nets that carry the heads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dojo.errors import DojoConfigError
from dojo.nets import OccupancyConfig, PlannerErrors, make_net, planner_loss
from dojo.nets.occupancy import MultiTaskNet, PerceptionNet
from dojo.nets.targets import PLANNER_TARGETS, planner_targets

P = len(PLANNER_TARGETS)


def _rows(**over: list[float]) -> dict[str, np.ndarray]:
    base = {
        "lead_id": [3.0, -1.0, 2.0, 5.0],
        "lead_gap_m": [25.0, 1.0e4, 120.0, 0.1],
        "closing_mps": [4.0, 0.0, 1.0, -2.0],
        "ttc_s": [6.25, math.inf, 120.0, math.inf],
        "left_ahead_gap_m": [30.0, math.nan, 1.0e4, 12.0],
        "left_behind_gap_m": [8.0, math.nan, 90.0, 3.0],
        "right_ahead_gap_m": [math.nan, 40.0, 2.0, 1.0e4],
        "right_behind_gap_m": [math.nan, 15.0, 0.2, 70.0],
    }
    base.update(over)
    return {k: np.asarray(v, dtype=np.float64) for k, v in base.items()}


def test_planner_targets_encode_gaps_in_log_bounded_and_mask_what_is_not_there() -> None:
    values, valid = planner_targets(_rows())
    assert values.shape == valid.shape == (4, P) and values.dtype == np.float32
    ln = math.log
    # lead: 25 m; none (the reach); beyond the reach (the reach); under the floor (0.5 m)
    assert values[:, 0] == pytest.approx([ln(25), ln(80), ln(80), ln(0.5)], rel=1e-6)
    assert valid[:, 0].all()
    # closing and 1/TTC only with a lead within the reach
    assert valid[:, 1].tolist() == valid[:, 2].tolist() == [True, False, False, True]
    assert values[0, 1] == pytest.approx(4.0) and values[3, 1] == pytest.approx(-2.0)
    assert values[0, 2] == pytest.approx(0.16) and values[3, 2] == 0.0  # opening: 1/TTC 0
    # next lanes: NaN is no lane (not asked), 1e4 nobody (the reach), clipped to [0.5, 80]
    assert valid[:, 3].tolist() == [True, False, True, True]
    assert values[2, 3] == pytest.approx(ln(80)) and values[2, 6] == pytest.approx(ln(0.5))
    assert valid[:, 5].tolist() == [False, True, True, True]
    # 1/TTC is bounded: TTC 0.1 s counts as 0.5 s
    v, _ = planner_targets(_rows(ttc_s=[0.1, math.inf, 1.0, math.inf]))
    assert v[0, 2] == pytest.approx(2.0)


def test_planner_loss_is_the_masked_scaled_huber_mean() -> None:
    pred = torch.tensor(
        [[math.log(20.0), 2.0, 0.3, 1.0, 2.0, 3.0, 4.0], [3.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
    )
    target = pred.clone()
    target[0, 0] = math.log(22.0)  # 0.0953 in ln gap: 0.953 scale units, quadratic
    target[0, 1] = 5.0  # 3 m/s off: 3 units, linear
    target[0, 2] = 0.35  # 0.05 1/s: 0.5 units
    target[1, 3] = 0.5  # 5 units, linear, but not asked for
    target[1, 1] = float("nan")  # a target not asked for may be anything
    valid = torch.ones(2, P, dtype=torch.bool)
    valid[1, 3] = valid[1, 1] = False

    def huber(e: float) -> float:
        return 0.5 * e * e if abs(e) < 1 else abs(e) - 0.5

    window0 = (huber(math.log(22 / 20) / 0.1) + huber(3.0) + huber(0.05 / 0.1)) / P
    expected = (window0 + 0.0) / 2
    got = planner_loss(pred, target, valid)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert planner_loss(pred, target, valid, reduction="sum").item() == pytest.approx(
        2 * expected, rel=1e-5
    )
    # gradients only where a target is asked for
    p = pred.clone().requires_grad_(True)
    planner_loss(p, target, valid).backward()
    assert p.grad is not None and p.grad[1].abs().sum() == 0 and p.grad[0, :3].abs().min() > 0
    with pytest.raises(DojoConfigError, match="same"):
        planner_loss(pred, target[:, :3], valid)
    with pytest.raises(DojoConfigError, match="reduction"):
        planner_loss(pred, target, valid, reduction="max")


def _encode(phys: np.ndarray) -> torch.Tensor:
    e = phys.copy()
    for i in (0, 3, 4, 5, 6):
        e[:, i] = np.log(phys[:, i])
    return torch.tensor(e, dtype=torch.float32)


def test_planner_errors_are_medians_over_the_windows_they_are_defined_on() -> None:
    # true: leads at 10, 30, 60 m and none (80); closing 2, -1, 3, 0
    true = np.array(
        [
            [10.0, 2.0, 0.2, 20.0, 80.0, 5.0, 9.0],
            [30.0, -1.0, 0.0, 40.0, 10.0, 80.0, 9.0],
            [60.0, 3.0, 0.05, 80.0, 80.0, 80.0, 80.0],
            [80.0, 0.0, 0.0, 50.0, 5.0, 10.0, 20.0],
        ]
    )
    pred = true.copy()
    pred[:, 0] = [11.0, 27.0, 66.0, 40.0]  # rel 0.1, 0.1, 0.1; the no-lead window is not scored
    pred[:, 1] = [2.5, 1.0, 0.0, 9.0]  # near (< 40 m): 0.5, 2.0
    pred[:, 2] = [0.1, 0.0, 0.15, 1.0]  # |err| 0.1, 0, 0.1 with a lead
    pred[:, 3] = [22.0, 30.0, 10.0, 50.0]  # rel 0.1, 0.25, (beyond reach), 0
    valid = np.ones_like(true, dtype=bool)
    valid[3, 1] = valid[3, 2] = False  # no lead
    valid[1, 6] = False  # no lane
    errors = PlannerErrors()
    errors.add(_encode(pred[:2]), _encode(true[:2]), torch.tensor(valid[:2]))
    errors.add(_encode(pred[2:]), _encode(true[2:]), torch.tensor(valid[2:]))
    s = errors.summary()
    assert s["lead_gap_rel_error_median"] == pytest.approx(0.1, rel=1e-4)
    assert s["lead_gap_windows"] == 3
    assert s["closing_speed_error_mps_median"] == pytest.approx(1.25, rel=1e-4)
    assert s["closing_speed_windows"] == 2
    assert s["inv_ttc_error_per_s_median"] == pytest.approx(0.1, rel=1e-4)
    assert s["left_ahead_gap_rel_error_median"] == pytest.approx(0.1, rel=1e-4)  # 0.1, .25, 0
    assert s["right_behind_gap_rel_error_median"] == pytest.approx(0.0, abs=1e-5)
    # pooled processes give the same as one
    other = PlannerErrors()
    other.merge([errors.state()])
    assert other.summary() == s
    empty = PlannerErrors().summary()
    assert math.isnan(empty["lead_gap_rel_error_median"]) and empty["lead_gap_windows"] == 0


def test_the_perception_and_both_nets_carry_the_planner_heads() -> None:
    cfg = OccupancyConfig(size="tiny", cameras=2, rows=40, cols=16, planner=P)
    images = torch.randint(0, 255, (3, 2, 2, 48, 96), dtype=torch.uint8)
    net = make_net("perception", cfg)
    assert isinstance(net, PerceptionNet)
    logits, planner = net(images)
    assert logits.shape == (3, 5, 40, 16) and planner.shape == (3, P)
    # a fresh head starts at the offsets: a 20 m gap, nothing closing
    assert torch.exp(planner[:, 0]).tolist() == pytest.approx([20.0] * 3, rel=1e-5)
    both = make_net("both", cfg)
    assert isinstance(both, MultiTaskNet)
    out = both(images, torch.zeros(3), torch.zeros(3, dtype=torch.long))
    assert len(out) == 3 and out[2].shape == (3, P)
    plain = make_net("both", OccupancyConfig(size="tiny", cameras=2, rows=40, cols=16))
    assert len(plain(images, torch.zeros(3), torch.zeros(3, dtype=torch.long))) == 2
    # a config written before the planner heads existed has none
    old = {k: v for k, v in cfg.to_dict().items() if k != "planner"}
    assert OccupancyConfig.from_dict(old).planner == 0
    with pytest.raises(DojoConfigError, match="planner"):
        make_net("perception", OccupancyConfig(size="tiny"))
    with pytest.raises(DojoConfigError, match="planner=3"):
        OccupancyConfig(planner=3)
