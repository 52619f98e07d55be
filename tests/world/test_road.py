import numpy as np
import pytest

from dojo.errors import DojoConfigError
from dojo.world.road import RoadConfig, Roads


def _roads() -> Roads:
    return Roads.stack([RoadConfig(), RoadConfig(lanes=5, straight_m=500.0, radius_m=300.0)])


def test_ring_length_is_two_straights_and_a_circle():
    road = RoadConfig(straight_m=1000.0, radius_m=400.0)
    assert road.length_m == pytest.approx(2000.0 + 2 * np.pi * 400.0)


def test_frenet_round_trip_is_exact_everywhere_on_the_ring():
    roads = _roads()
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, (2, 2000)) * roads.length[:, None]
    d = rng.uniform(-4.0, 18.0, (2, 2000))
    x, y, _ = roads.to_xy(s, d)
    s2, d2 = roads.to_frenet(x, y)
    np.testing.assert_allclose(s2, s, atol=1e-9)
    np.testing.assert_allclose(d2, d, atol=1e-9)


@pytest.mark.parametrize(
    ("dtype", "road_dtype"),
    [(np.float64, np.float64), (np.float32, np.float64), (np.float32, np.float32)],
)
def test_frenet_of_many_points_per_road_equals_the_general_formula_bit_for_bit(
    dtype: type, road_dtype: type
) -> None:
    """A camera's ground pixels take a per-road fast path; it must give the very same numbers."""
    roads = _roads()
    rng = np.random.default_rng(1)
    w = np.array([0, 1, 0, 1, 0, 1, 0, 1])[:, None]  # (rows, 1): the road of each row
    length = roads.length[w]
    # rows on each segment alone (both straights, both bends) and rows that span segments
    centre = np.array([0.3, 0.3, 0.7, 0.7, 0.05, 0.95, 0.0, 0.45])[:, None] * length
    s = centre + rng.uniform(-60.0, 60.0, (8, 400))
    s[6:] = rng.uniform(0, 1, (2, 400)) * length[6:]
    d = rng.uniform(-4.0, 18.0, (8, 400))
    x, y, _ = roads.to_xy(s, d, w)
    x, y = x.astype(dtype), y.astype(dtype)
    roads = Roads(
        **{k: v.astype(road_dtype) if v.dtype.kind == "f" else v for k, v in roads.__dict__.items()}
    )
    rows = roads.to_frenet(x, y, w)
    general = roads._to_frenet_any(x, y, w)
    for fast, slow in zip(rows, general, strict=True):
        assert fast.dtype == slow.dtype and np.array_equal(fast, slow)
    # and lanes_open is lane_open of both sides of a line
    lane: np.ndarray = np.round(d / 4.0).astype(dtype)
    below, above = roads.lanes_open(lane, s.astype(dtype), w)
    assert np.array_equal(below, roads.lane_open(lane, s.astype(dtype), w))
    assert np.array_equal(above, roads.lane_open(lane + 1, s.astype(dtype), w))


def test_loop_closes_and_heading_turns_one_full_circle():
    roads = _roads()
    x0, y0, h0 = roads.to_xy(np.zeros((2, 1)), np.zeros((2, 1)))
    xl, yl, _ = roads.to_xy(roads.length[:, None] - 1e-9, np.zeros((2, 1)))
    np.testing.assert_allclose(xl, x0, atol=1e-6)
    np.testing.assert_allclose(yl, y0, atol=1e-6)
    # halfway round (end of the first bend) the road points the other way
    _, _, h = roads.to_xy((roads.straight + np.pi * roads.radius)[:, None], np.zeros((2, 1)))
    np.testing.assert_allclose(np.cos(h - h0), -1.0, atol=1e-9)


def test_curvature_is_zero_on_straights_and_one_over_radius_on_bends():
    roads = _roads()
    s = np.array([[10.0, 1100.0], [10.0, 600.0]])
    k = roads.curvature(s)
    np.testing.assert_allclose(k[:, 0], 0.0)
    np.testing.assert_allclose(k[:, 1], 1.0 / roads.radius)


def test_lane_drop_and_ramp_open_only_on_their_span():
    roads = Roads.stack(
        [
            RoadConfig(
                lanes=3, ramp_start_m=100, ramp_length_m=200, drop_start_m=500, drop_length_m=300
            )
        ]
    )
    s = np.array([[50.0, 150.0, 350.0, 600.0, 900.0]])
    assert roads.lane_open(np.full_like(s, -1, dtype=int), s).tolist() == [
        [False, True, False, False, False]
    ]
    assert roads.lane_open(np.zeros_like(s, dtype=int), s).tolist() == [
        [True, True, True, False, True]
    ]
    assert roads.lane_open(np.full_like(s, 3, dtype=int), s).tolist() == [[False] * 5]


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"lanes": -1}, "lanes=-1"),
        ({"lanes": 6}, "lanes=6"),
        ({"lane_width_m": 0.0}, "lane_width_m=0.0"),
        ({"radius_m": 10.0}, "radius_m=10.0"),
        ({"drop_start_m": 900.0, "drop_length_m": 500.0}, "drop_start_m=900.0"),
    ],
)
def test_bad_road_values_are_named(kwargs, word):
    with pytest.raises(DojoConfigError, match=word):
        RoadConfig(**kwargs)
