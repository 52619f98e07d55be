"""Physics checks with closed-form answers."""

import numpy as np
import pytest

from dojo.world.drivers import idm_accel, mobil_wants_change
from dojo.world.dynamics import bicycle_step

ONE = np.ones(1)


def test_constant_acceleration_on_a_straight_matches_kinematics():
    s, d, psi, v = np.zeros(1), np.zeros(1), np.zeros(1), np.full(1, 10.0)
    dt, a = 0.01, 2.0
    for _ in range(500):  # 5 s
        s, d, psi, v = bicycle_step(s, d, psi, v, a * ONE, 0 * ONE, 4.0 * ONE, 0 * ONE, dt)
    assert v[0] == pytest.approx(20.0)
    # explicit Euler: s = v0 t + a t^2 / 2 - a t dt / 2
    assert s[0] == pytest.approx(10 * 5 + 0.5 * a * 25 - 0.5 * a * 5 * dt, rel=1e-9)
    assert d[0] == 0.0


def test_constant_steer_drives_a_circle_of_the_bicycle_radius():
    length, steer, v = 4.0, 0.1, 10.0
    beta = np.arctan(0.5 * np.tan(steer))
    radius = 0.5 * length / np.sin(beta)  # kinematic bicycle, reference at mid-wheelbase
    s, d, psi, speed = np.zeros(1), np.zeros(1), np.zeros(1), np.full(1, v)
    dt = 0.001
    t_quarter = 0.5 * np.pi * radius / v
    for _ in range(int(round(t_quarter / dt))):
        s, d, psi, speed = bicycle_step(
            s, d, psi, speed, 0 * ONE, steer * ONE, length * ONE, 0 * ONE, dt
        )
    # after a quarter circle the heading turned 90 degrees; the velocity (at angle psi + beta)
    # turned with it, so the point moved along the chord from angle beta to beta + 90 degrees
    assert psi[0] == pytest.approx(0.5 * np.pi, abs=2e-3)
    assert s[0] == pytest.approx(radius * (np.cos(beta) - np.sin(beta)), rel=2e-3)
    assert d[0] == pytest.approx(radius * (np.sin(beta) + np.cos(beta)), rel=2e-3)


def test_following_a_curved_road_keeps_lateral_offset():
    kappa = 1 / 500.0
    v = np.full(1, 25.0)
    # steady cornering: yaw rate v sin(beta) / (L/2) equals the road's turn rate kappa v, and the
    # body points -beta off the road so that the velocity (at psi + beta) is tangent to it
    beta = np.arcsin(0.5 * 4.0 * kappa)
    steer = np.arctan(2.0 * np.tan(beta))
    s, d, psi = np.zeros(1), np.zeros(1), np.full(1, -beta)
    for _ in range(100):
        s, d, psi, v = bicycle_step(s, d, psi, v, 0 * ONE, steer * ONE, 4.0 * ONE, kappa * ONE, 0.1)
    assert abs(d[0]) < 1e-9 and psi[0] == pytest.approx(-beta, abs=1e-12)
    assert s[0] == pytest.approx(250.0)


def test_speed_never_goes_negative():
    *_, v = bicycle_step(
        np.zeros(1),
        np.zeros(1),
        np.zeros(1),
        np.full(1, 0.5),
        -8 * ONE,
        0 * ONE,
        4 * ONE,
        0 * ONE,
        0.1,
    )
    assert v[0] == 0.0


def test_idm_free_road_and_equilibrium():
    p = dict(a_max=ONE * 1.5, b_comf=ONE * 2.0, s0=ONE * 2.0, t_headway=ONE * 1.5)
    # at rest on a free road: the maximum acceleration
    assert idm_accel(0 * ONE, 30 * ONE, 1e4 * ONE, 0 * ONE, **p)[0] == pytest.approx(1.5)
    # at the desired speed on a free road: zero
    assert idm_accel(30 * ONE, 30 * ONE, 1e4 * ONE, 0 * ONE, **p)[0] == pytest.approx(0.0, abs=1e-4)
    # steady following: a = 0 at gap s_e = (s0 + v T) / sqrt(1 - (v/v0)^4)
    v, v0 = 20.0, 30.0
    s_e = (2.0 + v * 1.5) / np.sqrt(1 - (v / v0) ** 4)
    assert idm_accel(v * ONE, v0 * ONE, s_e * ONE, 0 * ONE, **p)[0] == pytest.approx(0.0, abs=1e-9)


def test_mobil_safety_criterion_vetoes_a_gainful_change():
    wants, adv = mobil_wants_change(
        a_self_now=ONE * -1.0,
        a_self_after=ONE * 1.0,
        a_new_follower_now=ONE * 0.0,
        a_new_follower_after=ONE * -3.0,
        a_old_follower_now=ONE * 0.0,
        a_old_follower_after=ONE * 0.5,
        politeness=ONE * 0.0,
        b_safe=ONE * 2.0,
        a_gain=ONE * 0.2,
    )
    assert adv[0] == pytest.approx(2.0) and not wants[0]
