"""The streaming training loader: decoded training windows from the clip store, for PyTorch.

>>> data = WindowDataset("store", dataset.split("train"), frames=2, seed=0)
>>> loader = make_loader(data, batch_size=64, num_workers=4)  # a DataLoader that keeps the position
>>> for epoch in range(epochs):
...     data.set_epoch(epoch)
...     for batch in loader:
...         loss = F.mse_loss(policy(batch["images"], batch["speed_mps"], batch["command"]), batch["action"])
...         checkpoint["data"] = data.state_dict()  # the position after this batch

A *window* is ``frames`` (k) consecutive frames of one clip ending at its *target* frame, one
every ``stride`` frames. Each one comes out as a dict::

    images         uint8 (cams, k, H, W) grey or (cams, k, H, W, 3) rgb, oldest frame first
    speed_mps      float32 ()   ego speed at the target frame [m/s]
    command        int64 ()     route command in force when the driver decided (dojo.world.Command)
    action         float32 (2,) [accel_mps2, steer_rad] the driver in control applied next
    lane_shift     float32 ()   the lane the driver was heading for: -1 right, 0 keep, +1 left
                                (sign of the lane change within LANE_LOOKAHEAD_S of the decision)
    occupancy      uint8 (rows, cols) ground-truth grid at the target frame (zeros when absent)
    has_occupancy  bool ()
    clip_id, frame, t_s         which window this is (str, drive frame index, drive time [s])
    shard, shards, position     where it lies in the epoch (for :meth:`WindowDataset.observe`)

Which telemetry row labels a frame: the fleet logs a frame at time t, then the driver decides
and the world steps, then telemetry is logged at t + 0.1 s with the speed *after* the step and
the acceleration and steering applied *during* it. So the image at t pairs with the speed of
the row at t and with the action and command of the row at t + one decision step: the row at t
itself holds the action that led *to* the frame, a step late for imitation. A target frame
without both rows (the first frame of a drive) has no window.

Lane shift: the driver's lateral intent, read from what happened: the sign of the lane index
``LANE_LOOKAHEAD_S`` after the decision minus the lane at it. A lane change crosses the line
about a second after it starts, so the label says "going left" from the moment the driver set
off until the car is in the new lane, and "keep" once it is there. (A lane that changes twice
within the look-ahead counts by where it ends.)

Speed: each clip's video is decoded once per camera, sequentially from the keyframe at or before
its first needed frame (a clip always starts on one), and every window of the clip is cut from
those decoded frames; nothing is decoded twice. :class:`WindowLoader` builds each batch in place
from the open clips (:meth:`WindowDataset.iter_batches`): a window's frames and label are copied
once, into the batch, in shared memory when a worker builds it; iterating the dataset itself
gives windows whose ``images`` are views into the decoded frames. Occupancy labels are read a
clip at a time, only the Parquet row groups that hold its frames. Memory is reused, never
faulted in afresh per clip or batch: decoded clips and in-process batches come from a
:class:`~dojo.data.buffers.BufferPool` (a buffer is lent again only once nothing holds what was
made of it), and workers write batches into slots the trainer's process hands back once it has
let a batch go (:mod:`dojo.data.slots`). A shard keeps the video and labels files it reads
open. Grey rigs take the luma plane as it is (the fleet writes grey as luma with neutral
chroma): what :func:`dojo.fleet.drivelog.decode_video` returns, and far cheaper than a
pixel-format conversion. Benchmark helpers at the end:
:func:`decode_rate_raw` (plain PyAV, the reference) and :func:`loader_rate`.

Order and sharding: an epoch's order is a function of (seed, epoch, the windows) and of how many
shards read it. The clips are shuffled (seed, epoch) and dealt round robin to the shards:
``world_size x num_workers`` of them, one per DataLoader worker of each DDP rank. A shard decodes
its clips in turn and passes their windows through a bounded shuffle buffer. Every window is in
exactly one shard: nothing is repeated or dropped.

Resume: a shard's order is fixed before it decodes anything, so "how many windows of each shard
were consumed" is a complete position. :meth:`WindowDataset.state_dict` saves it (JSON-safe) and
:meth:`WindowDataset.load_state_dict` restores it in a fresh process; iteration then yields
exactly the rest of the epoch, in the same order (the same number of shards is required). With
DataLoader workers, the worker that serves first after a resume is rotated so the DataLoader's
round robin over workers continues where it stopped. :class:`WindowLoader` records each batch
it hands over; iterating the dataset directly records itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import signal
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, NamedTuple, Protocol, cast

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from av.video.codeccontext import VideoCodecContext
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dojo.data.buffers import BufferPool, reusable
from dojo.data.catalog import connect
from dojo.data.slots import FreshShared, SlotRing, WorkerSlots
from dojo.data.store import TABLE_FILES, OpenFiles, Store
from dojo.errors import DojoConfigError

STATE_FORMAT = "dojo-loader-position"
STATE_VERSION = 1
DEFAULT_BUFFER_WINDOWS = 256  # shuffle buffer [windows]; its windows keep their clips' frames alive
_EPS_S = 1e-6  # [s] slack when comparing logged times to spec bounds
LANE_LOOKAHEAD_S = 1.5  # [s] how far ahead the lane_shift label looks for where the driver went
OPEN_FILES = 256  # video and labels files a shard keeps open, not to open them for every clip
_LUMA_FORMATS = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray")


class _Memory(Protocol):
    """Where a batch's big fields are built (see :mod:`dojo.data.buffers` and :mod:`dojo.data.slots`)."""

    def tensors(self, shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]: ...


_BIG_FIELDS = ("images", "occupancy")


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


# ----------------------------------------------------------------------------- validation
def _whole(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < low:
        raise DojoConfigError(f"{name}={value!r} must be a whole number >= {low}.")
    return int(value)


def _spec_from(item: object, where: str) -> WindowSpec:
    if isinstance(item, Mapping):
        missing = [k for k in ("clip_id", "t0_s", "t1_s") if k not in item]
        if missing:
            raise DojoConfigError(
                f"{where} has no {', '.join(missing)}; a window spec needs clip_id, t0_s and t1_s."
            )
        clip_id, t0, t1 = item["clip_id"], item["t0_s"], item["t1_s"]
    elif isinstance(item, (tuple, list)) and len(item) == 3:
        clip_id, t0, t1 = item
    elif all(hasattr(item, k) for k in ("clip_id", "t0_s", "t1_s")):
        clip_id, t0, t1 = item.clip_id, item.t0_s, item.t1_s  # type: ignore[attr-defined]
    else:
        raise DojoConfigError(
            f"{where}={item!r} must be (clip_id, t0_s, t1_s) or a dict with those keys."
        )
    if not isinstance(clip_id, str) or not clip_id:
        raise DojoConfigError(f"{where} has clip_id={clip_id!r}; it must be a non-empty string.")
    for name, v in (("t0_s", t0), ("t1_s", t1)):
        if isinstance(v, bool) or not isinstance(v, Real) or math.isnan(float(v)):
            raise DojoConfigError(
                f"{where} has {name}={v!r}; it must be a time in seconds (+-inf: open)."
            )
    if float(t0) > float(t1):
        raise DojoConfigError(f"{where} has t0_s={t0!r} after t1_s={t1!r}.")
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
        raise DojoConfigError(
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
    store: Store, specs: list[WindowSpec] | None, frames: int, stride: int
) -> tuple[Rig | None, tuple[int, int], list[_Clip]]:
    """Every window of the specs: the rig, the occupancy grid shape and the clips in spec order.

    Runs once, in the process that builds the dataset, with a handful of DuckDB queries over the
    catalog; the result is plain numpy, so DataLoader workers get it without touching a table.
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
                raise DojoConfigError(
                    f"clip_id {', '.join(map(repr, unknown[:3]))}{more} in the window specs "
                    f"is not in store {store.url!r}."
                )
            ranges = {}
            for s in specs:
                ranges.setdefault(s.clip_id, []).append((s.t0_s, s.t1_s))
            order = list(ranges)
        if not order:
            return None, (0, 0), []
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
            raise DojoConfigError(
                f"The windows come from drives with different camera rigs ({rigs[0]} and {rigs[1]}); "
                "restrict the specs to one rig so windows stack into batches."
            )
        rig = rigs[0]
        shapes = con.sql(
            "SELECT DISTINCT rows, cols FROM labels WHERE drive_id IN (SELECT drive_id FROM _sel) ORDER BY rows, cols"
        ).fetchall()
        if len(shapes) > 1:
            raise DojoConfigError(
                f"The windows' occupancy labels come in several shapes ({shapes}); restrict the specs to one."
            )
        grid = (int(shapes[0][0]), int(shapes[0][1])) if shapes else (0, 0)
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

    tel_rows: dict[str, slice] = {}
    if len(tel["drive_id"]):
        ids = tel["drive_id"]
        cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(ids)], strict=True):
            tel_rows[str(ids[a])] = slice(int(a), int(b))
    pos = fr["pos"].astype(np.int64)
    bounds = np.searchsorted(pos, np.arange(len(order) + 1))
    clips: list[_Clip] = []
    for i, clip_id in enumerate(order):
        drive_id = drive_of[clip_id]
        rows = slice(int(bounds[i]), int(bounds[i + 1]))
        clip = _clip_plan(clip_id, drive_id, rig, {k: v[rows] for k, v in fr.items()})
        t_rows = tel_rows.get(drive_id, slice(0, 0))
        _choose_windows(
            clip,
            ranges[clip_id],
            frames,
            stride,
            fps_of[drive_id],
            {k: v[t_rows] for k, v in tel.items()},
        )
        if len(clip.targets):
            clips.append(clip)
    return rig, grid, clips


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
            raise DojoConfigError(
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
) -> None:
    """Fill in the clip's windows: k gap-free frames, a target inside a spec, both telemetry rows."""
    n = len(clip.t_s)
    idx = np.arange(frames - 1, n, stride, dtype=np.int64)  # candidate target frames
    if len(idx) == 0:
        return
    step_ok = np.abs(np.diff(clip.t_s) * fps - 1.0) < 0.5  # (n-1,) frame i+1 follows frame i
    bad_before = np.r_[0, np.cumsum(~step_ok)]  # (n,) gaps among the first i frames
    keep = bad_before[idx] - bad_before[idx - (frames - 1)] == 0
    t = clip.t_s[idx]
    inside = np.zeros(len(idx), dtype=bool)
    for t0, t1 in ranges:
        inside |= (t >= t0 - _EPS_S) & (t <= t1 + _EPS_S)
    keep &= inside
    times = tel["t_s"].astype(np.float64)
    if len(times) < 2:
        keep[:] = False
        now = after = np.full(len(idx), -1, dtype=np.int64)
    else:
        step_s = float(np.median(np.diff(times)))  # the decision step (0.1 s in the fleet)
        now = _nearest(times, t, 0.5 * step_s)  # the row holding the speed at the frame
        after = _nearest(times, t + step_s, 0.5 * step_s)  # the decision taken on seeing it
        keep &= (now >= 0) & (after >= 0)
    now, after = now[keep], after[keep]
    clip.targets = idx[keep]
    clip.speed_mps = tel["speed_mps"][now].astype(np.float32)
    clip.command = tel["command"][after].astype(np.int64)
    clip.action = np.stack([tel["accel_mps2"][after], tel["steer_rad"][after]], axis=1).astype(
        np.float32
    )
    ahead = (
        np.searchsorted(times, times[after] + LANE_LOOKAHEAD_S - _EPS_S, side="right") - 1
    )  # last row by then
    lane = tel["lane"].astype(np.int64)
    clip.lane_shift = np.sign(lane[np.maximum(ahead, after)] - lane[after]).astype(np.float32)


def _decode_span(clip: _Clip, windows: np.ndarray, frames: int) -> tuple[int, int, np.ndarray]:
    """(first needed, last needed, (cams,) first decoded) frame index into the clip for ``windows``.

    Decoding starts at each camera's last keyframe at or before the first needed frame.
    """
    targets = clip.targets[windows]
    lo, hi = int(targets.min()) - (frames - 1), int(targets.max())
    starts = np.empty(len(clip.keyframe), dtype=np.int64)
    for c, keys in enumerate(clip.keyframe):
        before = np.flatnonzero(keys[: lo + 1])
        starts[c] = before[-1] if len(before) else -1
    return lo, hi, starts


# -------------------------------------------------------------------------------- decoding
def _luma(frame: av.VideoFrame) -> np.ndarray:
    """(H, W) view of a decoded frame's grey levels: its luma plane, as the fleet wrote it."""
    if frame.format.name not in _LUMA_FORMATS:
        return frame.to_ndarray(format="gray")
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
    return rows[: frame.height, : frame.width]


class _Decoder:
    """One H.264 decoder a walk keeps, flushed between camera streams instead of opened afresh.

    Opening a decoder per clip and camera allocated its frame buffers anew each time: keeping
    one decoded ~5% faster here (measured A/B, identical frames). Every stream starts at a
    keyframe, and a flush clears what the last stream left. (A stream that fails to decode ends
    the walk, so a decoder is never used after a failure.)
    """

    def __init__(self) -> None:
        self._ctx: VideoCodecContext | None = None

    def ready(self) -> VideoCodecContext:
        if self._ctx is None:
            self._ctx = cast(VideoCodecContext, av.CodecContext.create("h264", "r"))
            self._ctx.thread_count = (
                1  # parallelism comes from DataLoader workers; one thread wastes nothing
            )
        else:
            self._ctx.flush_buffers()
        return self._ctx


@dataclass
class _Kept:
    """What a walk over a shard keeps from clip to clip: open files, reused memory, one decoder."""

    files: OpenFiles
    pool: BufferPool
    decoder: _Decoder


def _decode_clip(
    store: Store, rig: Rig, clip: _Clip, windows: np.ndarray, frames: int, kept: _Kept
) -> tuple[int, np.ndarray]:
    """(first frame index, uint8 (cams, T, H, W[, 3])) of the clip's frames that ``windows`` need.

    One sequential decode per camera over one byte range read (from ``kept.files``, kept open),
    into memory from ``kept.pool``; a DojoConfigError names the clip and camera whose video is
    missing or does not decode.
    """
    lo, hi, starts = _decode_span(clip, windows, frames)
    out = kept.pool.tensors([(len(rig.cameras), hi - lo + 1, *rig.image_shape(1)[2:])])[0].numpy()
    for c, cam in enumerate(rig.cameras):
        path = store.path("drives", clip.drive_id, "video", f"{cam}.h264")
        first = int(starts[c])
        if first < 0:
            raise DojoConfigError(
                f"Clip {clip.clip_id} camera {cam!r} has no keyframe at or before frame {int(clip.frame[lo])}; "
                "the store is damaged."
            )
        offsets = clip.byte_offset[c, first : hi + 1]
        sizes = clip.byte_size[c, first : hi + 1]
        base, end = int(offsets.min()), int((offsets + sizes).max())
        try:
            data = kept.files.read(store.fs, path, base, end)
        except OSError as e:
            raise DojoConfigError(
                f"Clip {clip.clip_id} camera {cam!r}: cannot read {path} ({e})."
            ) from e
        if len(data) != end - base:
            raise DojoConfigError(
                f"Clip {clip.clip_id} camera {cam!r}: {path} ends before byte {end}; the store is damaged."
            )
        try:
            got = _decode_into(
                kept.decoder.ready(),
                out[c],
                data,
                (offsets - base).tolist(),
                sizes.tolist(),
                first - lo,
                rig,
            )
        except (av.FFmpegError, ValueError) as e:
            raise DojoConfigError(
                f"Clip {clip.clip_id} camera {cam!r}: the video in {path} does not decode ({e})."
            ) from e
        if got != hi + 1 - first:
            raise DojoConfigError(
                f"Clip {clip.clip_id} camera {cam!r}: the video in {path} decodes to {got} "
                f"frames from {hi + 1 - first} access units."
            )
    return lo, out


def _decode_into(
    ctx: VideoCodecContext,
    out: np.ndarray,
    data: bytes,
    offsets: list[int],
    sizes: list[int],
    skip: int,
    rig: Rig,
) -> int:
    """Decode the access units at ``offsets`` of ``data`` in turn with ``ctx`` into ``out`` (T, H, W[, 3]).

    The first ``-skip`` frames only prime the decoder (``skip`` <= 0: the keyframe lies before
    the first frame wanted). Returns how many frames came out. The loop is the loader's hot
    path, so it is kept free of calls it can do without. (Letting FFmpeg's h264 demuxer split
    the byte range instead, as raw decoding does, measured slower here: ~1 ms to open a
    container per clip and camera.)
    """
    decode, frombuffer, u8 = ctx.decode, np.frombuffer, np.uint8
    width, height = rig.width_px, rig.height_px
    limit = len(out) - skip
    index = 0
    for off, size in zip(offsets, sizes, strict=True):
        for frame in decode(av.Packet(data[off : off + size])):
            if frame.width != width or frame.height != height or index >= limit:
                raise ValueError(
                    f"frame {index} is {frame.width}x{frame.height}; the rig's are {width}x{height}"
                )
            at = index + skip
            if at >= 0:
                if (
                    not rig.rgb and frame.format.name in _LUMA_FORMATS
                ):  # _luma, inlined: ~4% of decoding
                    plane = frame.planes[0]
                    out[at] = frombuffer(plane, u8).reshape(-1, plane.line_size)[:height, :width]  # type: ignore[call-overload]
                else:
                    out[at] = frame.to_ndarray(format="rgb24") if rig.rgb else _luma(frame)
            index += 1
    for frame in decode(None):
        if index + skip >= 0 and index < limit:
            out[index + skip] = frame.to_ndarray(format="rgb24") if rig.rgb else _luma(frame)
        index += 1
    return index


@dataclass
class _Labels:
    """Occupancy grids of a span of one drive's frames, sorted by frame."""

    frame: np.ndarray  # (N,) int64, sorted
    grid: (
        np.ndarray
    )  # (N, rows, cols) uint8: views into the Parquet column when every grid has the size


class _LabelsFile:
    """A drive's labels file, open, with its ``frame`` column read once: a few kilobytes.

    Reading it (or the footer's statistics) anew for every clip cost about half as much again
    as reading the clip's grids (measured).
    """

    def __init__(self, pf: pq.ParquetFile) -> None:
        self.pf = pf
        groups = pf.metadata.num_row_groups
        frames = pf.read(columns=["frame"], use_threads=False).column("frame")
        self.frames = frames.to_numpy(zero_copy_only=False).astype(np.int64)  # (rows,) of every row
        self.group_start = np.zeros(groups + 1, dtype=np.int64)  # (groups + 1,) first row of each
        np.cumsum(
            [pf.metadata.row_group(g).num_rows for g in range(groups)], out=self.group_start[1:]
        )
        self.first = np.full(
            groups, np.iinfo(np.int64).max
        )  # (groups,) frame span of each row group
        self.last = np.full(groups, np.iinfo(np.int64).min)
        for g in range(groups):
            span = self.frames[self.group_start[g] : self.group_start[g + 1]]
            if len(span):
                self.first[g], self.last[g] = span.min(), span.max()

    def groups(self, first_frame: int, last_frame: int) -> list[int]:
        """The row groups whose frames overlap ``first_frame..last_frame``."""
        return np.flatnonzero((self.first <= last_frame) & (self.last >= first_frame)).tolist()

    def frames_of(self, groups: list[int]) -> np.ndarray:
        """(rows,) int64 frame of each row of ``groups``, in order."""
        return np.concatenate(
            [self.frames[self.group_start[g] : self.group_start[g + 1]] for g in groups]
        )


def _read_labels(
    lf: _LabelsFile | None, first_frame: int, last_frame: int, shape: tuple[int, int]
) -> _Labels:
    """The grids of ``shape`` in labels file ``lf`` (None: the drive has none) for frames ``first_frame..last_frame``.

    Only row groups whose frames overlap are read, so a labels file written in row groups of
    about a clip costs a clip's worth of reading, not the drive's. Grids of another size or null
    are left out.
    """
    rows_, cols = shape
    none = _Labels(np.zeros(0, np.int64), np.zeros((0, rows_, cols), np.uint8))
    groups = [] if lf is None else lf.groups(first_frame, last_frame)
    if lf is None or not groups:
        return none
    # no thread pool: it costs milliseconds to wake per call and workers are parallel already
    grid_col = lf.pf.read_row_groups(groups, columns=["grid"], use_threads=False).column("grid")
    grid = grid_col.chunk(0) if grid_col.num_chunks == 1 else grid_col.combine_chunks()
    frames = lf.frames_of(groups)
    _, offset_buf, value_buf = grid.buffers()
    offsets = np.frombuffer(offset_buf, dtype=np.int32, count=len(grid) + 1, offset=4 * grid.offset)
    values = np.frombuffer(value_buf, dtype=np.uint8)
    size = rows_ * cols
    keep = (frames >= first_frame) & (frames <= last_frame) & (offsets[1:] - offsets[:-1] == size)
    if grid.null_count:
        keep &= np.asarray(grid.is_valid())
    rows = np.flatnonzero(keep)
    if not len(rows):
        return none
    start = int(offsets[rows[0]])
    if int(offsets[rows[-1]]) - start == size * (len(rows) - 1):
        # nothing but empty rows between the kept grids: they lie back to back in the column's
        # value buffer, so one view, no copy
        grids = values[start : start + size * len(rows)].reshape(len(rows), rows_, cols)
    else:
        grids = np.stack([values[offsets[r] : offsets[r] + size] for r in rows.tolist()]).reshape(
            -1, rows_, cols
        )
    kept = frames[rows]
    if len(kept) > 1 and np.any(kept[1:] < kept[:-1]):
        order = np.argsort(kept, kind="stable")
        kept, grids = kept[order], grids[order]
    return _Labels(kept, grids)


LABELS_AHEAD = 8  # clips whose labels are read in one go, the one being opened and those next


class _LabelCache:
    """Reads the clips' occupancy labels as they are opened, keeping the drives' labels files open.

    An open file keeps its parsed footer and spares the open. Labels are read for the clip
    being opened and the next few to be opened (:meth:`plan`) in one go: a lone Parquet read
    between two clips' decoding ran on cold caches at 0.4-0.9 ms, one after another they take
    about half (measured). A clip's grids are about a megabyte and live as long as its windows
    wait in the shuffle buffer. (Holding a whole drive's labels instead measured slower: fresh
    pages fault in at several microseconds each here.)
    """

    def __init__(
        self, store: Store, shape: tuple[int, int], files: OpenFiles, ahead: int = LABELS_AHEAD
    ) -> None:
        self.store, self.shape, self.files, self.ahead = store, shape, files, ahead
        self._upcoming: list[tuple[_Clip, np.ndarray]] = []
        self._at: dict[str, int] = {}
        self._ready: dict[
            str, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]
        ] = {}  # clip_id: (frames, labels)

    def plan(self, upcoming: Iterable[tuple[_Clip, np.ndarray]]) -> None:
        """The (clip, windows wanted) to be opened, in order, so that reads can run ahead."""
        self._upcoming = [(clip, clip.frame[clip.targets[windows]]) for clip, windows in upcoming]
        self._at = {clip.clip_id: i for i, (clip, _) in enumerate(self._upcoming)}
        self._ready = {}

    def _reader(self, drive_id: str) -> _LabelsFile | None:
        path = self.store.path("drives", drive_id, TABLE_FILES["labels"])

        def opener() -> tuple[Any, _LabelsFile | None]:
            try:
                f = self.store.fs.open(path, "rb")
            except FileNotFoundError:
                return None, None
            try:
                # pre_buffer off: it coalesces reads for remote files, and costs time on a local one
                return f, _LabelsFile(pq.ParquetFile(f, pre_buffer=False))
            except BaseException:
                f.close()
                raise

        return cast("_LabelsFile | None", self.files.get(path, opener))

    def grids_for(self, clip: _Clip, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows into the returned grids (-1: no label), (N, rows, cols) grids) for drive ``frames``."""
        ready = self._ready.pop(clip.clip_id, None)
        if ready is not None and np.array_equal(ready[0], frames):
            return ready[1]
        got = self._lookup(clip, frames)
        i = self._at.get(clip.clip_id)
        if i is not None:
            for later, wanted in self._upcoming[i + 1 : i + self.ahead]:
                if later.clip_id not in self._ready:
                    self._ready[later.clip_id] = (wanted, self._lookup(later, wanted))
        return got

    def _lookup(self, clip: _Clip, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        span = _read_labels(
            self._reader(clip.drive_id), int(frames.min()), int(frames.max()), self.shape
        )
        if not len(span.frame):
            return np.full(len(frames), -1, dtype=np.int64), span.grid
        pos = np.minimum(np.searchsorted(span.frame, frames), len(span.frame) - 1)
        return np.where(span.frame[pos] == frames, pos, -1), span.grid


# A window's small fields side by side (each aligned to its size), copied into a batch in one
# step per window: 45 us less a 32-window batch than filling six arrays clip by clip (measured).
_SMALL = np.dtype(
    [
        ("command", "<i8"),
        ("frame", "<i8"),  # the target frame, in the drive
        ("t_s", "<f8"),
        ("speed_mps", "<f4"),
        ("action", "<f4", (2,)),  # (accel_mps2, steer_rad)
        ("lane_shift", "<f4"),
    ]
)


def _small_fields(clip: _Clip) -> np.ndarray:
    """(w,) _SMALL: each window's small fields."""
    j = clip.targets
    out = np.empty(len(j), dtype=_SMALL)
    out["command"], out["frame"], out["t_s"] = clip.command, clip.frame[j], clip.t_s[j]
    out["speed_mps"], out["action"], out["lane_shift"] = (
        clip.speed_mps,
        clip.action,
        clip.lane_shift,
    )
    return out


@dataclass
class _Open:
    """One clip's windows as decoded, kept while any of them waits in the shuffle buffer."""

    clip: _Clip
    small: np.ndarray  # (w,) _SMALL of each window of the clip
    runs: np.ndarray  # (cams, R, k, H, W[, 3]) view: every k-frame run of the decoded frames
    run: np.ndarray  # (w,) index into runs[:, ·] of each window of the clip (-1: not decoded)
    grid_row: np.ndarray  # (w,) index into ``grids`` of each window's label (-1: none)
    grids: np.ndarray  # (N, rows, cols) uint8
    left: int  # windows still to leave


# ---------------------------------------------------------------------------------- order
def _emit_order(
    counts: Sequence[int], buffer_windows: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """(clip, window) in the order a shuffle buffer of ``buffer_windows`` emits the windows.

    Windows enter clip by clip; once the buffer is full each new one takes the place of a
    uniformly drawn one, which leaves; at the end the rest leave in random order. Only ids move,
    so a shard's whole order costs a fraction of a microsecond a window to work out.
    """
    out: list[tuple[int, int]] = []
    if buffer_windows <= 1:
        return [(c, w) for c, n in enumerate(counts) for w in range(n)]
    total = int(sum(counts))
    draws = rng.integers(0, buffer_windows, size=max(total - buffer_windows, 0)).tolist()
    buf: list[tuple[int, int]] = []
    d = 0
    for c, n in enumerate(counts):
        for w in range(n):
            if len(buf) < buffer_windows:
                buf.append((c, w))
                continue
            i = draws[d]
            d += 1
            out.append(buf[i])
            buf[i] = (c, w)
    out.extend(buf[i] for i in rng.permutation(len(buf)).tolist())
    return out


def _resolve_dist(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# -------------------------------------------------------------------------------- dataset
class WindowDataset(IterableDataset[dict[str, Any]]):
    """Training windows of the clip store, streamed and decoded, sharded and resumable.

    ``store``: a :class:`Store` or its path/URL. ``specs``: which windows (see
    :func:`normalise_specs`); None for all. ``frames``: k, frames a window (>= 1). ``stride``:
    one window every this many frames of a clip. ``shuffle``: shuffle clips per epoch and pass
    windows through a shuffle buffer of ``buffer_windows`` (0 or 1: no buffer); off, windows come
    in spec order. ``seed``: with the epoch, fixes the order. ``rank``/``world_size``: the DDP
    place; by default read from ``torch.distributed`` when it is initialised, else 0 of 1.
    ``occupancy``: also read the occupancy labels (off: no ``occupancy``/``has_occupancy`` keys
    and no labels file read, for training that does not use them).
    """

    def __init__(
        self,
        store: Store | str | os.PathLike[str],
        specs: object = None,
        *,
        frames: int = 2,
        stride: int = 1,
        shuffle: bool = True,
        buffer_windows: int = DEFAULT_BUFFER_WINDOWS,
        seed: int = 0,
        occupancy: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.frames = _whole("frames", frames, 1)
        self.stride = _whole("stride", stride, 1)
        self.buffer_windows = _whole("buffer_windows", buffer_windows, 0)
        self.seed = _whole("seed", seed, 0)
        if not isinstance(shuffle, bool):
            raise DojoConfigError(f"shuffle={shuffle!r} must be True or False.")
        self.shuffle = shuffle
        if not isinstance(occupancy, bool):
            raise DojoConfigError(f"occupancy={occupancy!r} must be True or False.")
        self.occupancy = occupancy
        if (rank is None) != (world_size is None):
            raise DojoConfigError(
                f"rank={rank!r} and world_size={world_size!r}: give both or neither."
            )
        if world_size is not None:
            world_size = _whole("world_size", world_size, 1)
            rank = _whole("rank", rank, 0)
            if rank >= world_size:
                raise DojoConfigError(f"rank={rank} must be below world_size={world_size}.")
        self.rank, self.world_size = _resolve_dist(rank, world_size)
        self.store = _store(store)
        rig, grid, clips = _plan(self.store, normalise_specs(specs), self.frames, self.stride)
        self.rig: Rig | None = rig
        self.occupancy_shape: tuple[int, int] = (
            grid  # (rows, cols); (0, 0) when nothing is labelled
        )
        self._clips = clips
        h = hashlib.sha256(
            json.dumps(
                [self.frames, self.stride, self.shuffle, self.buffer_windows, self.seed]
            ).encode()
        )
        for clip in clips:
            h.update(clip.clip_id.encode() + clip.targets.tobytes())
        self.fingerprint = h.hexdigest()[:16]  # the window set and order settings, for resume
        self.epoch = 0
        self._reset_position()

    # ------------------------------------------------------------------ what is in it
    @property
    def num_windows(self) -> int:
        """Windows in an epoch, over all shards."""
        return int(sum(len(c.targets) for c in self._clips))

    @property
    def num_clips(self) -> int:
        return len(self._clips)

    def clip_ids(self) -> list[str]:
        """The clips that have windows, in spec order."""
        return [c.clip_id for c in self._clips]

    def decoded_camera_frames(self) -> int:
        """Camera frames an epoch decodes (each frame once; from the keyframe before each clip's first need)."""
        total = 0
        for clip in self._clips:
            _, hi, starts = _decode_span(clip, np.arange(len(clip.targets)), self.frames)
            total += int(np.sum(hi + 1 - starts))
        return total

    def _shard_clips(self, shard: int, shards: int, epoch: int) -> list[int]:
        order = np.arange(len(self._clips))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self._clips))
        return order[shard::shards].tolist()

    def windows_per_shard(self, shards: int, epoch: int | None = None) -> list[int]:
        """How many windows each of ``shards`` shards yields in ``epoch`` (DDP ranks need equal steps)."""
        shards = _whole("shards", shards, 1)
        e = self.epoch if epoch is None else epoch
        return [
            sum(len(self._clips[c].targets) for c in self._shard_clips(s, shards, e))
            for s in range(shards)
        ]

    def shard_order(
        self, shard: int, shards: int, epoch: int | None = None
    ) -> list[tuple[str, int]]:
        """(clip_id, target drive frame) of each window of a shard, in the order it yields them."""
        e = self.epoch if epoch is None else epoch
        clips = self._shard_clips(shard, shards, e)
        return [
            (
                self._clips[clips[c]].clip_id,
                int(self._clips[clips[c]].frame[self._clips[clips[c]].targets[w]]),
            )
            for c, w in self._order(clips, shard, shards, e)
        ]

    def _order(
        self, clips: list[int], shard: int, shards: int, epoch: int
    ) -> list[tuple[int, int]]:
        counts = [len(self._clips[c].targets) for c in clips]
        buffer = self.buffer_windows if self.shuffle else 0
        rng = np.random.default_rng([self.seed, epoch, shard, shards])
        return _emit_order(counts, buffer, rng)

    # --------------------------------------------------------------------- position
    def _reset_position(self) -> None:
        self._resume: dict[int, int] = {}  # shard -> windows already consumed when iteration starts
        self._resume_shards: int | None = None
        self._resume_next: dict[int, int] = {}  # rank -> local shard its DataLoader serves first
        self._seen: dict[int, int] = {}  # shard -> windows consumed in this pass
        self._seen_shards: int | None = None
        self._last: dict[int, int] = {}  # rank -> local shard of the last consumed window

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning (call before each epoch, as with DistributedSampler)."""
        self.epoch = _whole("epoch", epoch, 0)
        self._reset_position()

    def observe(self, batch: Mapping[str, Any]) -> None:
        """Record that a batch (or one window) was consumed, for :meth:`state_dict`.

        Iterating the dataset in this process records itself, and :class:`WindowLoader` calls
        this for each batch it hands over; with a DataLoader of your own and workers (which
        produce the windows in copies of the dataset), pass each batch here as you use it.
        """
        try:
            shard, shards, position = (
                np.atleast_1d(np.asarray(batch[k])).astype(np.int64)
                for k in ("shard", "shards", "position")
            )
        except KeyError as e:
            raise DojoConfigError(
                f"observe() needs a batch from this loader; it has no {e.args[0]!r}."
            ) from None
        if len(shard) == 0:
            return
        if len(set(shards.tolist())) != 1:
            raise DojoConfigError(
                f"observe() got windows read with different shard counts {sorted(set(shards.tolist()))}."
            )
        self._record(int(shards[0]), shard.tolist(), position.tolist())

    def _record(self, shards: int, shard: list[int], position: list[int]) -> None:
        self._seen_shards = shards
        for s, p in zip(shard, position, strict=True):
            self._seen[s] = p + 1  # a shard's windows come in order: the last one is the furthest
        workers = max(1, shards // self.world_size)
        last = shard[-1]
        self._last[last // workers] = last % workers

    def state_dict(self) -> dict[str, Any]:
        """The position in the epoch, JSON-safe: windows consumed per shard, and who serves next.

        In DDP each rank knows its own shards; combine the ranks' dicts with :func:`merge_states`.
        """
        shards = self._seen_shards if self._seen_shards is not None else self._resume_shards
        positions = dict(self._resume)
        positions.update(self._seen)
        next_worker = dict(self._resume_next)
        if shards is not None:
            workers = max(1, shards // self.world_size)
            next_worker.update({r: (w + 1) % workers for r, w in self._last.items()})
            mine = range(self.rank * workers, (self.rank + 1) * workers)
            positions = {s: p for s, p in positions.items() if s in mine}
            next_worker = {r: w for r, w in next_worker.items() if r == self.rank}
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "epoch": self.epoch,
            "world_size": self.world_size,
            "shards": shards,
            "positions": {str(s): int(p) for s, p in sorted(positions.items()) if p > 0},
            "next_worker": {str(r): int(w) for r, w in sorted(next_worker.items())},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved position: the next iteration yields the rest of that epoch."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise DojoConfigError(
                "The state is not a saved loader position (no 'format': 'dojo-loader-position')."
            )
        if state.get("version") != STATE_VERSION:
            raise DojoConfigError(
                f"The saved loader position is version {state.get('version')!r}; this Dojo reads {STATE_VERSION}."
            )
        if state.get("fingerprint") != self.fingerprint:
            raise DojoConfigError(
                "The saved loader position is for other windows or order settings "
                "(specs, frames, stride, shuffle, buffer_windows or seed differ)."
            )
        try:
            epoch = _whole("epoch", state["epoch"], 0)
            shards = None if state.get("shards") is None else _whole("shards", state["shards"], 1)
            positions = {
                int(s): _whole("position", p, 0) for s, p in dict(state["positions"]).items()
            }
            next_worker = {
                int(r): _whole("next_worker", w, 0) for r, w in dict(state["next_worker"]).items()
            }
        except (KeyError, TypeError, ValueError) as e:
            raise DojoConfigError(
                f"The saved loader position is malformed ({type(e).__name__}: {e})."
            ) from e
        self.set_epoch(epoch)
        self._resume, self._resume_shards, self._resume_next = positions, shards, next_worker

    # -------------------------------------------------------------------- iterating
    def __iter__(self) -> Iterator[dict[str, Any]]:
        shard, shards, start, track = self._place()
        return self._iter_shard(shard, shards, start, track)

    def _place(self) -> tuple[int, int, int, bool]:
        """(shard, shards, first window, whether to record the position here) for this process."""
        rank, world_size = self.rank, self.world_size
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        shards = world_size * workers
        if self._resume and self._resume_shards not in (None, shards):
            raise DojoConfigError(
                f"The saved loader position was taken with {self._resume_shards} shards "
                f"(world_size x DataLoader workers) but this run has {shards}; resume with the same ones."
            )
        if info is None:
            self._seen, self._seen_shards, self._last = {}, None, {}  # a new pass in this process
        local = (worker + self._resume_next.get(rank, 0)) % workers
        shard = rank * workers + local
        return shard, shards, self._resume.get(shard, 0), info is None

    def _iter_shard(
        self, shard: int, shards: int, start: int, track: bool
    ) -> Iterator[dict[str, Any]]:
        for keys, position, opened in self._walk(shard, shards, start, 1):
            (c, w) = keys[0]
            sample = self._sample(opened[c], w)
            sample.update(shard=shard, shards=shards, position=position)
            if track:
                self._record(shards, [shard], [position])
            yield sample

    def iter_batches(
        self, batch_size: int, shard: int, shards: int, start: int = 0
    ) -> Iterator[dict[str, Any]]:
        """Shard ``shard`` of ``shards`` from window ``start`` on, ``batch_size`` windows at a time.

        The batches a DataLoader of ``batch_size`` would collate from this shard's windows, built
        straight from the clips' decoded frames (one copy of each window's images): what
        :class:`WindowLoader` runs in each worker. Fields as :func:`collate_windows` gives them,
        with the small ones as numpy arrays.
        """
        batch_size = _whole("batch_size", batch_size, 1)
        return self._batches(batch_size, shard, shards, start, _batch_memory(None))

    def _batches(
        self, batch_size: int, shard: int, shards: int, start: int, memory: _Memory
    ) -> Iterator[dict[str, Any]]:
        for keys, position, opened in self._walk(shard, shards, start, batch_size):
            yield self._batch(keys, opened, shard, shards, position, memory)

    def _walk(
        self, shard: int, shards: int, start: int, chunk: int
    ) -> Iterator[tuple[list[tuple[int, int]], int, dict[int, _Open]]]:
        """(keys, position of the first, the open clips) for each ``chunk`` of the shard's windows.

        A clip is decoded when its first window is due and let go when its last has left.
        """
        clips = self._shard_clips(shard, shards, self.epoch)
        order = self._order(clips, shard, shards, self.epoch)
        need: dict[int, list[int]] = {}  # in the order the clips are opened
        for c, w in order[start:]:
            need.setdefault(c, []).append(w)
        windows_of = {c: np.array(sorted(ws), dtype=np.int64) for c, ws in need.items()}
        files = OpenFiles(OPEN_FILES)
        labels = None
        if self.occupancy and self.occupancy_shape[0] * self.occupancy_shape[1]:
            labels = _LabelCache(self.store, self.occupancy_shape, files)
            labels.plan((self._clips[clips[c]], windows) for c, windows in windows_of.items())
        kept = _Kept(files, BufferPool(), _Decoder())
        opened: dict[int, _Open] = {}
        try:
            for position in range(start, len(order), chunk):
                keys = order[position : position + chunk]
                for c, _ in keys:
                    if c not in opened:
                        opened[c] = self._open(
                            self._clips[clips[c]], windows_of.pop(c), labels, kept
                        )
                yield keys, position, opened
                for c, _ in keys:
                    o = opened[c]
                    o.left -= 1
                    if o.left == 0:
                        del opened[c]
        finally:
            files.close()

    def _open(
        self, clip: _Clip, windows: np.ndarray, labels: _LabelCache | None, kept: _Kept
    ) -> _Open:
        """Decode what ``windows`` (indices into ``clip.targets``) of ``clip`` need, and find their labels."""
        assert self.rig is not None
        k = self.frames
        lo, decoded = _decode_clip(
            self.store, self.rig, clip, windows, k, kept
        )  # (cams, T, H, W[, 3])
        # every k-frame run of the decoded frames, as views: (cams, T-k+1, k, H, W[, 3])
        runs = np.moveaxis(
            np.lib.stride_tricks.sliding_window_view(decoded, k, axis=1, writeable=True), -1, 2
        )
        run = np.full(len(clip.targets), -1, dtype=np.int64)
        j = clip.targets[windows]  # target frame of each window, index into the clip
        run[windows] = j - lo - (k - 1)
        grid_row = np.full(len(clip.targets), -1, dtype=np.int64)
        grids = np.zeros((0, *self.occupancy_shape), dtype=np.uint8)
        if labels is not None:
            grid_row[windows], grids = labels.grids_for(clip, clip.frame[j])
        return _Open(clip, _small_fields(clip), runs, run, grid_row, grids, left=len(windows))

    def _sample(self, o: _Open, w: int) -> dict[str, Any]:
        """Window ``w`` of an open clip as one sample; its images a view into the decoded frames."""
        small = o.small[w : w + 1]  # the record a batch copies too
        sample: dict[str, Any] = {
            "images": torch.from_numpy(o.runs[:, int(o.run[w])]),
            "speed_mps": torch.from_numpy(small["speed_mps"].copy()).reshape(()),
            "command": torch.from_numpy(small["command"].copy()).reshape(()),
            "action": torch.from_numpy(small["action"][0].copy()),
            "lane_shift": torch.from_numpy(small["lane_shift"].copy()).reshape(()),
        }
        if self.occupancy:
            g = int(o.grid_row[w])
            grid = o.grids[g] if g >= 0 else np.zeros(self.occupancy_shape, dtype=np.uint8)
            sample["occupancy"] = torch.from_numpy(grid)
            sample["has_occupancy"] = torch.tensor(g >= 0)
        sample.update(
            frame=int(small["frame"][0]), t_s=float(small["t_s"][0]), clip_id=o.clip.clip_id
        )
        return sample

    def _batch(
        self,
        keys: list[tuple[int, int]],
        opened: dict[int, _Open],
        shard: int,
        shards: int,
        position: int,
        memory: _Memory,
    ) -> dict[str, Any]:
        """The windows ``keys`` as one batch, each field filled in place clip by clip (big ones in ``memory``)."""
        assert self.rig is not None
        n = len(keys)
        big = [
            (n, *self.rig.image_shape(self.frames)),
            (n if self.occupancy else 0, *self.occupancy_shape),
        ]
        images_t, occupancy_t = memory.tensors(big)  # (B, cams, k, H, W[, 3]), (B, rows, cols)
        images, occupancy = images_t.numpy(), occupancy_t.numpy()
        small = np.empty(n, dtype=_SMALL)
        has = np.zeros(n, dtype=bool)
        clip_ids = []
        for i, (c, w) in enumerate(keys):
            o = opened[c]
            images[i] = o.runs[:, o.run[w]]  # the one copy of the window's frames
            if self.occupancy:
                g = o.grid_row[w]
                if g >= 0:
                    occupancy[i] = o.grids[g]  # and of its label
                    has[i] = True
                else:
                    occupancy[i] = 0
            small[i] = o.small[w]
            clip_ids.append(o.clip.clip_id)
        batch: dict[str, Any] = {
            "images": images_t,
            "speed_mps": small["speed_mps"].copy(),  # each field contiguous on its own
            "command": small["command"].copy(),
            "action": small["action"].copy(),
            "lane_shift": small["lane_shift"].copy(),
        }
        if self.occupancy:
            batch["occupancy"] = occupancy_t
            batch["has_occupancy"] = has
        batch.update(
            frame=small["frame"].copy(),
            t_s=small["t_s"].copy(),
            clip_id=clip_ids,
            shard=np.full(n, shard, dtype=np.int64),
            shards=np.full(n, shards, dtype=np.int64),
            position=np.arange(position, position + n, dtype=np.int64),
        )
        return batch


def merge_states(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One position from every DDP rank's :meth:`WindowDataset.state_dict` (gathered by the trainer)."""
    if not states:
        raise DojoConfigError("merge_states() needs at least one state.")
    first = dict(states[0])
    for s in states[1:]:
        for key in ("format", "version", "fingerprint", "epoch", "world_size"):
            if s.get(key) != first.get(key):
                raise DojoConfigError(
                    f"The ranks' loader positions differ in {key!r}; they are not from one run."
                )
    shards = {int(s["shards"]) for s in states if s.get("shards") is not None}
    if len(shards) > 1:
        raise DojoConfigError(
            f"The ranks' loader positions were taken with different shard counts {sorted(shards)}."
        )
    merged = {
        **first,
        "shards": shards.pop() if shards else None,
        "positions": {},
        "next_worker": {},
    }
    for s in states:
        merged["positions"].update(s["positions"])
        merged["next_worker"].update(s["next_worker"])
    return merged


# ------------------------------------------------------------------------------- batching
_NUMPY_STACK_BYTES = 1 << 16  # a field this large stacks faster through numpy than torch


def collate_windows(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack windows into a batch: tensors (B, ...), numbers a tensor (B,), strings a list.

    Like torch's default_collate for these dicts, but stacks through numpy, which measured
    faster for the many small uint8 images of a batch on CPU.
    """
    if not samples:
        raise DojoConfigError("collate_windows() got an empty batch.")
    out: dict[str, Any] = {}
    for key, first in samples[0].items():
        values = [s[key] for s in samples]
        if isinstance(first, torch.Tensor):
            if first.numel() * first.element_size() * len(values) < _NUMPY_STACK_BYTES:
                out[key] = torch.stack(
                    values
                )  # (B, ...) a few hundred bytes: torch's stack is quicker
            else:  # images, grids: numpy's stack is quicker for many large uint8 arrays
                out[key] = torch.from_numpy(np.stack([v.numpy() for v in values]))
        elif isinstance(first, str):
            out[key] = values
        else:
            out[key] = torch.from_numpy(
                np.array(values, dtype=np.float64 if isinstance(first, float) else np.int64)
            )
    return out


def _batch_memory(slots: SlotRing | None) -> _Memory:
    """Where this process builds batches: in this process (the trainer's), memory reused once
    let go; in a DataLoader worker, shared memory the batch crosses in: the slots of ``slots``
    (handed back by WindowLoader), else fresh each time."""
    info = get_worker_info()
    if info is None:
        return BufferPool()
    return WorkerSlots(slots, info.id) if slots is not None else FreshShared()


class _Batches(IterableDataset[dict[str, Any]]):
    """A :class:`WindowDataset` read ``batch_size`` windows at a time, for a DataLoader without auto-batching.

    Each DataLoader worker reads its own shard and yields the batches the DataLoader would have
    collated from that shard's windows (partial last batch included, unless ``drop_last``), so the
    sequence of batches, and with it the saved position, is the same as batching windows.
    """

    def __init__(self, dataset: WindowDataset, batch_size: int, drop_last: bool) -> None:
        super().__init__()
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.slots: SlotRing | None = None  # set by WindowLoader for each pass with workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        data = self.dataset
        shard, shards, start, _ = (
            data._place()
        )  # WindowLoader records each batch as it hands it over
        memory = _batch_memory(self.slots)
        for batch in data._batches(self.batch_size, shard, shards, start, memory):
            if self.drop_last and len(batch["clip_id"]) < self.batch_size:
                return
            if isinstance(memory, WorkerSlots):
                memory.stamp(batch, _BIG_FIELDS)
            yield batch


def _as_is(batch: Any) -> Any:
    """The DataLoader's per-item hook: batches are already built (small fields stay numpy to cross cheaply)."""
    return batch


class _WorkerInit:
    """A loader worker ignores SIGTERM, then runs the user's ``worker_init_fn``.

    A stop signal sent to the whole process group (a scheduler preempting a training job)
    would otherwise kill the workers under a trainer that is finishing its step to checkpoint;
    the trainer's loader stops them itself, and they exit on their own if it dies.
    """

    def __init__(self, then: Any) -> None:
        self.then = then

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.then is not None:
            self.then(worker_id)


class WindowLoader:
    """Batches of a :class:`WindowDataset` through a DataLoader, its position kept as they come.

    Iterating yields dicts of tensors (strings as lists) and records each batch with
    :meth:`WindowDataset.observe` as it is handed over, so ``dataset.state_dict()`` is the
    position after the last batch taken, with or without workers. The batches are what a
    DataLoader of ``batch_size`` over the windows with :func:`collate_windows` gives, built
    without a per-window detour (:meth:`WindowDataset.iter_batches`).
    """

    def __init__(
        self, dataset: WindowDataset, batch_size: int = 32, num_workers: int = 0, **options: Any
    ) -> None:
        if not isinstance(dataset, WindowDataset):
            raise DojoConfigError(
                f"WindowLoader needs a WindowDataset; got {type(dataset).__name__}."
            )
        batch_size = _whole("batch_size", batch_size, 1)
        num_workers = _whole("num_workers", num_workers, 0)
        if options.get("persistent_workers"):
            raise DojoConfigError(
                "persistent_workers=True would keep workers on their first epoch and position; leave it off."
            )
        for taken in ("collate_fn", "sampler", "batch_sampler"):
            if taken in options:
                raise DojoConfigError(
                    f"WindowLoader builds its own batches; {taken}= is not an option of it."
                )
        drop_last = options.pop("drop_last", False)
        if not isinstance(drop_last, bool):
            raise DojoConfigError(f"drop_last={drop_last!r} must be True or False.")
        self.dataset = dataset
        self.batch_size, self.num_workers = batch_size, num_workers
        if num_workers:
            options["worker_init_fn"] = _WorkerInit(options.get("worker_init_fn"))
        self.prefetch_factor = int(
            options.get("prefetch_factor") or 2
        )  # batches a worker has in flight
        self.pin_memory = bool(options.get("pin_memory"))
        self._batches = _Batches(dataset, batch_size, drop_last)
        self.loader: DataLoader[Any] = DataLoader(
            self._batches, batch_size=None, num_workers=num_workers, collate_fn=_as_is, **options
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # workers write batches into slots handed back once a batch is let go (see dojo.data.slots)
        slots = None
        if self.num_workers and reusable():
            slots = SlotRing(self.num_workers, self.prefetch_factor + 3, keep=not self.pin_memory)
        self._batches.slots = slots  # the workers start (and take their copy) in iter(self.loader)
        try:
            for batch in self.loader:
                if slots is not None:
                    slots.received(batch, _BIG_FIELDS)
                    slots.release_idle()
                # a batch is one shard's windows in order (see _Batches): its last one says where it stands
                shard, position = batch["shard"], batch["position"]
                if len(position):
                    self.dataset._record(
                        int(batch["shards"][0]), [int(shard[-1])], [int(position[-1])]
                    )
                yield {
                    k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                    for k, v in batch.items()
                }
        finally:
            self._batches.slots = None


def make_loader(
    dataset: WindowDataset, batch_size: int = 32, num_workers: int = 0, **options: Any
) -> WindowLoader:
    """A :class:`WindowLoader`; ``options`` go to torch's DataLoader (``pin_memory``, ...).

    Workers copy the dataset when each epoch's iteration starts, which is how
    :meth:`WindowDataset.set_epoch` and a loaded position reach them (so no persistent workers).
    """
    return WindowLoader(dataset, batch_size=batch_size, num_workers=num_workers, **options)


# ------------------------------------------------------------------------------ measuring
def _select_clips(store: Store, clip_ids: Sequence[str] | None) -> list[tuple[str, str, list[str]]]:
    """(clip_id, drive_id, cameras) of the chosen clips (all by default), in store order."""
    con = connect(store)
    try:
        rows = con.sql(
            "SELECT c.clip_id, c.drive_id, d.cameras FROM clips c JOIN drives d USING (drive_id) "
            "ORDER BY c.drive_id, c.start_frame"
        ).fetchall()
    finally:
        con.close()
    if clip_ids is None:
        return [(c, d, list(cams)) for c, d, cams in rows]
    by_id = {c: (c, d, list(cams)) for c, d, cams in reversed(rows)}
    unknown = [c for c in clip_ids if c not in by_id]
    if unknown:
        raise DojoConfigError(f"clip_id {unknown[0]!r} is not in store {store.url!r}.")
    return [by_id[c] for c in dict.fromkeys(clip_ids)]


def decode_rate_raw(
    store: Store | str | os.PathLike[str],
    clip_ids: Sequence[str] | None = None,
    max_frames: int | None = None,
) -> dict[str, Any]:
    """The reference: plain PyAV decoding the same video sequentially, frames/s on one thread.

    Each chosen clip's byte range of each camera file (the whole file when all its clips are
    chosen) is opened with ``av.open(..., format="h264")`` and every frame decoded and turned
    into a numpy array the way the loader does (luma plane for grey, rgb24 for colour). One
    decoding thread: slice threads only slow small frames down, and the loader's parallelism
    comes from its workers. Reading the bytes is timed too, as it is in the loader.
    """
    st = _store(store)
    if max_frames is not None:
        max_frames = _whole("max_frames", max_frames, 1)
    chosen = _select_clips(st, clip_ids)
    con = connect(st)
    try:
        spans = _arrow(
            con,
            "SELECT drive_id, clip_id, camera, min(byte_offset) AS a, max(byte_offset + byte_size) AS b "
            "FROM frames GROUP BY drive_id, clip_id, camera",
        )
        rgb_of = dict(con.sql("SELECT drive_id, rgb FROM drives").fetchall())
        clips_of: dict[str, int] = dict(
            con.sql("SELECT drive_id, count(*) FROM clips GROUP BY drive_id").fetchall()
        )
    finally:
        con.close()
    span = {
        (str(d), str(c), str(cam)): (int(a), int(b))
        for d, c, cam, a, b in zip(
            spans["drive_id"],
            spans["clip_id"],
            spans["camera"],
            spans["a"],
            spans["b"],
            strict=True,
        )
    }
    by_drive: dict[str, list[str]] = {}
    cams_of: dict[str, list[str]] = {}
    for clip_id, drive_id, cams in chosen:
        by_drive.setdefault(drive_id, []).append(clip_id)
        cams_of[drive_id] = cams
    decoded, files = 0, 0
    start = time.perf_counter()
    for drive_id, clips in by_drive.items():
        whole = len(clips) == clips_of.get(drive_id, -1)
        for cam in cams_of[drive_id]:
            path = st.path("drives", drive_id, "video", f"{cam}.h264")
            if whole:
                data = st.fs.cat_file(path)
            else:
                data = b"".join(st.fs.cat_file(path, *span[(drive_id, c, cam)]) for c in clips)
            files += 1
            with av.open(io.BytesIO(data), mode="r", format="h264") as container:
                stream = container.streams.video[0]
                stream.codec_context.thread_count = 1
                for frame in container.decode(stream):
                    _ = (
                        frame.to_ndarray(format="rgb24")
                        if rgb_of[drive_id]
                        else _luma(frame).copy()
                    )
                    decoded += 1
                    if max_frames is not None and decoded >= max_frames:
                        break
            if max_frames is not None and decoded >= max_frames:
                break
        if max_frames is not None and decoded >= max_frames:
            break
    seconds = time.perf_counter() - start
    return {
        "frames": decoded,
        "seconds": seconds,
        "frames_per_s": decoded / seconds if seconds > 0 else 0.0,
        "clips": sum(len(c) for c in by_drive.values()),
        "streams": files,
        "threads": 1,
    }


def loader_rate(
    store: Store | str | os.PathLike[str],
    clip_ids: Sequence[str] | None = None,
    *,
    frames: int = 2,
    stride: int = 1,
    batch_size: int = 32,
    num_workers: int = 0,
    buffer_windows: int = DEFAULT_BUFFER_WINDOWS,
    seed: int = 0,
    occupancy: bool = True,
) -> dict[str, Any]:
    """One whole epoch through a DataLoader: windows/s and decoded camera frames/s.

    Windows of the chosen clips (all by default; whole clips, so the same frames as
    :func:`decode_rate_raw`) are read with ``num_workers`` workers in batches of ``batch_size``.
    Decoded camera frames are the frames the loader actually decoded (each once), so they
    compare directly with the raw rate; the clock starts before the workers do.
    """
    st = _store(store)
    specs = (
        None
        if clip_ids is None
        else [WindowSpec(c, -math.inf, math.inf) for c in dict.fromkeys(clip_ids)]
    )
    start = time.perf_counter()
    data = WindowDataset(
        st,
        specs,
        frames=frames,
        stride=stride,
        buffer_windows=buffer_windows,
        seed=seed,
        occupancy=occupancy,
        rank=0,
        world_size=1,
    )
    plan_s = time.perf_counter() - start
    windows = 0
    start = time.perf_counter()
    for batch in make_loader(data, batch_size=batch_size, num_workers=num_workers):
        windows += len(batch["clip_id"])
    seconds = time.perf_counter() - start
    decoded = data.decoded_camera_frames()
    return {
        "windows": windows,
        "decoded_camera_frames": decoded,
        "delivered_camera_frames": windows * frames * len(data.rig.cameras if data.rig else ()),
        "seconds": seconds,
        "plan_s": plan_s,
        "windows_per_s": windows / seconds if seconds > 0 else 0.0,
        "decoded_camera_frames_per_s": decoded / seconds if seconds > 0 else 0.0,
        "num_workers": num_workers,
        "batch_size": batch_size,
        "frames": frames,
        "occupancy": occupancy,
    }


__all__ = [
    "DEFAULT_BUFFER_WINDOWS",
    "Rig",
    "WindowDataset",
    "WindowSpec",
    "collate_windows",
    "decode_rate_raw",
    "loader_rate",
    "WindowLoader",
    "make_loader",
    "merge_states",
    "normalise_specs",
]
