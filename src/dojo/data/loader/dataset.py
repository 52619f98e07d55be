"""The dataset: a shard's windows, its clips decoded when due, as samples or built batches.

:class:`WindowDataset` plans once (:mod:`~dojo.data.loader.plan`), works out a shard's order
(:mod:`~dojo.data.loader.order`), then walks it: a clip is decoded
(:mod:`~dojo.data.loader.decode`) and labelled (:mod:`~dojo.data.loader.labels`) when its first
window is due and let go when its last has left. Its position is kept by
:class:`~dojo.data.loader.state._Position`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from dojo.data.buffers import BufferPool
from dojo.data.loader.decode import _decode_clip, _decode_span, _Decoder, _Kept
from dojo.data.loader.labels import _LabelCache
from dojo.data.loader.order import _emit_order, _resolve_dist
from dojo.data.loader.plan import Rig, _Clip, _plan, _store, normalise_specs
from dojo.data.loader.state import _Position
from dojo.data.slots import FreshShared, SlotRing, WorkerSlots
from dojo.data.store import OpenFiles, Store
from dojo.errors import ConfigError
from dojo.nets.targets import LABEL_SOURCE, LABEL_SOURCES, PLANNER_TARGETS
from dojo.validate import choice, flag, whole
from dojo.world.occupancy import OccupancySpec

DEFAULT_BUFFER_WINDOWS = 256  # shuffle buffer [windows]; its windows keep their clips' frames alive
OPEN_FILES = 256  # video and labels files a shard keeps open, not to open them for every clip


class _Memory(Protocol):
    """Where a batch's big fields are built (see :mod:`dojo.data.buffers` and :mod:`dojo.data.slots`)."""

    def tensors(self, shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]: ...


_BIG_FIELDS = ("images", "occupancy")


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


# with auto-labels, each window's planner targets too (dojo.nets.targets)
_SMALL_PLANNER = np.dtype(
    _SMALL.descr
    + [
        ("planner", "<f4", (len(PLANNER_TARGETS),)),
        ("planner_valid", "?", (len(PLANNER_TARGETS),)),
    ]
)


def _small_fields(clip: _Clip, dtype: np.dtype[Any] = _SMALL) -> np.ndarray:
    """(w,) ``dtype`` (_SMALL or _SMALL_PLANNER): each window's small fields."""
    j = clip.targets
    out = np.empty(len(j), dtype=dtype)
    if "planner" in dtype.names:  # type: ignore[operator]
        out["planner"], out["planner_valid"] = clip.planner, clip.planner_valid
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


def _batch_memory(slots: SlotRing | None) -> _Memory:
    """Where this process builds batches: in this process (the trainer's), memory reused once
    let go; in a DataLoader worker, shared memory the batch crosses in: the slots of ``slots``
    (handed back by WindowLoader), else fresh each time."""
    info = get_worker_info()
    if info is None:
        return BufferPool()
    return WorkerSlots(slots, info.id) if slots is not None else FreshShared()


# -------------------------------------------------------------------------------- dataset
class WindowDataset(IterableDataset[dict[str, Any]], _Position):
    """Training windows of the clip store, streamed and decoded, sharded and resumable.

    ``store``: a :class:`Store` or its path/URL. ``specs``: which windows (see
    :func:`normalise_specs`); None for all. ``frames``: k, frames a window (>= 1). ``stride``:
    one window every this many frames of a clip. ``shuffle``: shuffle clips per epoch and pass
    windows through a shuffle buffer of ``buffer_windows`` (0 or 1: no buffer); off, windows come
    in spec order. ``seed``: with the epoch, fixes the order. ``rank``/``world_size``: the DDP
    place; by default read from ``torch.distributed`` when it is initialised, else 0 of 1.
    ``occupancy``: also read the occupancy labels (off: no ``occupancy``/``has_occupancy`` keys
    and no labels file read, for training that does not use them). ``labels``: where the targets
    come from (:data:`dojo.nets.targets.LABEL_SOURCES`): ``telemetry``, or ``autolabel``: the
    action, the lane shift and the occupancy grid from the drive's auto-labels (the row of the
    decision taken on seeing the target frame), the windows without a complete one left out
    (counted in :attr:`unlabelled_windows`), and each window also carries ``planner``
    float32 (P,) and ``planner_valid`` bool (P,) (:func:`dojo.nets.targets.planner_targets`).
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
        labels: str = LABEL_SOURCE,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.frames = whole("frames", frames, 1)
        self.stride = whole("stride", stride, 1)
        self.buffer_windows = whole("buffer_windows", buffer_windows, 0)
        self.seed = whole("seed", seed, 0)
        self.shuffle = flag("shuffle", shuffle)
        self.occupancy = flag("occupancy", occupancy)
        self.labels = choice("labels", labels, LABEL_SOURCES)
        self.planner = self.labels == "autolabel"  # windows carry the planner targets
        self._small = _SMALL_PLANNER if self.planner else _SMALL
        if (rank is None) != (world_size is None):
            raise ConfigError(f"rank={rank!r} and world_size={world_size!r}: give both or neither.")
        if world_size is not None:
            world_size = whole("world_size", world_size, 1)
            rank = whole("rank", rank, 0)
            if rank >= world_size:
                raise ConfigError(f"rank={rank} must be below world_size={world_size}.")
        self.rank, self.world_size = _resolve_dist(rank, world_size)
        self.store = _store(store)
        planned = _plan(self.store, normalise_specs(specs), self.frames, self.stride, self.labels)
        self.rig: Rig | None = planned.rig
        self.occupancy_shape: tuple[int, int] = (
            planned.grid  # (rows, cols); (0, 0) when nothing is labelled
        )
        # where the ego sits in that grid (None: not known), for the metrics per distance band
        self.occupancy_spec: OccupancySpec | None = planned.spec
        self.unlabelled_windows = planned.unlabelled  # left out: no complete auto-label
        clips = self._clips = planned.clips
        settings: list[Any] = [self.frames, self.stride, self.shuffle, self.buffer_windows]
        settings += [self.seed] + ([self.labels] if self.planner else [])
        h = hashlib.sha256(json.dumps(settings).encode())
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
        shards = whole("shards", shards, 1)
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
            raise ConfigError(
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
        batch_size = whole("batch_size", batch_size, 1)
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
            table = "autolabels" if self.planner else "labels"
            labels = _LabelCache(self.store, self.occupancy_shape, files, table=table)
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
            grid_row[windows], grids = labels.grids_for(clip, clip.label_frame[windows])
        small = _small_fields(clip, self._small)
        return _Open(clip, small, runs, run, grid_row, grids, left=len(windows))

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
        if self.planner:
            sample["planner"] = torch.from_numpy(small["planner"][0].copy())
            sample["planner_valid"] = torch.from_numpy(small["planner_valid"][0].copy())
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
        small = np.empty(n, dtype=self._small)
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
        if self.planner:
            batch["planner"] = small["planner"].copy()  # (B, P)
            batch["planner_valid"] = small["planner_valid"].copy()  # (B, P)
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
