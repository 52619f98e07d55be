"""Hindsight labels of every logged frame: what a careful driver would do, and what it sees.

For each frame the careful driver (the world's expert: IDM car following, MOBIL lane choice
restricted by the route command) is run on the logged scene, with two changes that make the
labels something a camera network can learn:

* **only what the rig shows** - objects the visibility rule (:mod:`dojo.world.visibility`)
  says no camera shows are removed before the driver model looks, so no label reacts to
  something no picture holds;
* **the future labels the past** - an object whose lane ``HINDSIGHT_S`` later differs from its
  lane now is listed in both (as the world lists a driver who signals), so a cut-in is answered
  when it starts, not when the car is already across the line.

Labels per frame (:data:`LABEL_FIELDS`): the careful acceleration and lane decision, the lead
vehicle's id, gap, closing speed and TTC, and the free gaps ahead and behind in the lanes to
the left and right. Everything is numpy over all frames of a drive at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dojo.data.autolabel.scene import SceneFrames
from dojo.world.actions import command_lane_choice
from dojo.world.dynamics import DT_S
from dojo.world.perception import NO_GAP_M, ego_gaps, perceive
from dojo.world.road import RoadConfig, Roads
from dojo.world.traffic import follow_accel

HINDSIGHT_S = 1.0  # [s] how far ahead an object's lane is read to see a change coming
RECYCLED_JUMP_M = 100.0  # [m] an id that moves farther in HINDSIGHT_S is another vehicle

LABEL_FIELDS = (
    "accel_mps2",  # the careful driver's acceleration [m/s^2]
    "lane_shift",  # lanes to change: -1 right, 0 keep, +1 left
    "lead_id",  # object id of the visible leader; -1 none
    "lead_gap_m",  # bumper-to-bumper gap to it [m]; NO_GAP_M none
    "closing_mps",  # ego speed - leader speed [m/s]; 0 none
    "ttc_s",  # gap / closing when closing, else inf [s]
    "left_ahead_gap_m",  # gaps to the nearest visible object ahead/behind in the next lanes [m]
    "left_behind_gap_m",
    "right_ahead_gap_m",
    "right_behind_gap_m",
    "visible_objects",  # objects the rig shows (the ego not counted)
)


@dataclass
class FrameLabels:
    """One array (F,) per name of :data:`LABEL_FIELDS`."""

    values: dict[str, np.ndarray]


def future_lanes(scene: SceneFrames, fps: float, hindsight_s: float = HINDSIGHT_S) -> np.ndarray:
    """(F, K) each object's lane ``hindsight_s`` later (its lane now where it is gone by then)."""
    ahead = int(round(hindsight_s * fps))
    later = np.minimum(np.arange(scene.frames) + ahead, scene.frames - 1)
    # the world recycles a slot for a new vehicle far away: then the id is not the same car
    moved = np.abs(scene.values["s_m"][later] - scene.values["s_m"]) <= RECYCLED_JUMP_M
    same = scene.present[later] & scene.present & moved
    return np.where(same, scene.lane[later], scene.lane)


def _shown_first(
    scene: SceneFrames, shown: np.ndarray, future_lane: np.ndarray
) -> tuple[SceneFrames, np.ndarray]:
    """The frames with only the objects the driver model may look at (``shown``, the ego
    first), in their order, as few columns as the busiest frame needs; the rest absent.

    An object that is not shown takes part in nothing (it is in no lane's index), so dropping
    its column changes no label; the driver models' cost grows with the columns, and a rig
    shows at most a dozen of the scene's objects.
    """
    others = np.argsort(~shown[:, 1:], axis=1, kind="stable") + 1  # column 0 stays the ego's
    width = int(shown[:, 1:].sum(1).max()) if shown.shape[0] else 0
    order = np.concatenate([np.zeros((shown.shape[0], 1), np.int64), others[:, :width]], axis=1)
    kept = np.take_along_axis(shown, order, 1)

    def cols(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(np.broadcast_to(a, shown.shape), order, 1)

    return (
        SceneFrames(
            scene.t_s,
            cols(scene.ids),
            kept,
            cols(scene.kind),
            {name: cols(v) for name, v in scene.values.items()},
            cols(scene.lane),
        ),
        cols(future_lane),
    )


def careful_labels(
    scene: SceneFrames,
    road: RoadConfig,
    command: np.ndarray,
    ego_v0_mps: float,
    visible: np.ndarray,
    hindsight_s: float = HINDSIGHT_S,
) -> FrameLabels:
    """Labels of every frame of one drive's ``scene`` on ``road``, given each frame's route
    ``command`` (F,) and the careful driver's desired speed; ``visible`` (F, K) from the
    visibility rule; ``hindsight_s``: how far ahead lanes are read (0: no hindsight, the
    ablation)."""
    nf = scene.frames
    roads = Roads.stack([road]).take(np.zeros(nf, dtype=np.int64))
    fps = 1.0 / float(np.median(np.diff(scene.t_s))) if nf > 1 else 1.0 / DT_S
    future = future_lanes(scene, fps, hindsight_s)
    return labels_on(scene, roads, command, np.full(nf, ego_v0_mps), visible, future)


def labels_on(
    scene: SceneFrames,
    roads: Roads,
    command: np.ndarray,
    ego_v0_mps: np.ndarray,
    visible: np.ndarray,
    future_lane: np.ndarray,
) -> FrameLabels:
    """:func:`careful_labels` of frames that may come from several drives: ``roads`` holds each
    frame's road (F worlds), ``ego_v0_mps`` (F,) each frame's desired speed, ``future_lane``
    (F, K) each object's lane read with hindsight (:func:`future_lanes`, per drive). One call
    for many drives keeps numpy's arrays long (the work per frame is small)."""
    shown = visible & scene.present
    shown[:, 0] = scene.present[:, 0]
    scene, future_lane = _shown_first(scene, shown, future_lane)
    veh = scene.vehicles(roads, future_lane)
    veh.v0[:, 0] = ego_v0_mps
    per = perceive(roads, veh)
    a_follow = follow_accel(veh, per)  # (F, K): MOBIL weighs everyone's acceleration
    lane = per.index.lane[:, 0]
    target = command_lane_choice(roads, veh, per, a_follow, command)
    gaps = ego_gaps(roads, veh, per)
    ids = np.broadcast_to(scene.ids, scene.present.shape)
    lead = np.take_along_axis(ids, gaps["lead_slot"][:, None], 1)[:, 0]
    out = {
        "accel_mps2": a_follow[:, 0],
        "lane_shift": (target - lane).astype(np.int64),
        "lead_id": np.where(gaps["has_lead"], lead, -1),
        **{k: v for k, v in gaps.items() if k not in ("has_lead", "lead_slot")},
        "visible_objects": (veh.active[:, 1:]).sum(axis=1).astype(np.int64),
    }
    return FrameLabels(out)


__all__ = [
    "HINDSIGHT_S",
    "LABEL_FIELDS",
    "NO_GAP_M",
    "FrameLabels",
    "careful_labels",
    "future_lanes",
    "labels_on",
]
