"""DrivingPolicy and PolicyConfig through the public API: shapes, bounds, sharing, errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from dojo.errors import DojoConfigError
from dojo.nets import SIZES, DrivingPolicy, OccupancyConfig, PolicyConfig, parameter_count
from dojo.world.camera import CameraRig
from dojo.world.world import EGO_ACCEL_RANGE

SMALL = PolicyConfig(cameras=4, height=16, width=32)  # fast: one 1 x 2 feature map a camera


def inputs(cfg: PolicyConfig, batch: int = 4, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, cfg.image_shape(batch), generator=g, dtype=torch.uint8)
    speed = torch.rand(batch, generator=g) * 35.0
    command = torch.arange(batch) % cfg.commands
    return images, speed, command


def policy(cfg: PolicyConfig = SMALL, seed: int = 0) -> DrivingPolicy:
    torch.manual_seed(seed)
    return DrivingPolicy(cfg)


def assert_in_limits(out: torch.Tensor) -> None:
    assert torch.isfinite(out).all()
    assert (out[:, 0] >= EGO_ACCEL_RANGE[0]).all() and (out[:, 0] <= EGO_ACCEL_RANGE[1]).all()
    assert (out[:, 1].abs() <= 1.0).all()  # lane shift: at most one lane either way


@pytest.mark.parametrize("rgb", [False, True])
def test_output_shape_dtype_and_bounds(rgb: bool) -> None:
    cfg = PolicyConfig(height=16, width=32, rgb=rgb)
    out = policy(cfg)(*inputs(cfg, batch=5))
    assert out.shape == (5, 2) and out.dtype == torch.float32
    assert_in_limits(out)


def test_default_config_runs_on_the_default_rig_resolution() -> None:
    cfg = PolicyConfig()  # the default rig's cameras, k = 2, 48 x 96 grey
    rig = CameraRig.default()
    assert cfg.image_shape(3) == (3, len(rig.cameras), 2, *rig.image_shape[-2:])
    out = policy(cfg)(*inputs(cfg, batch=3))
    assert out.shape == (3, 2)
    assert_in_limits(out)


def test_extreme_inputs_stay_finite_and_in_limits() -> None:
    model = policy()
    images = torch.full(SMALL.image_shape(4), 1e30)
    images[1] = -1e30
    images[2] = float("inf")
    speed = torch.tensor([1e30, -1e30, float("inf"), float("-inf")])
    with torch.no_grad():
        assert_in_limits(model(images, speed, torch.tensor([0, 1, 2, 3])))


def test_saturated_head_reaches_exactly_the_actuator_limits() -> None:
    model = policy()
    last = model.head[-1]
    assert isinstance(last, torch.nn.Linear)
    images, speed, command = inputs(SMALL)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(100.0)
        top = model(images, speed, command)
        last.bias.fill_(-100.0)
        bottom = model(images, speed, command)
        last.bias.zero_()
        zero = model(images, speed, command)
    assert torch.equal(top, torch.tensor([[EGO_ACCEL_RANGE[1], 1.0]] * 4))
    assert torch.equal(bottom, torch.tensor([[EGO_ACCEL_RANGE[0], -1.0]] * 4))
    assert torch.equal(zero, torch.zeros(4, 2))  # zero pre-activation: coast, keep the lane


def test_uint8_and_float_images_give_the_same_controls() -> None:
    model = policy()
    images, speed, command = inputs(SMALL)
    with torch.no_grad():
        a = model(images, speed, command)
        b = model(images.float(), speed.double(), command.int())
    torch.testing.assert_close(a, b)


def test_same_seed_same_network_other_seed_other_network() -> None:
    args = inputs(SMALL)
    with torch.no_grad():
        a, b, c = policy(seed=7)(*args), policy(seed=7)(*args), policy(seed=8)(*args)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_command_and_speed_condition_the_output() -> None:
    model = policy()
    images, speed, _ = inputs(SMALL, batch=1)
    with torch.no_grad():
        per_command = [model(images, speed, torch.tensor([c])) for c in range(4)]
        slow = model(images, torch.tensor([0.0]), torch.tensor([0]))
    assert len({tuple(o.flatten().tolist()) for o in per_command}) == 4
    assert not torch.equal(slow, per_command[0])


def test_camera_weights_are_shared_only_the_embedding_grows() -> None:
    four, eight = policy(PolicyConfig(cameras=4)), policy(PolicyConfig(cameras=8))
    token = SIZES["tiny"].token
    assert parameter_count(eight) - parameter_count(four) == 4 * token
    shapes4 = {n: p.shape for n, p in four.named_parameters()}
    shapes8 = {n: p.shape for n, p in eight.named_parameters()}
    assert shapes4.keys() == shapes8.keys()
    assert [n for n in shapes4 if shapes4[n] != shapes8[n]] == ["camera_embedding"]


def test_swapping_cameras_and_their_embeddings_changes_nothing() -> None:
    """One backbone for all cameras: a camera's identity lives only in its embedding."""
    model = policy()
    images, speed, command = inputs(SMALL)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        before = model(images, speed, command)
        model.camera_embedding.copy_(model.camera_embedding[perm])
        after = model(images[:, perm], speed, command)
    torch.testing.assert_close(before, after)


def test_gradients_reach_every_parameter() -> None:
    model = policy().train()
    out = model(*inputs(SMALL))
    (out**2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_parameter_counts_grow_with_size_and_tiny_stays_small() -> None:
    counts = {size: parameter_count(DrivingPolicy(PolicyConfig(size=size))) for size in SIZES}
    assert 50_000 <= counts["tiny"] <= 300_000
    assert counts["tiny"] < counts["base"] < counts["large"]
    model = DrivingPolicy(SMALL)
    model.stem.requires_grad_(False)
    assert parameter_count(model, trainable_only=True) < parameter_count(model)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda i, s, c: (i[..., :-1], s, c), "got (4, 4, 2, 16, 31)"),
        (lambda i, s, c: (i[:, :3], s, c), "got (4, 3, 2, 16, 32)"),
        (lambda i, s, c: (i[0], s, c), "got (4, 2, 16, 32)"),
        (lambda i, s, c: (i[..., None].expand(*i.shape, 3), s, c), "(B, 4, 2, 16, 32)"),
        (lambda i, s, c: (i.long(), s, c), "torch.int64"),
        (lambda i, s, c: (i.numpy(), s, c), "images must be a torch.Tensor"),
        (lambda i, s, c: (i, s[:, None], c), "speed_mps"),
        (lambda i, s, c: (i, s[:3], c), "speed_mps"),
        (lambda i, s, c: (i, s.long(), c), "speed_mps"),
        (lambda i, s, c: (i, s.clone().fill_(float("nan")), c), "speed_mps holds NaN"),
        (lambda i, s, c: (i, s, c.to("meta")), "command is on meta; the model is on cpu"),
        (lambda i, s, c: (i, s, c.float()), "command must be an integer tensor"),
        (lambda i, s, c: (i, s, c.bool()), "command must be an integer tensor"),
        (lambda i, s, c: (i, s, c[:2]), "command must have shape (4,)"),
        (lambda i, s, c: (i, s, c + 1), "command 4 is out of range"),
        (lambda i, s, c: (i, s, c - 1), "command -1 is out of range"),
    ],
)
def test_bad_inputs_raise_a_clear_error(change: Callable[..., tuple], needle: str) -> None:
    with pytest.raises(DojoConfigError) as err:
        policy()(*change(*inputs(SMALL)))
    assert needle in str(err.value)


def test_rgb_policy_rejects_grey_images() -> None:
    cfg = PolicyConfig(cameras=4, height=16, width=32, rgb=True)
    grey = inputs(SMALL)
    with pytest.raises(DojoConfigError, match=r"\(B, 4, 2, 16, 32, 3\)"):
        policy(cfg)(*grey)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"size": "huge"}, "size='huge'"),
        ({"cameras": 0}, "cameras=0"),
        ({"frames": True}, "frames=True"),
        ({"commands": 2.5}, "commands=2.5"),
        ({"height": 8}, "height=8"),
        ({"width": -96}, "width=-96"),
        ({"rgb": 1}, "rgb=1"),
    ],
)
def test_bad_config_names_the_value(kwargs: dict, needle: str) -> None:
    with pytest.raises(DojoConfigError) as err:
        PolicyConfig(**kwargs)
    assert needle in str(err.value)


def test_config_round_trips_through_a_dict() -> None:
    cfg = PolicyConfig(size="base", cameras=6, frames=3, height=32, width=64, rgb=True, commands=5)
    data = cfg.to_dict()
    assert data == {
        "size": "base",
        "cameras": 6,
        "frames": 3,
        "height": 32,
        "width": 64,
        "rgb": True,
        "commands": 5,
    }
    assert PolicyConfig.from_dict(data) == cfg
    with pytest.raises(DojoConfigError, match="unknown keys.*'colour'"):
        PolicyConfig.from_dict({**data, "colour": True})
    with pytest.raises(DojoConfigError, match="missing the keys.*'frames'"):
        PolicyConfig.from_dict({k: v for k, v in data.items() if k != "frames"})
    with pytest.raises(DojoConfigError, match="mapping"):
        PolicyConfig.from_dict([("size", "tiny")])  # type: ignore[arg-type]


def test_policy_needs_a_policy_config() -> None:
    with pytest.raises(DojoConfigError, match="PolicyConfig"):
        DrivingPolicy({"size": "tiny"})  # type: ignore[arg-type]


def test_the_size_table_counts_every_net_kind_at_the_default_rig() -> None:
    from dojo.nets import NET_KINDS, size_table

    rows = size_table()
    assert [(r["net"], r["size"]) for r in rows] == [(k, s) for k in NET_KINDS for s in SIZES]
    by = {(r["net"], r["size"]): r for r in rows}
    # the perception net is the occupancy net plus its planner heads: more of both
    assert by["perception", "tiny"]["parameters"] > by["occupancy", "tiny"]["parameters"]
    assert by["perception", "tiny"]["forward_flops"] > by["occupancy", "tiny"]["forward_flops"]
    # every camera of the default rig is read: one fewer camera, fewer FLOPs
    fewer = size_table(OccupancyConfig(cameras=PolicyConfig().cameras - 1))
    assert fewer[0]["forward_flops"] < rows[0]["forward_flops"]
