"""Start the world from a drive log: re-simulate a log Dojo's world wrote, or place its scene.

*Re-simulation* (:func:`resimulate`): a log the world wrote records its scenario (family, seed,
world version) and, every 0.1 s step, who drove and the action the ego took (acceleration,
steering, the lane it headed for, its target speed). The scenario is rebuilt from those and the
logged actions are applied step by step, a human-driven step letting the world's own human
driver drive as it did; the world is deterministic, so the state at any step is the logged
state exactly (:meth:`Replayer.deviation_m` measures it against the ``/scene`` channel).

*From the scene* (:func:`from_scene`): a log whose scenario is unknown (a tenant's upload, a
real fleet) gives only what its ``/scene`` channel shows. Every logged object is placed at the
moment with its logged position, speed and lane and given :data:`~dojo.world.drivers.TRAFFIC_DRIVER`; the traffic
then drifts from the log, by as much as ``dojo bench replay`` measures.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dojo.drivelog.reader import read_drive_log, read_scene
from dojo.drivelog.scene import SceneLog
from dojo.errors import ConfigError
from dojo.fleet.route import RoutePlan
from dojo.world.actions import EgoAction
from dojo.world.drivers import TRAFFIC_DRIVER
from dojo.world.road import RoadConfig, Roads
from dojo.world.scenarios import FAMILIES, slots_needed
from dojo.world.scene import KIND_NAMES, SceneObjects
from dojo.world.vehicles import Kind, Vehicles
from dojo.world.world import DT_S, WORLD_VERSION, World

# every object placed from a scene is driven by TRAFFIC_DRIVER (dojo.world.drivers: the middle
# of the world's drawn ranges, the auto-labeler's assumption too), attentive, with no reaction
# delay; its desired speed is the fastest it was logged going in the last DESIRED_SPEED_PAST_S
# (a scene shows how fast a car goes, not how fast it would like to; one held up by a slower
# car went faster before)
DESIRED_SPEED_PAST_S = 10.0  # [s]
RECYCLE_JUMP_M = 100.0  # an id moving farther than this in one step was recycled, not driven


@dataclass(frozen=True)
class LoggedDrive:
    """What a drive log records for replay; step ``k`` (0-based) ends at ``(k + 1) * DT_S``."""

    path: Path
    family: str | None  # None: the scenario is unknown (only the scene can start it)
    seed: int | None
    world_version: int | None  # None: written before logs recorded it
    config: dict[str, Any]  # the fleet's DriveConfig as the log records it ({} if none)
    t_s: np.ndarray  # (K,) [s] time after each logged step
    accel_mps2: np.ndarray  # (K,) the acceleration applied in each step
    steer_rad: np.ndarray  # (K,)
    target_lane: np.ndarray | None  # (K,) None when the log lacks it
    v0_mps: np.ndarray | None  # (K,)
    driver: np.ndarray  # (K,) str: who drove each step (human, network, safety_driver)
    command: np.ndarray  # (K,) the route command of each step
    scene: SceneLog = field(repr=False)
    replay_of: str | None = None  # a replay's log: the log it replays

    @property
    def first_step(self) -> int:
        """The step the log's first action starts from (0; a replay's log starts later)."""
        return int(round(self.t_s[0] / DT_S)) - 1 if len(self.t_s) else 0

    @property
    def start_s(self) -> float:
        return self.first_step * DT_S

    @property
    def duration_s(self) -> float:
        """Drive time of the log's end [s]."""
        return float(self.t_s[-1]) if len(self.t_s) else 0.0

    def action_index(self, step: int) -> int:
        """Row of the action taken from ``step``; a clear error past the log's end."""
        i = step - self.first_step
        if not 0 <= i < len(self.t_s):
            raise ConfigError(
                f"Drive log {self.path.name} has no action from t={step * DT_S:.1f} s (it runs "
                f"from {self.start_s:.1f} to {self.duration_s:.1f} s)."
            )
        return i

    def why_not_resimulable(self) -> str | None:
        """None when :func:`resimulate` can rebuild this drive exactly, else the reason."""
        if self.replay_of is not None:
            return f"it is a replay of {self.replay_of} (re-simulate that log)"
        if self.family is None or self.seed is None:
            return "it records no scenario (family and seed)"
        if self.world_version != WORLD_VERSION:
            wrote = (
                "a world that recorded no version"
                if self.world_version is None
                else f"world version {self.world_version}"
            )
            return (
                f"it was written by {wrote} and re-simulation needs world version {WORLD_VERSION}"
            )
        if self.target_lane is None or self.v0_mps is None:
            return "its telemetry lacks target_lane and v0_mps (written before replay existed)"
        return None

    def step_of(self, t_s: float) -> int:
        """The number of steps driven at drive time ``t_s``; a clear error outside the log."""
        if not np.isfinite(t_s) or t_s < self.start_s - 1e-9 or t_s > self.duration_s + 1e-9:
            raise ConfigError(
                f"Moment t={t_s!r} s is outside drive log {self.path.name}, which runs from "
                f"{self.start_s:.1f} to {self.duration_s:.1f} s."
            )
        return int(round(t_s / DT_S))


def load_drive(path: str | os.PathLike[str]) -> LoggedDrive:
    """Read what replay needs from a drive log (CorruptLogError for a damaged file)."""
    log = read_drive_log(path)
    return _logged_drive(log.path, log.config, log.telemetry, read_scene(path))


def _logged_drive(
    path: Path, meta: dict[str, Any], rows: list[dict[str, Any]], scene: SceneLog
) -> LoggedDrive:
    """A LoggedDrive from a log's 'drive' metadata record, telemetry rows and scene."""
    family, seed, version = meta.get("family"), meta.get("seed"), meta.get("world_version")
    has_action = all(r.get("v0_mps") is not None and "target_lane" in r for r in rows)

    def column(name: str, dtype: Any) -> np.ndarray:
        return np.array([r[name] for r in rows], dtype=dtype)

    return LoggedDrive(
        path=path,
        family=family if family in FAMILIES else None,
        seed=int(seed) if seed is not None else None,
        world_version=int(version) if version is not None else None,
        config=json.loads(meta["config"]) if "config" in meta else {},
        t_s=column("t_s", np.float64),
        accel_mps2=column("accel_mps2", np.float64),
        steer_rad=column("steer_rad", np.float64),
        target_lane=column("target_lane", np.int64) if has_action else None,
        v0_mps=column("v0_mps", np.float64) if has_action else None,
        driver=np.array([str(r.get("driver") or "human") for r in rows], dtype=object),
        command=np.array([int(r["command"]) for r in rows], dtype=np.int64),
        scene=scene,
        replay_of=meta.get("replay_of"),
    )


class Replayer:
    """One world following a drive log, step by step (see the module doc).

    :meth:`follow` applies the logged action of the next step; after it ``world`` and ``route``
    are what the drive had then, so a policy can take over from any step. While it follows,
    ``max_deviation_m`` and ``unpaired`` keep the worst of :meth:`deviation_m` (the ego
    included for a re-simulation, the traffic alone from a scene, whose ego is placed exactly).
    """

    def __init__(self, drive: LoggedDrive, world: World, exact: bool) -> None:
        self.drive, self.world, self.exact = drive, world, exact
        self.route = RoutePlan(world)
        self.max_deviation_m, self.unpaired = 0.0, 0
        # the logged id of each vehicle slot: the slot itself in a re-simulation (the scene's
        # ids are the world's slots); from a scene, whatever ids the log gave its objects
        self.slot_ids = np.arange(world.max_vehicles, dtype=np.int64)
        # the scene message of each step count (the first one is logged at t = 0)
        steps = np.round(drive.scene.times_s / DT_S).astype(np.int64)
        self._scene_at = {int(k): i for i, k in enumerate(steps.tolist())}

    @property
    def step(self) -> int:
        return int(self.world.step_count[0])

    def follow(self) -> Any:
        """Drive the next step as the log did; the world's StepResult."""
        d, world = self.drive, self.world
        k = d.action_index(self.step)
        self.route.update(world)  # the human driver follows the route, as in the drive
        if not self.exact:
            world.command[0] = d.command[k]  # a scene start has no route of its own
        lane = d.target_lane[k] if d.target_lane is not None else world.vehicles.target_lane[0, 0]
        v0 = d.v0_mps[k] if d.v0_mps is not None else world.vehicles.v0[0, 0]
        action = EgoAction(
            np.array([d.accel_mps2[k]]),
            np.array([d.steer_rad[k]]),
            np.array([lane]),
            np.array([v0]),
        )
        human = np.array([d.driver[k] == "human" and self.exact])
        result = world.step(action, human=human)
        worst, unpaired = self.deviation_m(ego=self.exact)
        self.max_deviation_m = max(self.max_deviation_m, worst)
        self.unpaired = max(self.unpaired, unpaired)
        return result

    def drivers(self) -> np.ndarray:
        """(1,) who drove the step just followed, as the log says."""
        return np.array([self.drive.driver[self.drive.action_index(self.step - 1)]])

    def logged_scene(self) -> SceneObjects | None:
        """The logged scene at the world's current step (None if that step logged none)."""
        i = self._scene_at.get(self.step)
        return None if i is None else self.drive.scene.frame(i)

    def deviation_m(self, ego: bool = True) -> tuple[float, int]:
        """(the largest distance [m] between a replayed and the logged object of one id now,
        objects logged or replayed without a partner); ``ego=False`` leaves the ego out."""
        dist, unpaired = self.distances_m(ego)
        return (float(dist.max()) if len(dist) else 0.0), unpaired

    def distances_m(self, ego: bool = True) -> tuple[np.ndarray, int]:
        """(the distance [m] of each object paired by id between the world now and its logged
        scene, the number left unpaired): :func:`distances`."""
        i = self._scene_at.get(self.step)
        if i is None:
            return np.zeros(0), 0
        return distances(self.world, 0, self.drive.scene, i, self.slot_ids, ego)


def distances(
    world: World, w: int, scene: SceneLog, i: int, slot_ids: np.ndarray, ego: bool = True
) -> tuple[np.ndarray, int]:
    """(the distance [m] between world ``w`` now and message ``i`` of ``scene`` of each object
    paired by id, the number of objects left unpaired); ``slot_ids``: the logged id of each
    vehicle slot. ``ego=False`` leaves the ego (id 0) out.

    Distances come from the Frenet coordinates the scene logs exactly (its x, y are rounded to
    the millimetre); along the road they wrap around the ring. An id that jumped (traffic
    recycled to the window's other end) in one of the two is left unpaired.
    """
    veh = world.vehicles
    a, b = int(scene.offsets[i]), int(scene.offsets[i + 1])
    logged = scene.columns["id"][a:b]
    s_log, d_log = scene.columns["s_m"][a:b], scene.columns["d_m"][a:b]
    slots = np.flatnonzero(veh.active[w])
    ids = slot_ids[slots]
    if not ego:
        slots, ids = slots[ids != 0], ids[ids != 0]
        keep = logged != 0
        logged, s_log, d_log = logged[keep], s_log[keep], d_log[keep]
    _, mine, theirs = np.intersect1d(ids, logged, assume_unique=True, return_indices=True)
    ring = float(world.roads.length[w])
    ds = np.abs(veh.s[w, slots[mine]] - s_log[theirs]) % ring
    dist = np.hypot(np.minimum(ds, ring - ds), veh.d[w, slots[mine]] - d_log[theirs])
    jumped = dist > RECYCLE_JUMP_M
    unpaired = len(ids) + len(logged) - 2 * len(mine) + int(jumped.sum())
    return dist[~jumped], unpaired


def _slots(drive: LoggedDrive) -> int:
    """Vehicle slots the drive's fleet had (its batch's families'), so the world is the same."""
    fams = drive.config.get("families") or [drive.family]
    return max(slots_needed(f) for f in [*fams, drive.family] if f in FAMILIES)


def _ttc(drive: LoggedDrive) -> float:
    return float((drive.config.get("safety") or {}).get("ttc_critical_s", 1.5))


def _world_for(drive: LoggedDrive) -> World:
    assert drive.family is not None and drive.seed is not None
    return World(
        [drive.family], [drive.seed], ttc_critical_s=_ttc(drive), max_vehicles=_slots(drive)
    )


@dataclass
class Batch:
    """Many drives re-simulated together, each to its own moment (:func:`resimulate_batch`)."""

    drives: list[LoggedDrive]
    world: World  # world w is drives[w] at its moment
    route: RoutePlan
    deviation_m: np.ndarray  # (W,) the largest distance to the logged scene at the moment [m]
    unpaired: np.ndarray  # (W,) objects without a partner there


def resimulate_batch(drives: list[LoggedDrive], until_s: list[float]) -> Batch:
    """Every drive rebuilt and followed to its ``until_s`` [s], in one batched world.

    The drives end their re-simulation on the same step: drive ``w`` is (re)started when the
    steps left equal the steps it needs, and steps the world's human driver before that, which
    costs the batch nothing it would not spend anyway. Worlds evolve on their own, so each is
    the one :func:`resimulate` gives, exactly.
    """
    if not drives or len(drives) != len(until_s):
        raise ConfigError(
            f"Give one moment per drive; got {len(drives)} drives, {len(until_s)} moments."
        )
    for d in drives:
        why = d.why_not_resimulable()
        if why is not None:
            raise ConfigError(f"Drive log {d.path.name} cannot be re-simulated: {why}.")
    ttcs = {_ttc(d) for d in drives}
    if len(ttcs) > 1:
        raise ConfigError(
            f"These drives were watched with different critical TTCs ({sorted(ttcs)} s); "
            "re-simulate them in separate batches."
        )
    need = np.array([d.step_of(t) for d, t in zip(drives, until_s, strict=True)])
    fams = [str(d.family) for d in drives]
    seeds = [int(d.seed) for d in drives if d.seed is not None]
    world = World(fams, seeds, ttc_critical_s=ttcs.pop(), max_vehicles=max(map(_slots, drives)))
    route = RoutePlan(world)
    total = int(need.max())
    begin = total - need  # the step of the batch at which each drive starts
    n = len(drives)
    # every drive's actions as (W, total) rows, row w's column j the action from its step j
    accel, steer, v0 = (
        np.zeros((n, max(total, 1))),
        np.zeros((n, max(total, 1))),
        np.zeros((n, max(total, 1))),
    )
    lane = np.zeros((n, max(total, 1)), dtype=np.int64)
    human = np.ones((n, max(total, 1)), dtype=bool)
    for w, d in enumerate(drives):
        j = int(need[w])
        if j == 0:
            continue
        rows = np.array([d.action_index(k) for k in (0, j - 1)])  # the log covers steps 0..j-1
        a, b = int(rows[0]), int(rows[1]) + 1
        assert d.target_lane is not None and d.v0_mps is not None
        accel[w, :j], steer[w, :j] = d.accel_mps2[a:b], d.steer_rad[a:b]
        lane[w, :j], v0[w, :j] = d.target_lane[a:b], d.v0_mps[a:b]
        human[w, :j] = d.driver[a:b] == "human"
    rows_all = np.arange(n)
    for it in range(total + 1):  # the last pass only starts the drives that need no step
        fresh = np.flatnonzero(begin == it) if it > 0 else np.zeros(0, np.int64)
        if len(fresh):
            world.reset(fresh, [seeds[w] for w in fresh], [fams[w] for w in fresh])
            route.restart(world, fresh)
        if it == total:
            break
        route.update(world)
        started = begin <= it  # the others drive their human until their start
        col = np.where(started, np.minimum(world.step_count, total - 1), 0)
        action = EgoAction(
            accel[rows_all, col], steer[rows_all, col], lane[rows_all, col], v0[rows_all, col]
        )
        world.step(action, human=np.where(started, human[rows_all, col], True))
    dev, lost = np.zeros(n), np.zeros(n, dtype=np.int64)
    ids = np.arange(world.max_vehicles, dtype=np.int64)
    for w, d in enumerate(drives):
        at = np.flatnonzero(np.round(d.scene.times_s / DT_S).astype(np.int64) == need[w])
        if len(at):
            dist, lost[w] = distances(world, w, d.scene, int(at[0]), ids)
            dev[w] = float(dist.max()) if len(dist) else 0.0
    return Batch(drives, world, route, dev, lost)


def resimulate(drive: LoggedDrive, until_s: float = 0.0) -> Replayer:
    """The drive's scenario rebuilt and followed to ``until_s`` [s]; exact (see the module doc)."""
    why = drive.why_not_resimulable()
    if why is not None:
        raise ConfigError(f"Drive log {drive.path.name} cannot be re-simulated: {why}.")
    until = drive.step_of(until_s)
    rep = Replayer(drive, _world_for(drive), exact=True)
    while rep.step < until:
        rep.follow()
    return rep


def from_scene(drive: LoggedDrive, at_s: float) -> Replayer:
    """A world holding the scene logged at ``at_s`` [s], each object driven by TRAFFIC_DRIVER.

    The road is the scenario's when the log names one (its geometry is not in the scene),
    else a default ring road with as many lanes as the scene uses.
    """
    if len(drive.scene) == 0:
        raise ConfigError(
            f"Drive log {drive.path.name} has no /scene channel, so no moment of it can be "
            "replayed from the scene (logs written before the scene channel existed)."
        )
    k = drive.step_of(at_s)
    steps = np.round(drive.scene.times_s / DT_S).astype(np.int64)
    hit = np.flatnonzero(steps == k)
    if len(hit) == 0:
        raise ConfigError(f"Drive log {drive.path.name} logged no scene at t={at_s!r} s.")
    objects = drive.scene.frame(int(hit[0]))
    if len(objects) == 0 or int(objects.id[0]) != 0:
        raise ConfigError(
            f"The scene of {drive.path.name} at t={at_s!r} s has no ego (id 0); it cannot start a world."
        )
    n = len(objects)
    if drive.family is not None and drive.seed is not None:
        world = World([drive.family], [drive.seed], max_vehicles=max(n, slots_needed(drive.family)))
    else:
        lanes = int(np.clip(objects.lane.max() + 1, 2, 6))
        world = World(["highway"], [0], max_vehicles=max(n, slots_needed("highway")))
        world.roads.assign(np.array([0]), Roads.stack([RoadConfig(lanes=lanes)]))
    v = Vehicles.empty(1, n)  # object j of the scene in slot j
    kinds = {name: i for i, name in enumerate(KIND_NAMES[: len(Kind)])}
    kind = np.array([kinds.get(str(x), int(Kind.CAR)) for x in objects.kind.tolist()])
    road_heading = world.roads.to_xy(objects.s_m[None], objects.d_m[None], np.array([[0]]))[2][0]
    v.active[0] = True
    v.kind[0] = kind
    v.driven[0] = np.isin(kind, [Kind.CAR, Kind.TRUCK]) & (objects.speed_mps > 0.5)
    v.driven[0, 0] = True
    v.s[0] = np.remainder(objects.s_m, world.roads.length[0])
    v.d[0] = objects.d_m
    v.psi[0] = np.remainder(objects.yaw_rad - road_heading + np.pi, 2 * np.pi) - np.pi
    v.v[0] = objects.speed_mps
    v.length[0], v.width[0], v.height[0] = objects.length_m, objects.width_m, objects.height_m
    v.target_lane[0] = np.maximum(objects.lane, 0)
    v.v0[0] = np.maximum(_fastest_before(drive.scene, at_s, objects), 1.0)
    for name, value in TRAFFIC_DRIVER.items():
        getattr(v, name)[0] = value
    world.start_from(0, v, k)
    rep = Replayer(drive, world, exact=False)
    rep.slot_ids[:] = -1
    rep.slot_ids[:n] = objects.id
    return rep


def _fastest_before(scene: SceneLog, at_s: float, objects: SceneObjects) -> np.ndarray:
    """(N,) the fastest each object of ``objects`` was logged going in the last
    DESIRED_SPEED_PAST_S before ``at_s`` [m/s], at least its speed now."""
    t = scene.t_s
    rows = (t >= at_s - DESIRED_SPEED_PAST_S - 1e-9) & (t <= at_s + 1e-9)
    ids, speeds = scene.columns["id"][rows], scene.columns["speed_mps"][rows]
    fastest = objects.speed_mps.copy()
    order = np.argsort(objects.id)
    pos = np.searchsorted(objects.id[order], ids)
    pos = np.clip(pos, 0, len(order) - 1)
    hit = objects.id[order][pos] == ids
    np.maximum.at(fastest, order[pos[hit]], speeds[hit])
    return fastest


def load_stored_drive(store: Any, drive_id: str) -> LoggedDrive:
    """What replay needs of a drive a clip store holds (``dojo.data.store.Store``): its metadata,
    telemetry and scene tables stand in for the log, which ingest does not keep."""
    import pyarrow.parquet as pq

    if not isinstance(drive_id, str) or re.fullmatch(r"[0-9a-f]{8,64}", drive_id) is None:
        raise ConfigError(
            f"drive={drive_id!r} is not a drive id (hex digits, as the store names them)."
        )
    folder = store.path("drives", drive_id)
    if not store.fs.exists(f"{folder}/drive.parquet"):
        raise ConfigError(f"Store {store.root} holds no drive {drive_id!r}.")

    def table(name: str) -> Any:
        with store.fs.open(f"{folder}/{name}.parquet", "rb") as f:
            return pq.read_table(f)

    row = table("drive").to_pylist()[0]
    rows = table("telemetry").sort_by("t_s").to_pylist()
    scene = None
    if store.fs.exists(f"{folder}/scene.parquet"):
        scene = table("scene").sort_by([("t_s", "ascending"), ("object_id", "ascending")])
    meta = json.loads(row["config"] or "{}")
    return _logged_drive(Path(str(row["source"])), meta, rows, _scene_log(scene))


def _scene_log(table: Any) -> SceneLog:
    """A store's scene table (rows in time order) as the SceneLog a log's channel reads as."""
    if table is None or table.num_rows == 0:
        return SceneLog.of([])
    t = table.column("t_s").to_numpy()
    times, first = np.unique(t, return_index=True)
    offsets = np.append(first, len(t)).astype(np.int64)
    columns = {
        "id": table.column("object_id").to_numpy().astype(np.int64),
        "kind": np.array(table.column("kind").to_pylist(), dtype=str),
        "lane": table.column("lane").to_numpy().astype(np.int64),
        **{
            k: table.column(k).to_numpy().astype(np.float64)
            for k in (
                "x_m",
                "y_m",
                "yaw_rad",
                "speed_mps",
                "length_m",
                "width_m",
                "height_m",
                "s_m",
                "d_m",
            )
        },
    }
    return SceneLog(times.astype(np.float64), offsets, columns)
