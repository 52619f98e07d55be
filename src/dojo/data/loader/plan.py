"""Which windows a dataset has: the window specs, the camera rig and each clip's plan.

Runs once, in the process that builds the dataset, with a handful of DuckDB queries over the
catalog (:func:`_plan`); the result is plain numpy (:class:`_Clip`), so DataLoader workers get it
without touching a table. See :mod:`dojo.data.loader` for which telemetry row labels a frame.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from dojo.data.catalog import connect
from dojo.data.store import Store
from dojo.errors import ConfigError
from dojo.nets.targets import LABEL_SOURCE, PLANNER_TARGETS, planner_targets
from dojo.world.occupancy import OccupancySpec

_EPS_S = 1e-6  # [s] slack when comparing logged times to spec bounds
LANE_LOOKAHEAD_S = 1.5  # [s] how far ahead the lane_shift label looks for where the driver went


class WindowSpec(NamedTuple):
    """Windows of clip ``clip_id`` whose target frame's drive time lies in ``[t0_s, t1_s]``."""

    clip_id: str
    t0_s: float
    t1_s: float


@dataclass(frozen=True)
class Rig:
    """The camera rig every window of a dataset shares (so windows stack into batches)."""

    cameras: tuple[str, ...]
    height_px: int
    width_px: int
    rgb: bool

    def image_shape(self, frames: int) -> tuple[int, ...]:
        """Shape of one window's ``images``: (cams, k, H, W) or (cams, k, H, W, 3)."""
        base = (len(self.cameras), frames, self.height_px, self.width_px)
        return base + ((3,) if self.rgb else ())


@dataclass
class _Clip:
    """What a worker needs to turn one clip into its windows, without reading any table."""

    clip_id: str
    drive_id: str
    frame: np.ndarray  # (n,) int64 drive frame index of each of the clip's frames
    t_s: np.ndarray  # (n,) float64 drive time of each frame [s]
    byte_offset: np.ndarray  # (cams, n) int64 where each access unit lies in video/<camera>.h264
    byte_size: np.ndarray  # (cams, n) int64
    keyframe: np.ndarray  # (cams, n) bool
    targets: np.ndarray  # (w,) int64 index into ``frame`` of each window's target frame
    speed_mps: np.ndarray  # (w,) float32
    command: np.ndarray  # (w,) int64
    action: np.ndarray  # (w, 2) float32 [accel_mps2, steer_rad]
    lane_shift: np.ndarray  # (w,) float32 in {-1, 0, +1}
    # (w,) int64 the row of the window's grid in the labels file: the target frame (telemetry
    # labels) or the decision step of its auto-label row
    label_frame: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    planner: np.ndarray = (
        field(  # (w, P) float32 (P = 0 with telemetry labels), see dojo.nets.targets
            default_factory=lambda: np.zeros((0, 0), dtype=np.float32)
        )
    )
    planner_valid: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))


class _Planned(NamedTuple):
    """What :func:`_plan` found: the rig, the grid and its geometry, the clips, and the drops."""

    rig: Rig | None
    grid: tuple[int, int]  # (rows, cols) of the occupancy targets; (0, 0): none
    spec: OccupancySpec | None  # where the ego sits in that grid (None: not known)
    clips: list[_Clip]
    unlabelled: int  # windows left out for want of a complete auto-label


def _spec_from(item: object, where: str) -> WindowSpec:
    if isinstance(item, Mapping):
        missing = [k for k in ("clip_id", "t0_s", "t1_s") if k not in item]
        if missing:
            raise ConfigError(
                f"{where} has no {', '.join(missing)}; a window spec needs clip_id, t0_s and t1_s."
            )
        clip_id, t0, t1 = item["clip_id"], item["t0_s"], item["t1_s"]
    elif isinstance(item, (tuple, list)) and len(item) == 3:
        clip_id, t0, t1 = item
    elif all(hasattr(item, k) for k in ("clip_id", "t0_s", "t1_s")):
        clip_id, t0, t1 = item.clip_id, item.t0_s, item.t1_s  # type: ignore[attr-defined]
    else:
        raise ConfigError(
            f"{where}={item!r} must be (clip_id, t0_s, t1_s) or a dict with those keys."
        )
    if not isinstance(clip_id, str) or not clip_id:
        raise ConfigError(f"{where} has clip_id={clip_id!r}; it must be a non-empty string.")
    for name, v in (("t0_s", t0), ("t1_s", t1)):
        if isinstance(v, bool) or not isinstance(v, Real) or math.isnan(float(v)):
            raise ConfigError(
                f"{where} has {name}={v!r}; it must be a time in seconds (+-inf: open)."
            )
    if float(t0) > float(t1):
        raise ConfigError(f"{where} has t0_s={t0!r} after t1_s={t1!r}.")
    return WindowSpec(clip_id, float(t0), float(t1))


def normalise_specs(specs: object) -> list[WindowSpec] | None:
    """Window specs as a list of :class:`WindowSpec`, or None for "every window in the store".

    Accepts None, a sequence of ``(clip_id, t0_s, t1_s)`` tuples, of dicts with those keys (a
    dataset's entries) or of objects with those attributes, or an object with an ``entries``
    attribute holding such a sequence (a loaded dataset or manifest: all of its splits, so pass
    ``dataset.split("train")`` for one).
    """
    if specs is None:
        return None
    entries = getattr(specs, "entries", specs)
    if isinstance(specs, Mapping) and "entries" in specs:
        entries = specs["entries"]
    if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Iterable):
        raise ConfigError(
            f"specs={specs!r} must be None, a list of (clip_id, t0_s, t1_s) or of dataset entries."
        )
    return [_spec_from(item, f"specs[{i}]") for i, item in enumerate(entries)]


def _store(store: Store | str | os.PathLike[str]) -> Store:
    return store if isinstance(store, Store) else Store(store)


# ------------------------------------------------------------------------------- planning
def _nearest(times_s: np.ndarray, t_s: np.ndarray, tolerance_s: float) -> np.ndarray:
    """Index into sorted ``times_s`` of the entry nearest each of ``t_s``; -1 beyond tolerance."""
    if len(times_s) == 0:
        return np.full(len(t_s), -1, dtype=np.int64)
    right = np.clip(np.searchsorted(times_s, t_s), 0, len(times_s) - 1)
    left = np.clip(right - 1, 0, len(times_s) - 1)
    pick = np.where(np.abs(times_s[left] - t_s) <= np.abs(times_s[right] - t_s), left, right)
    return np.where(np.abs(times_s[pick] - t_s) <= tolerance_s, pick, -1).astype(np.int64)


def _arrow(con: Any, sql: str) -> dict[str, np.ndarray]:
    table = con.sql(sql).arrow()
    if isinstance(table, pa.RecordBatchReader):  # newer DuckDB returns a reader
        table = table.read_all()
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _plan(
    store: Store,
    specs: list[WindowSpec] | None,
    frames: int,
    stride: int,
    source: str = LABEL_SOURCE,
) -> _Planned:
    """Every window of the specs: the rig, the occupancy grid shape and the clips in spec order.

    Runs once, in the process that builds the dataset, with a handful of DuckDB queries over the
    catalog; the result is plain numpy, so DataLoader workers get it without touching a table.
    ``source``: where the targets come from (:data:`dojo.nets.targets.LABEL_SOURCES`).
    """
    con = connect(store)
    try:
        known = con.sql(
            "SELECT clip_id, drive_id FROM clips ORDER BY drive_id, start_frame"
        ).fetchall()
        drive_of: dict[str, str] = {}
        for clip_id, drive_id in known:
            drive_of.setdefault(clip_id, drive_id)  # the same content in two drives: one of them
        if specs is None:
            order = list(drive_of)
            ranges: dict[str, list[tuple[float, float]]] = {
                c: [(-math.inf, math.inf)] for c in order
            }
        else:
            unknown = sorted({s.clip_id for s in specs if s.clip_id not in drive_of})
            if unknown:
                more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
                raise ConfigError(
                    f"clip_id {', '.join(map(repr, unknown[:3]))}{more} in the window specs "
                    f"is not in store {store.url!r}."
                )
            ranges = {}
            for s in specs:
                ranges.setdefault(s.clip_id, []).append((s.t0_s, s.t1_s))
            order = list(ranges)
        if not order:
            return _Planned(None, (0, 0), None, [], 0)
        con.register(
            "_sel",
            pa.table(
                {
                    "clip_id": order,
                    "drive_id": [drive_of[c] for c in order],
                    "pos": np.arange(len(order)),
                }
            ),
        )
        drives = con.sql(
            "SELECT drive_id, cameras, width_px, height_px, rgb, fps FROM drives "
            "WHERE drive_id IN (SELECT drive_id FROM _sel) ORDER BY drive_id"
        ).fetchall()
        rig_of = {
            d: Rig(tuple(cams), int(h), int(w), bool(rgb)) for d, cams, w, h, rgb, _ in drives
        }
        fps_of = {d: float(fps) for d, *_, fps in drives}
        rigs = sorted(set(rig_of.values()), key=repr)
        if len(rigs) > 1:
            raise ConfigError(
                f"The windows come from drives with different camera rigs ({rigs[0]} and {rigs[1]}); "
                "restrict the specs to one rig so windows stack into batches."
            )
        rig = rigs[0]
        if source == "autolabel":
            grid, spec, auto = _autolabel_plan(con, store)
        else:
            shapes = con.sql(
                "SELECT DISTINCT rows, cols FROM labels WHERE drive_id IN (SELECT drive_id FROM _sel) ORDER BY rows, cols"
            ).fetchall()
            if len(shapes) > 1:
                raise ConfigError(
                    f"The windows' occupancy labels come in several shapes ({shapes}); restrict the specs to one."
                )
            grid = (int(shapes[0][0]), int(shapes[0][1])) if shapes else (0, 0)
            # every drive log so far is written with the default grid, so a grid of its shape
            # is taken to have its geometry
            default = OccupancySpec()
            spec = default if grid == (default.rows, default.cols) else None
            auto = None
        fr = _arrow(
            con,
            "SELECT s.pos, f.camera, f.frame, f.t_s, f.byte_offset, f.byte_size, f.keyframe "
            "FROM frames f JOIN _sel s ON f.clip_id = s.clip_id AND f.drive_id = s.drive_id "
            "ORDER BY s.pos, f.camera, f.frame",
        )
        tel = _arrow(
            con,
            "SELECT drive_id, t_s, speed_mps, accel_mps2, steer_rad, command, lane FROM telemetry "
            "WHERE drive_id IN (SELECT drive_id FROM _sel) ORDER BY drive_id, t_s",
        )
    finally:
        con.close()

    tel_rows = _rows_by_drive(tel["drive_id"])
    auto_rows = _rows_by_drive(auto["drive_id"]) if auto is not None else {}
    pos = fr["pos"].astype(np.int64)
    bounds = np.searchsorted(pos, np.arange(len(order) + 1))
    clips: list[_Clip] = []
    unlabelled = 0
    for i, clip_id in enumerate(order):
        drive_id = drive_of[clip_id]
        rows = slice(int(bounds[i]), int(bounds[i + 1]))
        clip = _clip_plan(clip_id, drive_id, rig, {k: v[rows] for k, v in fr.items()})
        t_rows = tel_rows.get(drive_id, slice(0, 0))
        a_rows = auto_rows.get(drive_id, slice(0, 0))
        unlabelled += _choose_windows(
            clip,
            ranges[clip_id],
            frames,
            stride,
            fps_of[drive_id],
            {k: v[t_rows] for k, v in tel.items()},
            None if auto is None else {k: v[a_rows] for k, v in auto.items()},
        )
        if len(clip.targets):
            clips.append(clip)
    return _Planned(rig, grid, spec, clips, unlabelled)


def _rows_by_drive(ids: np.ndarray) -> dict[str, slice]:
    """The rows of each drive in ``ids`` (sorted by drive)."""
    out: dict[str, slice] = {}
    if len(ids):
        cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(ids)], strict=True):
            out[str(ids[a])] = slice(int(a), int(b))
    return out


_AUTO_COLUMNS: tuple[str, ...] = ("frame", "t_s", "complete", "accel_mps2", "lane_shift")
_AUTO_COLUMNS += ("lead_id", "closing_mps", "ttc_s")
_AUTO_COLUMNS += tuple(n for n in PLANNER_TARGETS if n.endswith("_gap_m"))


def _autolabel_plan(
    con: Any, store: Store
) -> tuple[tuple[int, int], OccupancySpec | None, dict[str, np.ndarray]]:
    """The selected drives' auto-label rows (one query) and the shape and geometry of their grids."""
    shapes = con.sql(
        "SELECT DISTINCT grid_rows, grid_cols, cell_m, grid_forward_m FROM autolabels "
        "WHERE drive_id IN (SELECT drive_id FROM _sel) AND grid_rows > 0 AND grid IS NOT NULL "
        "ORDER BY ALL"
    ).fetchall()
    if len(shapes) > 1:
        raise ConfigError(
            f"The windows' auto-label grids come in several shapes ({shapes}); relabel the "
            "drives with one `dojo autolabel` setting or restrict the specs to one."
        )
    grid: tuple[int, int] = (0, 0)
    spec = None
    if shapes:
        rows, cols, cell_m, forward_m = shapes[0]
        grid = (int(rows), int(cols))
        spec = OccupancySpec(
            float(cell_m),
            float(forward_m),
            round(rows * cell_m - forward_m, 6),  # the grid's rest lies behind the ego
            round(cols * cell_m / 2.0, 6),  # centred across
        )
    auto = _arrow(
        con,
        f"SELECT drive_id, {', '.join(_AUTO_COLUMNS)} FROM autolabels "
        "WHERE drive_id IN (SELECT drive_id FROM _sel) ORDER BY drive_id, t_s",
    )
    if not len(auto["drive_id"]):
        raise ConfigError(
            f"labels='autolabel' but no drive of these windows in store {store.url!r} is "
            "auto-labelled; run `dojo autolabel` on the store first."
        )
    return grid, spec, auto


def _clip_plan(clip_id: str, drive_id: str, rig: Rig, fr: dict[str, np.ndarray]) -> _Clip:
    """The clip's frames, camera by camera in the rig's order, checked to agree across cameras."""
    per_cam = {}
    for cam in rig.cameras:
        take = fr["camera"] == cam
        per_cam[cam] = {k: v[take] for k, v in fr.items()}
    first = per_cam[rig.cameras[0]]
    for cam in rig.cameras:
        got = per_cam[cam]
        if len(got["frame"]) == 0 or not np.array_equal(got["frame"], first["frame"]):
            raise ConfigError(
                f"Clip {clip_id} camera {cam!r} has {len(got['frame'])} frames in frames.parquet, "
                f"other than camera {rig.cameras[0]!r} ({len(first['frame'])}); the store is damaged."
            )
    empty = np.zeros(0, dtype=np.int64)
    return _Clip(
        clip_id=clip_id,
        drive_id=drive_id,
        frame=first["frame"].astype(np.int64),
        t_s=first["t_s"].astype(np.float64),
        byte_offset=np.stack([per_cam[c]["byte_offset"] for c in rig.cameras]).astype(np.int64),
        byte_size=np.stack([per_cam[c]["byte_size"] for c in rig.cameras]).astype(np.int64),
        keyframe=np.stack([per_cam[c]["keyframe"] for c in rig.cameras]).astype(bool),
        targets=empty,
        speed_mps=np.zeros(0, dtype=np.float32),
        command=empty,
        action=np.zeros((0, 2), dtype=np.float32),
        lane_shift=np.zeros(0, dtype=np.float32),
    )


def _choose_windows(
    clip: _Clip,
    ranges: list[tuple[float, float]],
    frames: int,
    stride: int,
    fps: float,
    tel: dict[str, np.ndarray],
    auto: dict[str, np.ndarray] | None = None,
) -> int:
    """Fill in the clip's windows: k gap-free frames, a target inside a spec, both telemetry rows
    (and with ``auto``, the drive's auto-label rows, a complete one at the target frame); the
    windows left out for want of that auto-label."""
    n = len(clip.t_s)
    idx = np.arange(frames - 1, n, stride, dtype=np.int64)  # candidate target frames
    if len(idx) == 0:
        return 0
    step_ok = np.abs(np.diff(clip.t_s) * fps - 1.0) < 0.5  # (n-1,) frame i+1 follows frame i
    bad_before = np.r_[0, np.cumsum(~step_ok)]  # (n,) gaps among the first i frames
    keep = bad_before[idx] - bad_before[idx - (frames - 1)] == 0
    t = clip.t_s[idx]
    inside = np.zeros(len(idx), dtype=bool)
    for t0, t1 in ranges:
        inside |= (t >= t0 - _EPS_S) & (t <= t1 + _EPS_S)
    keep &= inside
    times = tel["t_s"].astype(np.float64)
    step_s = float(np.median(np.diff(times))) if len(times) >= 2 else 0.0  # 0.1 s in the fleet
    if len(times) < 2:
        keep[:] = False
        now = after = np.full(len(idx), -1, dtype=np.int64)
    else:
        now = _nearest(times, t, 0.5 * step_s)  # the row holding the speed at the frame
        after = _nearest(times, t + step_s, 0.5 * step_s)  # the decision taken on seeing it
        keep &= (now >= 0) & (after >= 0)
    unlabelled = 0
    if auto is not None:
        # the auto-label row at the frame's time: the careful driver run on the scene logged
        # with it, i.e. the decision taken on seeing this frame
        row = _nearest(auto["t_s"].astype(np.float64), t, 0.5 * step_s)
        complete = np.zeros(len(idx), dtype=bool)
        complete[row >= 0] = auto["complete"][row[row >= 0]].astype(bool)
        unlabelled = int(np.sum(keep & ~complete))
        keep &= complete
        row = row[keep]
    now, after = now[keep], after[keep]
    clip.targets = idx[keep]
    clip.label_frame = clip.frame[clip.targets]
    clip.speed_mps = tel["speed_mps"][now].astype(np.float32)
    clip.command = tel["command"][after].astype(np.int64)
    clip.action = np.stack([tel["accel_mps2"][after], tel["steer_rad"][after]], axis=1).astype(
        np.float32
    )
    ahead = (
        np.searchsorted(times, times[after] + LANE_LOOKAHEAD_S + _EPS_S, side="right") - 1
    )  # last row by then, the one exactly 1.5 s on included (slack for float times)
    lane = tel["lane"].astype(np.int64)
    clip.lane_shift = np.sign(lane[np.maximum(ahead, after)] - lane[after]).astype(np.float32)
    if auto is not None:
        # the teacher decided under the command of its own row (the one at the frame)
        clip.command = tel["command"][now].astype(np.int64)
        clip.action[:, 0] = auto["accel_mps2"][row]  # steering stays the logged one: not labelled
        clip.lane_shift = np.asarray(auto["lane_shift"][row], dtype=np.float32)
        clip.label_frame = auto["frame"][row].astype(np.int64)
        clip.planner, clip.planner_valid = planner_targets({k: v[row] for k, v in auto.items()})
    return unlabelled
