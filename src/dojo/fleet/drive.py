"""A fleet drive: N cars, each the ego of one world of a batch, for M simulated minutes.

Every 0.1 s decision step, for all cars at once: render the cameras, issue route commands, run
the on-board network (one batched call), let the human, the network or the safety driver
drive, step the world, then detect events (interventions, shadow disagreements, near misses,
hard brakes, collisions) and log what the car uploads. A drive ends after ``drive_s`` or at a
collision; the car then starts its next drive (a new scenario, a new log file).

>>> summary = drive(DriveConfig(cars=4, minutes=1, mode="autonomous", policy="naive", out="drives"))
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dojo.drivelog import camera_intrinsics, camera_mounts
from dojo.errors import DojoConfigError
from dojo.fleet.config import DriveConfig
from dojo.fleet.policy import Policy, make_policy
from dojo.fleet.recorder import CarRecorder
from dojo.fleet.route import RoutePlan
from dojo.fleet.safety import Intervention, SafetyDriver, lateral_preview
from dojo.world import rng as crng
from dojo.world.camera import CameraRig, ego_pose, render
from dojo.world.occupancy import OccupancySpec, occupancy
from dojo.world.scene import scene_objects, scenes_of
from dojo.world.world import DECISION_STEPS, DT_S, WORLD_VERSION, EgoAction, StepResult, World

METRES_PER_MILE = 1609.344
LOG_NAME = "car{car:03d}-drive{drive:04d}-{family}-{seed}.mcap"
MANUAL, SHADOW, AUTONOMOUS = 0, 1, 2
_SAMPLE_STREAM = 103


@dataclass
class DriveSummary:
    """What a fleet drive did; ``as_dict`` is the ``dojo drive --json`` output."""

    cars: int
    mode: str
    policy: str
    minutes: float = 0.0  # simulated, per car
    decisions: int = 0  # car-steps (one on-board decision each)
    miles: float = 0.0
    critical_interventions: int = 0
    noncritical_interventions: int = 0
    shadow_disagreements: int = 0
    near_misses: int = 0
    hard_brakes: int = 0
    collisions: int = 0
    drives: int = 0
    frames_logged: int = 0  # camera frames (all cameras of one step count once)
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    wall_s: float = 0.0
    sensors_s: float = 0.0  # wall time rendering cameras and occupancy labels [s]
    logging_s: float = 0.0  # wall time writing logs: encoding, MCAP records, opening, closing [s]
    video_logging_s: float = (
        0.0  # the part of it logging camera frames: H.264 and video records [s]
    )
    interrupted: bool = False
    reasons: dict[str, int] = field(default_factory=dict)  # intervention reasons

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def car_modes(config: DriveConfig) -> np.ndarray:
    """(N,) mode of each car of the whole fleet; ``mixed`` alternates shadow and autonomous cars."""
    if config.mode == "mixed":
        return np.where(np.arange(config.cars) % 2 == 0, SHADOW, AUTONOMOUS)
    return np.full(
        config.cars, {"manual": MANUAL, "shadow": SHADOW, "autonomous": AUTONOMOUS}[config.mode]
    )


class Follower(Protocol):
    """Steps a fleet's world in place of its policy and safety driver (a replay of a log)."""

    def follow(self) -> StepResult:
        """Step the world once as the log did."""
        ...

    def drivers(self) -> np.ndarray:
        """(N,) who drove the step just taken: human, network or safety_driver."""
        ...


class Fleet:
    """The cars of one drive (see the module docstring); :meth:`run` drives them.

    ``cars``: drive only these of the config's cars (their numbers in the whole fleet), as one
    batch; each car drives, and logs, exactly what it does in the whole fleet, so the batches of
    a split drive (:mod:`dojo.fleet.split`) together write the whole fleet's logs. World ``i``
    is car ``car_ids[i]``. ``folder``: where the logs go (default ``config.out``).

    ``world`` (and its ``route``): drive on from a world already under way, one world per car,
    instead of fresh scenarios, as a replay of a logged moment does (:mod:`dojo.eval.replay`).
    Each car's drive then ends at ``config.drive_s`` or a collision and no other follows; the
    logs carry ``metadata`` besides the drive's own. ``follower``: what steps the world in place
    of the policy and the safety driver (a replay following its log). ``ends_s`` (N,): the drive
    time each car's drive ends at [s], in place of ``config.drive_s``.
    """

    def __init__(
        self,
        config: DriveConfig,
        policy: Policy | None = None,
        on_step: Callable[[DriveSummary], None] | None = None,
        cars: Sequence[int] | None = None,
        folder: str | os.PathLike[str] | None = None,
        world: World | None = None,
        route: RoutePlan | None = None,
        metadata: dict[str, Any] | None = None,
        follower: Follower | None = None,
        ends_s: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        self.config = config
        self.car_ids = _car_ids(config, cars)  # (n,) each world's car number in the fleet
        if world is not None and world.num_worlds != len(self.car_ids):
            raise DojoConfigError(
                f"A fleet of {len(self.car_ids)} cars cannot drive on a batch of "
                f"{world.num_worlds} worlds; give one world per car."
            )
        self.single = world is not None  # one drive per car, from the world given
        self.extra_metadata = dict(metadata or {})
        self.rig = CameraRig.named(
            config.rig, rgb=config.rgb, width=config.camera_width, height=config.camera_height
        )
        self.modes = car_modes(config)[self.car_ids]
        self.follower = follower
        needs_net = (self.modes != MANUAL).any() and follower is None
        self.policy = (
            policy if policy is not None or not needs_net else make_policy(config.policy, self.rig)
        )
        self.logging = config.logging != "none"
        where = config.out if folder is None else os.fspath(folder)
        self.out = output_folder(where) if self.logging else Path(where)
        self.on_step = on_step
        n = self.n = len(self.car_ids)
        self.drive_no = np.zeros(n, dtype=np.int64)
        if world is None:
            fams = [config.drive_family(c, 0) for c in self.car_ids.tolist()]
            world = World(
                fams,
                [config.drive_seed(c, 0) for c in self.car_ids.tolist()],
                ttc_critical_s=config.safety.ttc_critical_s,
                max_vehicles=_max_slots(config),
            )
        self.world = world
        self.route = route if route is not None else RoutePlan(world)
        # a world under way has a past the cameras did not record: its first frame stands in
        self._no_past = np.full(n, self.single)
        self.done = np.zeros(n, dtype=bool)  # single: cars whose drive has ended
        # when each car's drive ends [s of drive time]: the config's drive_s unless given
        self.ends_s = np.full(n, float(config.drive_s))
        if ends_s is not None:
            self.ends_s[:] = np.asarray(ends_s, dtype=np.float64)
        # each car's counts (the summary's are the fleet's)
        self.car_decisions = np.zeros(n, dtype=np.int64)
        self.car_critical = np.zeros(n, dtype=np.int64)
        self.car_collisions = np.zeros(n, dtype=np.int64)
        self.safety = SafetyDriver(n, config.safety)
        self.safety.watching = self.modes == AUTONOMOUS
        self.spec = OccupancySpec()
        k = max(self.policy.frames if self.policy is not None else 0, 1)
        self.history = np.zeros(
            (n, len(self.rig.cameras), k, *self.rig.image_shape[1:]), dtype=np.uint8
        )
        self.recorders: list[CarRecorder | None] = [None] * n
        # event state: previous condition (rising edges) and last event time per kind [s]
        self._kinds = ("near_miss", "hard_brake", "shadow_disagreement")
        self._prev = {k: np.zeros(n, dtype=bool) for k in self._kinds}
        self._last = {k: np.full(n, -np.inf) for k in self._kinds}
        self._disagree_s = np.zeros(n)
        mode_name = config.mode
        self.summary = DriveSummary(
            cars=n, mode=mode_name, policy=config.policy if needs_net else "none"
        )

    # ----------------------------------------------------------------- run
    def run(self) -> DriveSummary:
        """Drive for ``config.minutes``; Ctrl-C stops early and still closes every log cleanly."""
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            for c in range(self.n):
                self._open(c)
            self.summary.logging_s = time.perf_counter() - start
            for _ in range(self.config.steps):
                if self.done.all():
                    break
                self._step()
                if self.on_step is not None:
                    self.on_step(self.summary)
        except KeyboardInterrupt as e:
            self.summary.interrupted = True
            error = e
        except BaseException as e:
            error = e
            raise
        finally:
            tick = time.perf_counter()
            self._close_all(error)
            self.summary.logging_s += time.perf_counter() - tick
            self.summary.wall_s = time.perf_counter() - start
        return self.summary

    def _step(self) -> None:
        cfg, world, s = self.config, self.world, self.summary
        n = self.n
        t = world.time_s.copy()  # drive time of the state now [s]
        needs_images = self.logging or (self.policy is not None and self.policy.frames > 0)
        tick = time.perf_counter()
        if needs_images:
            images = render(world.roads, world.vehicles, self.rig, threads=1)
            self.history[:, :, :-1] = self.history[:, :, 1:]  # in place: np.roll copies it all
            self.history[:, :, -1] = images
            fresh = (world.step_count == 0) | self._no_past
            self._no_past[:] = False
            self.history[fresh] = images[fresh][
                :, :, None
            ]  # a new drive has no past: repeat its first frame
        self.route.update(world)
        if self.logging:
            label = (world.step_count % cfg.label_every) == 0
            grids = occupancy(world.roads, world.vehicles, self.spec) if label.any() else None
            tock = time.perf_counter()
            s.sensors_s += tock - tick
            for c in range(n):
                rec = self.recorders[c]
                if rec is None:  # a car whose single drive has ended
                    continue
                rec.record_frame(
                    float(t[c]),
                    images[c],
                    grids[c] if grids is not None and label[c] else None,
                    self.spec,
                )
            s.logging_s += time.perf_counter() - tock
        else:
            s.sensors_s += time.perf_counter() - tick

        human = self.modes != AUTONOMOUS
        proposed = self._propose() if self.follower is None else None
        events: list[tuple[int, dict[str, Any]]] = []
        d_before = world.vehicles.d[:, 0].copy()  # [m] the shadow comparison previews from here
        if self.follower is not None:
            result = self.follower.follow()
        elif proposed is not None:
            result = world.step(self._checked_by_safety(proposed, events), human=human)
        else:
            result = world.step(None, None)
        live = ~self.done  # every car, but those whose single drive has ended
        s.decisions += int(live.sum())
        self.car_decisions += live
        s.miles += float(world.vehicles.v[live, 0].sum()) * DT_S / METRES_PER_MILE
        events += self._shadow_events(proposed, d_before)
        events += self._world_events(result.ego_ttc_s)
        for c in np.nonzero(result.ego_collision & live)[0].tolist():
            self.car_collisions[c] += 1
            if self.modes[c] == AUTONOMOUS and not (
                self.safety.intervening[c] and self.safety.critical[c]
            ):
                iv = Intervention(
                    int(c), True, "collision"
                )  # the safety driver never saw it coming
                events.append((int(c), _intervention_event(iv)))
                self._count_intervention(iv)
            events.append(
                (int(c), {"kind": "collision", "critical": True, "reason": "ego_collision"})
            )
            s.collisions += 1
        for c in np.nonzero(self.safety.hand_back(world))[0].tolist():
            events.append(
                (int(c), {"kind": "intervention_end", "critical": False, "reason": "handed_back"})
            )
        t_now = world.time_s
        tick = time.perf_counter()
        self._log_step(t_now, events)
        self._sample_normal(t_now)
        ended = result.ego_collision | (t_now >= self.ends_s - 1e-9)
        if ended.any() and self.single:
            for c in np.nonzero(ended & ~self.done)[0].tolist():
                self._finish(int(c))
            self.done |= ended
        elif ended.any():
            self._next_drives(np.nonzero(ended)[0])  # mostly closing and opening logs
        s.logging_s += time.perf_counter() - tick
        s.minutes = round(
            s.decisions / n * DT_S / 60.0, 9
        )  # from whole steps: no drift from summing

    # ----------------------------------------------------------- controls
    def _propose(self) -> EgoAction | None:
        """The network's action for every car (None in an all-manual fleet).

        Where the human drives, ``step`` ignores it: there it is a shadow prediction only.
        """
        if self.policy is None:
            return None
        images = self.history if self.policy.frames > 0 else None
        return self.policy.act(self.world, images)

    def _checked_by_safety(
        self, proposed: EgoAction, events: list[tuple[int, dict[str, Any]]]
    ) -> EgoAction:
        """The action the cars take: the network's, or the safety driver's where it has control.

        The safety driver's expert decides from the lane the network was heading for, as a
        driver taking the wheel from it would.
        """
        world = self.world
        expert: EgoAction | None = None
        if self.safety.watching.any() and (world.step_count % DECISION_STEPS == 0).any():
            expert = world.expert_action(ego=proposed)
        expert_target = None if expert is None else expert.target_lane
        for iv in self.safety.assess(world, proposed, self.route.direction(world), expert_target):
            if self.done[iv.car]:
                continue
            events.append((iv.car, _intervention_event(iv)))
            self._count_intervention(iv)
        by_safety = self.safety.controls_by_safety_driver()
        if not by_safety.any():
            return proposed
        if expert is None:
            expert = world.expert_action(ego=proposed)
        return proposed.where(by_safety, expert)

    # ------------------------------------------------------------- events
    def _shadow_events(
        self, proposed: EgoAction | None, d_before: np.ndarray
    ) -> list[tuple[int, dict[str, Any]]]:
        shadow = self.modes == SHADOW
        if proposed is None or not shadow.any():
            return []
        tc, world = self.config.triggers, self.world
        veh = world.vehicles
        accel, steer = proposed.accel_mps2, proposed.steer_rad
        human_accel, human_steer = veh.accel[:, 0], veh.steer[:, 0]
        d_now = veh.d[:, 0]
        # the lane each action heads for: both previews from the same state, placed at the offset
        # the car had when both were decided
        lanes = world.roads.lane_of
        lane_net = lanes(d_before + (lateral_preview(world, steer, tc.lane_preview_s) - d_now))
        lane_human = lanes(
            d_before + (lateral_preview(world, human_steer, tc.lane_preview_s) - d_now)
        )
        accel_gap = np.abs(accel - human_accel)
        differ = shadow & ((accel_gap > tc.shadow_accel_mps2) | (lane_net != lane_human))
        self._disagree_s = np.where(differ, self._disagree_s + DT_S, 0.0)
        lasting = self._disagree_s >= max(tc.persist_s, DT_S) - 1e-9
        out = []
        for c in self._fire("shadow_disagreement", lasting):
            reason = "lane_decision" if lane_net[c] != lane_human[c] else "acceleration"
            out.append(
                (
                    c,
                    {
                        "kind": "shadow_disagreement",
                        "critical": False,
                        "reason": reason,
                        "net_accel_mps2": float(accel[c]),
                        "human_accel_mps2": float(human_accel[c]),
                        "net_lane": int(lane_net[c]),
                        "human_lane": int(lane_human[c]),
                    },
                )
            )
        self.summary.shadow_disagreements += len(out)
        return out

    def _world_events(self, ttc: np.ndarray) -> list[tuple[int, dict[str, Any]]]:
        tc, veh = self.config.triggers, self.world.vehicles
        out = []
        for c in self._fire("near_miss", ttc < tc.near_miss_ttc_s):
            out.append(
                (
                    c,
                    {
                        "kind": "near_miss",
                        "critical": False,
                        "reason": "ttc_under_threshold",
                        "ttc_s": float(ttc[c]),
                    },
                )
            )
        for c in self._fire("hard_brake", veh.accel[:, 0] < -tc.hard_brake_mps2):
            out.append(
                (
                    c,
                    {
                        "kind": "hard_brake",
                        "critical": False,
                        "reason": "deceleration",
                        "accel_mps2": float(veh.accel[c, 0]),
                    },
                )
            )
        self.summary.near_misses += sum(e[1]["kind"] == "near_miss" for e in out)
        self.summary.hard_brakes += sum(e[1]["kind"] == "hard_brake" for e in out)
        return out

    def _fire(self, kind: str, condition: np.ndarray) -> list[int]:
        """Cars where ``condition`` just became true, at most once per cooldown."""
        t = self.world.time_s
        rising = condition & ~self._prev[kind]
        self._prev[kind] = condition.copy()
        due = rising & (t - self._last[kind] >= self.config.triggers.cooldown_s)
        self._last[kind] = np.where(due, t, self._last[kind])
        return [int(c) for c in np.nonzero(due)[0]]

    def _count_intervention(self, iv: Intervention) -> None:
        s = self.summary
        if iv.critical:
            self.car_critical[iv.car] += 1
        key = ("critical:" if iv.critical else "noncritical:") + iv.reason
        s.reasons[key] = s.reasons.get(key, 0) + 1
        if iv.critical:
            s.critical_interventions += 1
            if iv.upgrade:
                s.noncritical_interventions -= 1  # counted once, as the critical one it became
        else:
            s.noncritical_interventions += 1

    # ------------------------------------------------------------ logging
    def _log_step(self, t: np.ndarray, events: list[tuple[int, dict[str, Any]]]) -> None:
        if not self.logging:
            return
        world, veh = self.world, self.world.vehicles
        x, y, yaw = ego_pose(world.roads, veh, np.arange(world.num_worlds))
        lane = world.perception.index.lane[:, 0]
        ttc = world.perception.ttc_s[:, 0]
        gap = world.perception.gap_m[:, 0]  # to the ego's leader [m]; inf when none
        leader = world.perception.leader[
            :, 0
        ]  # its vehicle slot; a new one is a cut-in or lane change
        driver = (
            np.where(
                self.modes == AUTONOMOUS,
                np.where(self.safety.driving, "safety_driver", "network"),
                "human",
            )
            if self.follower is None
            else self.follower.drivers()
        )
        scenes = scenes_of(world)  # every car's scene, one batch
        after = self.config.triggers.window_after_s
        for c, event in events:
            rec = self.recorders[c]
            if rec is None:
                continue
            rec.writer.write_event(float(t[c]), event)
            rec.open_window(float(t[c]), after)
        for c in range(world.num_worlds):
            rec = self.recorders[c]
            if rec is None:
                continue
            tc = float(t[c])
            rec.writer.write_pose(tc, float(x[c]), float(y[c]), 0.0, float(yaw[c]))
            rec.writer.write_telemetry(
                tc,
                {
                    "speed_mps": float(veh.v[c, 0]),
                    "accel_mps2": float(veh.accel[c, 0]),
                    "steer_rad": float(veh.steer[c, 0]),
                    "lane": int(lane[c]),
                    "ttc_s": float(ttc[c]),
                    "command": int(world.command[c]),
                    "driver": str(driver[c]),
                    "gap_m": float(gap[c]) if np.isfinite(gap[c]) else None,
                    "leader": int(leader[c]) if np.isfinite(gap[c]) else -1,
                    "target_lane": int(veh.target_lane[c, 0]),
                    "v0_mps": float(veh.v0[c, 0]),
                },
            )
            rec.writer.write_scene(tc, scenes[c])

    def _sample_normal(self, t: np.ndarray) -> None:
        tc = self.config.triggers
        slot = np.floor(t / tc.sample_slot_s + 1e-9)
        starts = np.abs(t - slot * tc.sample_slot_s) < 0.5 * DT_S
        if not starts.any() or tc.sample_normal <= 0 or self.config.logging != "triggers":
            return
        u = crng.uniform(self.world.seeds, slot.astype(np.int64), _SAMPLE_STREAM, 1)[:, 0]
        for c in np.nonzero(starts & (u < tc.sample_normal))[0]:
            rec = self.recorders[c]
            if rec is None:
                continue
            rec.upload_until_s = max(rec.upload_until_s, float(t[c]) + tc.sample_slot_s)

    def _open(self, car: int) -> None:
        if not self.logging:
            return
        cfg, world = self.config, self.world
        k = int(self.drive_no[car])
        family, seed = str(world.families[car]), int(world.seeds[car])
        car_no = int(self.car_ids[car])  # the log names the car by its number in the fleet
        path = self.out / LOG_NAME.format(car=car_no, drive=k, family=family, seed=seed)
        recorded = (
            cfg.as_metadata()
        )  # no folder in it, so a drive's bytes do not depend on where it is written
        metadata = {
            "car_id": f"car-{car_no:03d}",
            "drive": k,
            "family": family,
            "seed": seed,
            "mode": ["manual", "shadow", "autonomous"][int(self.modes[car])],
            "policy": recorded["policy"]
            if self.summary.policy == cfg.policy
            else self.summary.policy,
            "logging": cfg.logging,
            "world_version": WORLD_VERSION,
            "config": json.dumps(recorded, default=str),
            **self.extra_metadata,
        }
        cam = self.rig.cameras[0]
        options = {
            "cameras": self.rig.names,
            "width": cam.width_px,
            "height": cam.height_px,
            "rgb": self.rig.rgb,
            "fps": 1.0 / DT_S,
            "keyframe_interval_s": cfg.keyframe_interval_s,
            "camera_mounts": camera_mounts(self.rig),
            "camera_intrinsics": camera_intrinsics(self.rig),
        }
        rec = CarRecorder(
            path,
            options,
            metadata,
            cfg.triggers,
            cfg.logging == "full",
            self.rig.image_shape,
            (self.spec.rows, self.spec.cols),
            cfg.label_every,
            1.0 / DT_S,
        )
        self.recorders[car] = rec
        # the scene at the drive's first frame; each decision step logs the next one
        rec.writer.write_scene(float(world.time_s[car]), scene_objects(world, car))

    def _finish(self, car: int, error: BaseException | None = None) -> None:
        rec = self.recorders[car]
        if rec is None:
            return
        self.recorders[car] = None
        try:
            rec.close(error)
        finally:
            self.summary.frames_logged += rec.frames_written
            self.summary.video_logging_s += rec.video_s
            if rec.path.exists():
                self.summary.files.append(str(rec.path))
                self.summary.bytes += rec.path.stat().st_size
                self.summary.drives += 1

    def _next_drives(self, cars: np.ndarray) -> None:
        for c in cars:
            self._finish(int(c))
        self.drive_no[cars] += 1
        cfg = self.config
        ids = self.car_ids
        seeds = [cfg.drive_seed(int(ids[c]), int(self.drive_no[c])) for c in cars]
        fams = [cfg.drive_family(int(ids[c]), int(self.drive_no[c])) for c in cars]
        self.world.reset(cars, seeds, fams)
        self.route.restart(self.world, cars)
        self.safety.restart(cars)
        for kind in self._kinds:
            self._prev[kind][cars] = False
            self._last[kind][cars] = -np.inf
        self._disagree_s[cars] = 0.0
        for c in cars:
            self._open(int(c))

    def _close_all(self, error: BaseException | None) -> None:
        first: BaseException | None = None
        for c in range(self.n):
            try:
                self._finish(c, error)
            except BaseException as e:  # keep closing the others; report the first failure
                first = first or e
        if first is not None and error is None:
            raise first


def _intervention_event(iv: Intervention) -> dict[str, Any]:
    return {"kind": "intervention_start", "critical": iv.critical, "reason": iv.reason}


def _max_slots(config: DriveConfig) -> int:
    from dojo.world.scenarios import slots_needed

    return max(slots_needed(f) for f in config.families)


def _car_ids(config: DriveConfig, cars: Sequence[int] | None) -> np.ndarray:
    if cars is None:
        return np.arange(config.cars)
    ids = np.asarray(sorted(cars), dtype=np.int64)
    if len(ids) == 0 or len(set(ids.tolist())) != len(ids) or ids[0] < 0 or ids[-1] >= config.cars:
        raise DojoConfigError(
            f"cars={list(cars)!r} must name distinct cars of the fleet, each in [0, {config.cars})."
        )
    return ids


def output_folder(out: str) -> Path:
    """``out`` created if missing; a clear error if it is not a writable folder or holds logs."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DojoConfigError(f"Output folder {out} cannot be created ({e.strerror}).") from e
    if not path.is_dir():
        raise DojoConfigError(f"Output folder {out} is not a folder.")
    if not os.access(path, os.W_OK | os.X_OK):
        raise DojoConfigError(f"Output folder {out} is not writable.")
    clash = sorted(path.glob("car*-drive*.mcap"))
    if clash:
        raise DojoConfigError(
            f"Output folder {out} already holds drive logs ({clash[0].name}, ...); choose another --out."
        )
    return path


def drive(
    config: DriveConfig,
    policy: Policy | None = None,
    on_step: Callable[[DriveSummary], None] | None = None,
) -> DriveSummary:
    """Run one fleet drive (see :class:`Fleet`) and return its summary."""
    return Fleet(config, policy, on_step).run()
