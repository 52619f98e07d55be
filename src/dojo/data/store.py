"""The clip store: where ingested drive logs live, on any fsspec filesystem (local by default).

Layout (``ROOT`` is a folder path or an fsspec URL such as ``memory://store`` or ``s3://b/store``)::

    ROOT/store.json                      {"format": "dojo-clip-store", "version": 1}
    ROOT/drives/<drive_id>/              one ingested drive log, moved in whole (atomic)
        drive.parquet                    one row: the source file, its metadata and video settings
        clips.parquet                    the drive's clips (time windows that decode on their own)
        frames.parquet                   one row per (frame, camera): where its access unit lies
        telemetry.parquet  poses.parquet  events.parquet  labels.parquet
        autolabels.parquet               written by `dojo autolabel`, once per labels version
        scene.parquet                    one row per (logged moment, object): the /scene channel
        video/<camera>.h264              the camera's H.264 access units back to back (Annex B),
                                         remuxed from the log, never re-encoded
    ROOT/quarantine/<sha256>.json        a file that could not be ingested, and why
    ROOT/datasets/<name>/v<N>/           versioned datasets (see dojo.data.datasets)
    ROOT/tmp/                            work in progress; nothing under it is ever read

A drive's id is the start of the SHA-256 of its MCAP file, so ingesting the same file again
finds it already there. A clip's id is the start of the SHA-256 of its content (its video
bytes, camera by camera, and its labels), so the same content has the same id anywhere. Every
clip starts on a keyframe in every camera, so it decodes on its own.

Queries never see a half-written drive: ingest writes everything under ``tmp/`` and moves the
folder to ``drives/`` last (a rename on a local disk; on an object store the move is a copy
and the catalog only reads drives whose ``drive.parquet``, written last, exists).
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable
from typing import Any

import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from dojo.drivelog import telemetry
from dojo.errors import DojoConfigError

FORMAT = "dojo-clip-store"
VERSION = 1
DRIVE_ID_CHARS = 24  # hex digits of SHA-256 kept in a drive id (96 bits)
CLIP_ID_CHARS = 24
MAX_CLIP_S = 10.0  # a clip ends at the first keyframe after this long [s]

# --------------------------------------------------------------------------------- schemas
# Column units in names; one row of each table as the comment says.
DRIVES = pa.schema(  # one row per drive
    [
        ("drive_id", pa.string()),
        ("source", pa.string()),  # file name of the MCAP log
        ("source_sha256", pa.string()),
        ("source_bytes", pa.int64()),
        ("status", pa.string()),  # 'complete' or 'interrupted: ...' as the log says
        ("car_id", pa.string()),
        ("drive", pa.int32()),  # the car's drive number
        ("family", pa.string()),  # scenario family
        ("seed", pa.int64()),
        ("mode", pa.string()),  # manual | shadow | autonomous
        ("policy", pa.string()),
        ("logging", pa.string()),  # full | triggers
        ("cameras", pa.list_(pa.string())),
        ("width_px", pa.int32()),
        ("height_px", pa.int32()),
        ("rgb", pa.bool_()),
        ("fps", pa.float64()),
        ("keyframe_interval", pa.int32()),  # [frames]
        ("frames", pa.int32()),  # camera frames logged (per camera)
        ("duration_s", pa.float64()),  # telemetry span
        ("config", pa.string()),  # the log's 'drive' metadata record, JSON
        ("ingested_at", pa.timestamp("ms", tz="UTC")),
        # the log carries /scene messages (False: written before the channel existed); NULL
        # for a drive a store took in before this column existed
        ("has_scene", pa.bool_()),
    ]
)
CLIPS = pa.schema(  # one row per clip
    [
        ("clip_id", pa.string()),
        ("drive_id", pa.string()),
        ("start_frame", pa.int32()),  # first frame (index into the drive's frames)
        ("end_frame", pa.int32()),  # one past the last frame
        ("t0_s", pa.float64()),  # drive time of the first frame [s]
        ("t1_s", pa.float64()),  # drive time of the last frame [s]
        ("frames", pa.int32()),
        ("content_hash", pa.string()),  # full SHA-256 of the clip's video and labels
        ("family", pa.string()),
        ("car_id", pa.string()),
        ("mode", pa.string()),
    ]
)
FRAMES = pa.schema(  # one row per (frame, camera)
    [
        ("drive_id", pa.string()),
        ("clip_id", pa.string()),
        ("frame", pa.int32()),  # index of the frame within the drive, 0-based
        ("t_s", pa.float64()),  # drive time [s]
        ("camera", pa.string()),
        ("byte_offset", pa.int64()),  # byte offset of the access unit in video/<camera>.h264
        ("byte_size", pa.int32()),  # its length [bytes]
        ("keyframe", pa.bool_()),  # an IDR with SPS and PPS: decoding can start here
    ]
)
TELEMETRY = telemetry.ARROW_SCHEMA  # one row per decision step; columns from the field list
POSES = pa.schema(
    [
        ("drive_id", pa.string()),
        ("t_s", pa.float64()),
        ("x_m", pa.float64()),
        ("y_m", pa.float64()),
        ("z_m", pa.float64()),
        ("yaw_rad", pa.float64()),
    ]
)
EVENTS = pa.schema(
    [
        ("drive_id", pa.string()),
        ("t_s", pa.float64()),
        ("kind", pa.string()),  # dojo.drivelog.schemas.EVENT_KINDS
        ("critical", pa.bool_()),
        ("reason", pa.string()),
        ("extra", pa.string()),  # JSON
    ]
)
LABELS = pa.schema(  # ground-truth occupancy, one row per labelled frame
    [
        ("drive_id", pa.string()),
        ("clip_id", pa.string()),
        ("frame", pa.int32()),
        ("t_s", pa.float64()),
        ("rows", pa.int16()),
        ("cols", pa.int16()),
        ("cell_m", pa.float64()),
        ("grid", pa.binary()),  # rows*cols uint8 classes, row-major (dojo.world.occupancy)
    ]
)
SCENE = pa.schema(  # every object around the ego at each logged moment (dojo.world.scene)
    [
        ("drive_id", pa.string()),
        ("t_s", pa.float64()),  # drive time of the moment [s]
        ("frame", pa.int32()),  # the camera frame at that time (index into frames), -1: none
        ("object_id", pa.int32()),  # unique within a moment; 0 is the ego
        ("kind", pa.string()),  # car | truck | barrier | debris | ego
        ("x_m", pa.float64()),  # box centre in the world frame [m]
        ("y_m", pa.float64()),
        ("yaw_rad", pa.float64()),  # heading about z in the world frame [rad]
        ("speed_mps", pa.float64()),
        ("length_m", pa.float64()),
        ("width_m", pa.float64()),
        ("height_m", pa.float64()),
        ("lane", pa.int16()),  # nearest lane: 0 rightmost, -1 a ramp
        ("s_m", pa.float64()),  # Frenet: along the road [m]
        ("d_m", pa.float64()),  # Frenet: left of the reference line [m]
    ]
)
FLOW_STEP_MPS = 0.5  # autolabel flow is stored as int8 multiples of this: +-63 m/s, error 0.25
AUTOLABELS = pa.schema(  # written by `dojo autolabel` (dojo.data.autolabel): one row per frame
    [
        ("drive_id", pa.string()),
        ("frame", pa.int32()),  # index of the logged decision step in the drive
        ("t_s", pa.float64()),
        ("version", pa.int16()),
        ("label_source", pa.string()),  # 'autolabel'
        ("driver", pa.string()),  # who drove the frame: human, network, safety_driver
        ("complete", pa.bool_()),  # every field labelled (False: see the stage's docstring)
        ("accel_mps2", pa.float64()),
        ("lane_shift", pa.int8()),
        ("lead_id", pa.int32()),
        ("lead_gap_m", pa.float64()),
        ("closing_mps", pa.float64()),
        ("ttc_s", pa.float64()),
        ("left_ahead_gap_m", pa.float64()),
        ("left_behind_gap_m", pa.float64()),
        ("right_ahead_gap_m", pa.float64()),
        ("right_behind_gap_m", pa.float64()),
        ("visible_objects", pa.int16()),
        ("grid_rows", pa.int16()),
        ("grid_cols", pa.int16()),
        ("cell_m", pa.float64()),
        ("grid_forward_m", pa.float64()),
        ("grid", pa.binary()),  # rows*cols uint8 classes (dojo.world.occupancy); null between
        ("flow", pa.binary()),  # rows*cols*2 int8 [FLOW_STEP_MPS]: (x, y) velocity minus ego's
    ]
)
TABLES: dict[str, pa.Schema] = {
    "drives": DRIVES,
    "clips": CLIPS,
    "frames": FRAMES,
    "telemetry": TELEMETRY,
    "poses": POSES,
    "events": EVENTS,
    "labels": LABELS,
    "scene": SCENE,
}
# tables a store written by older code may lack in every drive (the catalog then shows them empty)
ADDED_TABLES = frozenset({"scene"})
# Tables a drive gains after ingest (ingest never writes them), so some drives lack them.
OPTIONAL_TABLES: dict[str, pa.Schema] = {"autolabels": AUTOLABELS}
TABLE_FILES = {
    name: ("drive" if name == "drives" else name) + ".parquet"
    for name in [*TABLES, *OPTIONAL_TABLES]
}


ROW_GROUP_ROWS = 1_000_000  # Parquet row group: big enough for fast scans, small enough to skip


def parquet_options(schema: pa.Schema, row_group_rows: int = ROW_GROUP_ROWS) -> dict[str, Any]:
    """How the benchmark writes a table (keywords of ``pq.write_table``), and why.

    zstd as ingest uses. Floating-point columns are BYTE_STREAM_SPLIT: their bytes are grouped
    by significance before zstd, which on telemetry shrinks ``t_s`` about 25x and the files
    about a sixth, and halves the time to scan ``t_s`` (measured on 10^7 rows). Dictionaries
    only for columns whose values repeat; on the float columns pyarrow would build one and
    give it up.
    """
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    repeats = [
        f.name
        for f in schema
        if pa.types.is_string(f.type) or pa.types.is_integer(f.type) or pa.types.is_boolean(f.type)
    ]
    return {
        "row_group_size": row_group_rows,
        "compression": "zstd",
        "use_dictionary": repeats,
        "column_encoding": dict.fromkeys(floats, "BYTE_STREAM_SPLIT"),
    }


# ------------------------------------------------------------------------------- the store
class Store:
    """A clip store at ``root`` (a path or an fsspec URL); ``create`` makes a new one."""

    def __init__(self, root: str | os.PathLike[str], create: bool = False) -> None:
        text = os.fspath(root)
        if not isinstance(text, str) or not text.strip():
            raise DojoConfigError(f"store={root!r} must be a folder path or an fsspec URL.")
        try:
            fs, path = fsspec.core.url_to_fs(text)
        except (ValueError, ImportError) as e:
            raise DojoConfigError(f"store={text!r} is not a usable location ({e}).") from e
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = path.rstrip("/") or "/"
        self.url = text
        self._check(create)

    @property
    def local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _check(self, create: bool) -> None:
        fs, marker = self.fs, self.path("store.json")
        if fs.isfile(self.root):
            raise DojoConfigError(f"store={self.url!r} is a file, not a folder.")
        if fs.isfile(marker):
            try:
                with fs.open(marker, "rb") as f:
                    head = json.load(f)
            except (OSError, ValueError) as e:
                raise DojoConfigError(
                    f"store={self.url!r} has an unreadable store.json ({e})."
                ) from e
            if not isinstance(head, dict) or head.get("format") != FORMAT:
                raise DojoConfigError(
                    f"store={self.url!r} holds a store.json that is not a Dojo clip store's."
                )
            if head.get("version") != VERSION:
                raise DojoConfigError(
                    f"store={self.url!r} is clip-store version {head.get('version')!r}; "
                    f"this Dojo reads version {VERSION}."
                )
            return
        if not create:
            raise DojoConfigError(
                f"store={self.url!r} is not a Dojo clip store (no store.json); "
                "`dojo ingest` creates one."
            )
        if fs.isdir(self.root) and any(
            posixpath.basename(p.rstrip("/")) not in ("drives", "quarantine", "tmp", "datasets")
            for p in fs.ls(self.root, detail=False)
        ):
            raise DojoConfigError(
                f"store={self.url!r} is a folder with other files in it; give an empty or new folder."
            )
        for sub in ("drives", "quarantine", "tmp", "datasets"):
            fs.makedirs(self.path(sub), exist_ok=True)
        self.write_atomic("store.json", json.dumps({"format": FORMAT, "version": VERSION}).encode())

    def write_atomic(self, relative: str, data: bytes) -> None:
        """Write a small file whole: to a temporary name, then moved over the final one."""
        final = self.path(relative)
        tmp = self.path(
            "tmp", f"atomic-{os.getpid()}-{os.urandom(6).hex()}-{posixpath.basename(final)}"
        )
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, final)

    def drive_ids(self) -> list[str]:
        """Ids of the drives in the store (complete ones only: drive.parquet is written last)."""
        found = self.fs.glob(self.path("drives", "*", TABLE_FILES["drives"]))
        return sorted(posixpath.basename(posixpath.dirname(p)) for p in found)

    def has_drive(self, drive_id: str) -> bool:
        return bool(self.fs.exists(self.path("drives", drive_id, TABLE_FILES["drives"])))

    def quarantined(self) -> list[dict[str, Any]]:
        """Every quarantined file: ``{file, sha256, reason, quarantined_at}``."""
        out = []
        for p in sorted(self.fs.glob(self.path("quarantine", "*.json"))):
            with self.fs.open(p, "rb") as f:
                out.append(json.load(f))
        return out


class OpenFiles:
    """Files kept open for repeated reads: up to ``limit``, the least recently used closed first.

    Each entry is a file and what was built on it (the file itself, or a Parquet reader that
    keeps its parsed footer). Opening a file through fsspec costs about 0.1 ms; a clip's read
    of each camera's video and of its labels would pay that every time.
    """

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self.entries: dict[
            str, tuple[Any, Any]
        ] = {}  # key -> (file or None, what is built on it); LRU order

    def get(self, key: str, opener: Callable[[], tuple[Any, Any]]) -> Any:
        """What was built on ``key``'s file, opening it with ``opener`` (-> (file, built)) if need be."""
        if key in self.entries:
            self.entries[key] = self.entries.pop(key)  # most recently used last
        else:
            self.entries[key] = opener()
            while len(self.entries) > self.limit:
                self._close(next(iter(self.entries)))
        return self.entries[key][1]

    def read(self, fs: Any, path: str, start: int, end: int) -> bytes:
        """Bytes ``start:end`` of ``path`` on ``fs`` (fewer where the file ends sooner)."""

        def opener() -> tuple[Any, Any]:
            f = fs.open(path, "rb")
            return f, f

        f = self.get(path, opener)
        f.seek(start)
        return bytes(f.read(end - start))

    def _close(self, key: str) -> None:
        f, _ = self.entries.pop(key)
        if f is not None:
            f.close()

    def close(self) -> None:
        while self.entries:
            self._close(next(iter(self.entries)))


__all__ = [
    "ADDED_TABLES",
    "CLIPS",
    "OpenFiles",
    "ROW_GROUP_ROWS",
    "parquet_options",
    "CLIP_ID_CHARS",
    "DRIVES",
    "DRIVE_ID_CHARS",
    "EVENTS",
    "FRAMES",
    "LABELS",
    "MAX_CLIP_S",
    "POSES",
    "SCENE",
    "TABLES",
    "TABLE_FILES",
    "TELEMETRY",
    "Store",
]
