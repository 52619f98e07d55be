"""The hazard-pixel table: every family's hazard shows in the default rig when a driver must react."""

from __future__ import annotations

import pytest

from dojo.world.camera import CameraRig
from dojo.world.hazard_pixels import (
    BRAKE_MPS2,
    TTC_MIN_S,
    format_markdown,
    hazard_cases,
    hazard_table,
    reaction_distance_m,
)
from dojo.world.scenarios import FAMILIES
from dojo.world.visibility import MIN_PIXELS


def test_reaction_distance_keeps_the_ttc_while_braking() -> None:
    assert reaction_distance_m(28.0) - 28.0 == pytest.approx(72.08, abs=0.01)  # the 72 m
    v, d = 30.0, reaction_distance_m(30.0) - 30.0  # minus the reaction time's 30 m
    for k in range(1, 100):  # braking from gap d: the TTC never drops under TTC_MIN_S
        t = k * v / BRAKE_MPS2 / 100
        gap, closing = d - v * t + 0.5 * BRAKE_MPS2 * t**2, v - BRAKE_MPS2 * t
        assert gap / closing >= TTC_MIN_S - 1e-9


def test_every_family_has_a_hazard_row() -> None:
    assert {c.family for c in hazard_cases()} == set(FAMILIES)


def test_every_hazard_covers_enough_pixels_in_the_default_rig_and_the_rule_agrees() -> None:
    rows = hazard_table(CameraRig.default())
    table = format_markdown(rows)
    for row in rows:
        assert row.rendered_px >= MIN_PIXELS, table  # counted in the rendered material image
        assert row.visible, table  # the visibility rule says the same
    assert table.count("\n") == len(rows) + 1


def test_the_old_quad_rig_misses_the_far_hazards() -> None:
    rows = {(r.case.family, r.case.hazard): r for r in hazard_table(CameraRig.named("quad"))}
    assert rows[("stalled", "debris")].rendered_px < MIN_PIXELS
    assert not rows[("stalled", "stalled car")].visible
    assert rows[("cut_in", "cutter, next lane")].visible  # near hazards show in any rig
