"""Occupancy labels: a drive's Parquet labels file, open, and the grids of the clips being opened.

The file is the logged grids' ``labels.parquet`` or the auto-labeler's ``autolabels.parquet``
(both key a grid by ``frame``: the camera frame, or the decision step of an auto-label row).
Only the row groups that hold a clip's frames are read, a few clips ahead in one go.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pyarrow.parquet as pq

from dojo.data.loader.plan import _Clip
from dojo.data.store import TABLE_FILES, OpenFiles, Store


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
        self,
        store: Store,
        shape: tuple[int, int],
        files: OpenFiles,
        ahead: int = LABELS_AHEAD,
        table: str = "labels",
    ) -> None:
        self.store, self.shape, self.files, self.ahead = store, shape, files, ahead
        self.file = TABLE_FILES[table]  # labels | autolabels
        self._upcoming: list[tuple[_Clip, np.ndarray]] = []
        self._at: dict[str, int] = {}
        self._ready: dict[
            str, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]
        ] = {}  # clip_id: (frames, labels)

    def plan(self, upcoming: Iterable[tuple[_Clip, np.ndarray]]) -> None:
        """The (clip, windows wanted) to be opened, in order, so that reads can run ahead."""
        self._upcoming = [(clip, clip.label_frame[windows]) for clip, windows in upcoming]
        self._at = {clip.clip_id: i for i, (clip, _) in enumerate(self._upcoming)}
        self._ready = {}

    def _reader(self, drive_id: str) -> _LabelsFile | None:
        path = self.store.path("drives", drive_id, self.file)

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
        """(rows into the returned grids (-1: no label), (N, rows, cols) grids) for label ``frames``
        (:attr:`_Clip.label_frame` of the windows)."""
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
