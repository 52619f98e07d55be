"""Ingest: MCAP drive logs in, clips in the clip store out (see :mod:`dojo.data.store`).

>>> summary = ingest(["drives/"], "store")
>>> summary.files_ingested, summary.clips, summary.frames

One pass over each log with the official ``mcap`` reader: the camera access units are remuxed
(copied, never re-encoded) into one Annex B file per camera, and telemetry, poses, events and
occupancy labels become Parquet tables. Every access unit is also decoded once with PyAV, so a
log whose video does not decode is quarantined here and not found out by the trainer later.

Guarantees, each tested:
- **Atomic:** a drive is built under ``tmp/`` and moved into ``drives/`` in one rename; no
  query ever sees part of one.
- **Idempotent:** a drive's id is its file's SHA-256, so the same file again changes nothing.
- **Resumable:** after ``kill -9``, running the same command again removes the dead run's
  leftovers and ingests what is missing.
- **Isolated failures:** a bad file is quarantined with its reason
  (``quarantine/<sha256>.json``) and the others go on; nothing already stored is touched.
- **Parallel:** files are spread over worker processes, one per core by default.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import posixpath
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dojo.data.store import (
    CLIP_ID_CHARS,
    DRIVE_ID_CHARS,
    MAX_CLIP_S,
    ROW_GROUP_ROWS,
    TABLE_FILES,
    TABLES,
    Store,
    parquet_options,
)
from dojo.drivelog import decode
from dojo.drivelog.decode import Grid, Pose, open_drive_log
from dojo.drivelog.format import (
    CAMERA_MOUNTS_TOPIC,
    CAMERA_TOPIC,
    OPTIONAL_TOPICS,
    PARTIAL_SUFFIX,
    SCHEMA_OF_TOPIC,
    TELEMETRY_TOPIC,
    VIDEO_SCHEMA,
)
from dojo.drivelog.telemetry import Telemetry, columns
from dojo.drivelog.video import is_keyframe
from dojo.errors import ConfigError, CorruptLogError, DojoConfigError

_HASH_BLOCK = 1 << 20
LABEL_ROW_GROUP_ROWS = 100  # one clip at 10 Hz (MAX_CLIP_S)


def _bad(why: str) -> CorruptLogError:
    """A drive log that cannot be ingested; ``why`` (one sentence) is its quarantine reason."""
    return CorruptLogError(f"The drive log cannot be ingested: {why}.", reason=why)


@dataclass
class FileResult:
    """What happened to one input file."""

    file: str
    status: str  # ingested | already | quarantined | skipped
    reason: str = ""
    drive_id: str = ""
    frames: int = 0  # camera images (frames x cameras)
    clips: int = 0
    video_bytes: int = 0


@dataclass
class IngestSummary:
    """The result of :func:`ingest`; ``as_dict`` is what ``dojo ingest --json`` prints."""

    store: str
    files_seen: int = 0
    files_ingested: int = 0
    files_already: int = 0  # already in the store: nothing done
    files_quarantined: int = 0
    files_skipped: int = 0  # not drive logs to ingest now (still being written, empty folder)
    quarantined: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    frames: int = 0  # camera images ingested (frames x cameras)
    clips: int = 0
    video_bytes: int = 0
    workers: int = 1
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["camera_frames_per_s"] = self.frames / self.wall_s if self.wall_s > 0 else 0.0
        return out


# --------------------------------------------------------------------------------- inputs
def find_logs(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[dict[str, str]]]:
    """The ``.mcap`` files named or inside the folders named, and what was skipped and why."""
    files: list[Path] = []
    skipped: list[dict[str, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file())
            logs = [q for q in found if q.suffix == ".mcap"]
            for q in found:
                if q.name.endswith(".mcap" + PARTIAL_SUFFIX):
                    skipped.append({"file": str(q), "reason": "still being written (.partial)"})
            if not logs and not any(q.name.endswith(PARTIAL_SUFFIX) for q in found):
                skipped.append({"file": str(p), "reason": "the folder holds no .mcap files"})
            files += logs
        elif p.is_file():
            if p.name.endswith(PARTIAL_SUFFIX):
                skipped.append({"file": str(p), "reason": "still being written (.partial)"})
            else:
                files.append(p)
        else:
            raise DojoConfigError(f"path={str(raw)!r} does not exist.")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, skipped


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


# -------------------------------------------------------------------------------- parsing
@dataclass
class _Camera:
    times_ns: list[int] = field(default_factory=list)
    units: list[bytes] = field(default_factory=list)


@dataclass
class _Parsed:
    config: dict[str, str]
    settings: dict[str, str]
    summary: dict[str, str]
    cameras: tuple[str, ...]
    video: dict[str, _Camera]
    telemetry: list[dict[str, Any]]
    poses: list[Pose]
    events: list[dict[str, Any]]
    labels: list[tuple[float, int, int, float, bytes]]  # t_s, rows, cols, cell_m, grid


def _parse(path: Path) -> _Parsed:
    """Read every message of a drive log once; a CorruptLogError says what is wrong with it."""
    try:
        with open_drive_log(path) as (_, reader, metadata):
            settings = metadata["drive_log"]
            try:
                cameras = tuple(json.loads(settings["cameras"]))
                start_ns = int(settings["start_time_ns"])
            except (KeyError, ValueError, TypeError) as e:
                raise _bad(f"its drive_log metadata is incomplete ({e})") from e
            summary = reader.get_summary()
            expected = {CAMERA_TOPIC.format(c): VIDEO_SCHEMA for c in cameras} | SCHEMA_OF_TOPIC
            present = {}
            for ch in summary.channels.values():
                schema = summary.schemas.get(ch.schema_id)
                name = schema.name if schema else ""
                want = expected.get(ch.topic)
                if want is None:
                    raise _bad(f"it has channel {ch.topic!r} with unknown schema {name!r}")
                if name != want or ch.message_encoding != "json":
                    raise _bad(
                        f"channel {ch.topic!r} has schema {name!r} ({ch.message_encoding}); "
                        f"expected {want!r} (json)"
                    )
                present[ch.topic] = ch.id
            missing = [t for t in expected if t not in present and t not in OPTIONAL_TOPICS]
            if missing:
                raise _bad(f"it has no {', '.join(missing)} channel")
            camera_of = {CAMERA_TOPIC.format(c): c for c in cameras}
            video = {c: _Camera() for c in cameras}
            telemetry: list[dict[str, Any]] = []
            poses: list[Pose] = []
            events: list[dict[str, Any]] = []
            labels = []
            # camera mounts: static rig geometry; the store keeps the rig in drive.parquet
            topics = [t for t in present if t != CAMERA_MOUNTS_TOPIC]
            for topic, ns, item in decode.messages(reader, start_ns, topics, log_time_order=False):
                cam = camera_of.get(topic)
                if cam is not None:
                    assert isinstance(item, bytes)
                    stream = video[cam]
                    stream.times_ns.append(ns)
                    stream.units.append(item)
                elif isinstance(item, Pose):
                    poses.append(item)
                elif isinstance(item, Grid):
                    cols = int(item.column_count)
                    if cols <= 0 or len(item.cells) % cols:
                        raise _bad(
                            f"an occupancy grid at {item.t_s:.1f} s has {len(item.cells)} bytes "
                            f"for {cols} columns"
                        )
                    labels.append(
                        (item.t_s, len(item.cells) // cols, cols, item.cell_m, item.cells)
                    )
                elif isinstance(item, dict):
                    (telemetry if topic == TELEMETRY_TOPIC else events).append(item)
            return _Parsed(
                config=metadata.get("drive", {}),
                settings=settings,
                summary=metadata.get("summary", {}),
                cameras=cameras,
                video=video,
                telemetry=telemetry,
                poses=poses,
                events=events,
                labels=labels,
            )
    except CorruptLogError:
        raise
    except ConfigError as e:  # the file went away after it was found: the sentence says so
        raise _bad(str(e).rstrip(".")) from e
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _bad(f"a message is malformed ({type(e).__name__}: {e})") from e


def _check_decodes(camera: str, units: list[bytes], width: int, height: int) -> None:
    """Decode every access unit once; a CorruptLogError names the camera and frame that fail."""
    ctx = av.CodecContext.create("h264", "r")
    decoded = 0
    for i, unit in enumerate(units):
        try:
            frames = ctx.decode(av.Packet(unit))
        except (av.FFmpegError, ValueError) as e:
            raise _bad(f"camera {camera!r} video fails to decode at frame {i} ({e})") from e
        for frame in frames:
            if (frame.width, frame.height) != (width, height):
                raise _bad(
                    f"camera {camera!r} video is {frame.width}x{frame.height}, "
                    f"the log says {width}x{height}"
                )
            decoded += 1
    try:
        decoded += len(ctx.decode(None))
    except (av.FFmpegError, ValueError) as e:
        raise _bad(f"camera {camera!r} video fails to decode at its end ({e})") from e
    if decoded != len(units):
        raise _bad(f"camera {camera!r} decodes to {decoded} frames from {len(units)} access units")


# ------------------------------------------------------------------------------- building
def _clip_starts(times_s: np.ndarray, all_key: np.ndarray, fps: float) -> list[int]:
    """Frame indices where clips begin: at gaps in the frames, and every MAX_CLIP_S at a keyframe."""
    starts = [0]
    for i in range(1, len(times_s)):
        if not all_key[i]:
            continue
        gap = times_s[i] - times_s[i - 1] > 1.5 / fps
        if gap or times_s[i] - times_s[starts[-1]] >= MAX_CLIP_S - 0.5 / fps:
            starts.append(i)
    return starts


def _nearest_frame(times_s: np.ndarray, t: float, fps: float) -> int:
    """The frame at drive time ``t`` (within half a frame), or -1."""
    i = int(np.searchsorted(times_s, t))
    best, best_d = -1, 0.5 / fps
    for j in (i - 1, i):
        if 0 <= j < len(times_s) and abs(times_s[j] - t) <= best_d:
            best, best_d = j, abs(times_s[j] - t)
    return best


def _time(record: dict[str, Any]) -> float:
    return float(record["t_s"])


def _extra(record: dict[str, Any], known: Sequence[str]) -> str | None:
    rest = {k: v for k, v in record.items() if k not in known and k != "t_s"}
    return json.dumps(rest, sort_keys=True) if rest else None


def _tables(
    parsed: _Parsed, drive_id: str, source: Path, sha: str, size: int
) -> tuple[dict[str, pa.Table], dict[str, bytes], int]:
    """The drive's tables, its per-camera video files, and its clip count."""
    settings, cameras = parsed.settings, parsed.cameras
    start_ns = int(settings["start_time_ns"])
    fps = float(settings["fps"])
    width, height = int(settings["width"]), int(settings["height"])
    first = parsed.video[cameras[0]]
    for cam in cameras[1:]:
        if parsed.video[cam].times_ns != first.times_ns:
            raise _bad(f"camera {cam!r} has other frame times than camera {cameras[0]!r}")
    n = len(first.times_ns)  # 0 for a trigger-only log without windows: telemetry alone
    times_s = np.array([decode.t_s(t, start_ns) for t in first.times_ns], dtype=np.float64)
    if np.any(np.diff(times_s) <= 0):
        raise _bad("its camera frames are not in time order")
    keys = np.array(
        [[is_keyframe(u) for u in parsed.video[c].units] for c in cameras], dtype=bool
    ).reshape(len(cameras), n)
    all_key: np.ndarray = np.asarray(keys.all(axis=0))  # (n,) a keyframe in every camera
    if n and not all_key[0]:
        raise _bad("its video does not start on a keyframe in every camera")
    for cam in cameras:
        _check_decodes(cam, parsed.video[cam].units, width, height)

    starts = _clip_starts(times_s, all_key, fps) if n else []
    ends = starts[1:] + [n] if n else []
    clip_of_frame = np.empty(n, dtype=np.int64)
    for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
        clip_of_frame[a:b] = k

    label_frame = [_nearest_frame(times_s, lab[0], fps) for lab in parsed.labels]
    labels_of_clip: dict[int, list[int]] = {}
    for li, f in enumerate(label_frame):
        if f >= 0:
            labels_of_clip.setdefault(int(clip_of_frame[f]), []).append(li)

    clip_ids, hashes = [], []
    for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
        h = hashlib.sha256()
        for cam in cameras:
            h.update(cam.encode() + b"\0")
            for unit in parsed.video[cam].units[a:b]:
                h.update(unit)
        for li in labels_of_clip.get(k, []):
            h.update(parsed.labels[li][4])
        hashes.append(h.hexdigest())
        clip_ids.append(hashes[-1][:CLIP_ID_CHARS])

    video: dict[str, bytes] = {}
    cam_col, frame_col, t_col, off_col, size_col, key_col, clip_col = [], [], [], [], [], [], []
    for ci, cam in enumerate(cameras):
        units = parsed.video[cam].units
        sizes = np.array([len(u) for u in units], dtype=np.int64)
        offsets = np.cumsum(sizes) - sizes  # (n,) start of each unit in the camera's file
        video[cam] = b"".join(units)
        cam_col += [cam] * n
        frame_col.append(np.arange(n, dtype=np.int32))
        t_col.append(times_s)
        off_col.append(offsets)
        size_col.append(sizes.astype(np.int32))
        key_col.append(keys[ci])
        clip_col += [clip_ids[k] for k in clip_of_frame]
    frames = pa.table(
        {
            "drive_id": [drive_id] * (n * len(cameras)),
            "clip_id": clip_col,
            "frame": np.concatenate(frame_col),
            "t_s": np.concatenate(t_col),
            "camera": cam_col,
            "byte_offset": np.concatenate(off_col),
            "byte_size": np.concatenate(size_col),
            "keyframe": np.concatenate(key_col),
        },
        schema=TABLES["frames"],
    )
    cfg = parsed.config
    family, car_id, mode = cfg.get("family", ""), cfg.get("car_id", ""), cfg.get("mode", "")
    clips = pa.table(
        {
            "clip_id": clip_ids,
            "drive_id": [drive_id] * len(starts),
            "start_frame": starts,
            "end_frame": ends,
            "t0_s": [float(times_s[a]) for a in starts],
            "t1_s": [float(times_s[b - 1]) for b in ends],
            "frames": [b - a for a, b in zip(starts, ends, strict=True)],
            "content_hash": hashes,
            "family": [family] * len(starts),
            "car_id": [car_id] * len(starts),
            "mode": [mode] * len(starts),
        },
        schema=TABLES["clips"],
    )
    tele = [Telemetry.from_message(r["t_s"], r) for r in sorted(parsed.telemetry, key=_time)]
    telemetry = pa.table(
        {"drive_id": [drive_id] * len(tele), **columns(tele)}, schema=TABLES["telemetry"]
    )
    poses_sorted = sorted(parsed.poses)
    poses = pa.table(
        {
            "drive_id": [drive_id] * len(poses_sorted),
            **{
                name: [p[i] for p in poses_sorted]
                for i, name in enumerate(("t_s", "x_m", "y_m", "z_m", "yaw_rad"))
            },
        },
        schema=TABLES["poses"],
    )
    evs = sorted(parsed.events, key=_time)
    events = pa.table(
        {
            "drive_id": [drive_id] * len(evs),
            "t_s": [r["t_s"] for r in evs],
            "kind": [str(r["kind"]) for r in evs],
            "critical": [bool(r.get("critical", False)) for r in evs],
            "reason": [str(r.get("reason", "")) for r in evs],
            "extra": [_extra(r, ("kind", "critical", "reason", "timestamp")) for r in evs],
        },
        schema=TABLES["events"],
    )
    order = sorted(range(len(parsed.labels)), key=lambda i: parsed.labels[i][0])
    labels = pa.table(
        {
            "drive_id": [drive_id] * len(order),
            "clip_id": [
                clip_ids[clip_of_frame[label_frame[i]]] if label_frame[i] >= 0 else None
                for i in order
            ],
            "frame": [label_frame[i] for i in order],
            "t_s": [parsed.labels[i][0] for i in order],
            "rows": [parsed.labels[i][1] for i in order],
            "cols": [parsed.labels[i][2] for i in order],
            "cell_m": [parsed.labels[i][3] for i in order],
            "grid": [parsed.labels[i][4] for i in order],
        },
        schema=TABLES["labels"],
    )

    def whole(key: str, default: int = -1) -> int:
        try:
            return int(cfg.get(key, default))
        except (TypeError, ValueError):
            return default

    duration = tele[-1].t_s - tele[0].t_s if tele else 0.0  # tele is in time order
    drives = pa.table(
        {
            "drive_id": [drive_id],
            "source": [source.name],
            "source_sha256": [sha],
            "source_bytes": [size],
            "status": [parsed.summary.get("status", "unknown")],
            "car_id": [car_id],
            "drive": [whole("drive")],
            "family": [family],
            "seed": [whole("seed")],
            "mode": [mode],
            "policy": [cfg.get("policy", "")],
            "logging": [cfg.get("logging", "")],
            "cameras": [list(cameras)],
            "width_px": [width],
            "height_px": [height],
            "rgb": [bool(json.loads(settings.get("rgb", "false")))],
            "fps": [fps],
            "keyframe_interval": [int(settings.get("keyframe_interval_frames", 0))],
            "frames": [n],
            "duration_s": [duration],
            "config": [json.dumps(cfg, sort_keys=True)],
            "ingested_at": [datetime.now(timezone.utc)],
        },
        schema=TABLES["drives"],
    )
    tables = {
        "drives": drives,
        "clips": clips,
        "frames": frames,
        "telemetry": telemetry,
        "poses": poses,
        "events": events,
        "labels": labels,
    }
    return tables, video, len(starts)


# ----------------------------------------------------------------------------- one file
def _run_dir(store: Store) -> str:
    return store.path("tmp", f"ingest-{os.getpid()}-{os.urandom(4).hex()}")


def _write_drive(
    store: Store, work: str, drive_id: str, tables: dict[str, pa.Table], video: dict[str, bytes]
) -> bool:
    """Write the drive under ``work`` and move it into ``drives/``; False if it was already there."""
    fs = store.fs
    folder = posixpath.join(
        work, f"{drive_id}.{os.urandom(4).hex()}"
    )  # two copies of a file may race
    fs.makedirs(posixpath.join(folder, "video"), exist_ok=True)
    for cam, data in video.items():
        with fs.open(posixpath.join(folder, "video", f"{cam}.h264"), "wb") as f:
            f.write(data)
    for name in [n for n in TABLES if n != "drives"] + ["drives"]:  # drive.parquet last
        with fs.open(posixpath.join(folder, TABLE_FILES[name]), "wb") as f:
            # labels are ~10 KB a row: row groups of about one clip let the loader read just its clip
            rows = LABEL_ROW_GROUP_ROWS if name == "labels" else ROW_GROUP_ROWS
            pq.write_table(tables[name], f, **parquet_options(TABLES[name], rows))
    final = store.path("drives", drive_id)
    if store.has_drive(drive_id):
        fs.rm(folder, recursive=True)
        return False
    if store.local:
        try:
            os.rename(folder, final)  # atomic: the whole drive appears at once
        except OSError:
            if store.has_drive(drive_id):  # another ingest won the race
                shutil.rmtree(folder, ignore_errors=True)
                return False
            raise
    else:
        fs.mv(folder, final, recursive=True)
    return True


def _quarantine(store: Store, file: Path, sha: str, reason: str) -> None:
    record = {
        "file": str(file),
        "sha256": sha,
        "reason": reason,
        "quarantined_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    store.write_atomic(
        posixpath.join("quarantine", f"{sha}.json"), json.dumps(record, indent=1).encode()
    )


def ingest_file(store_url: str, file: str, work: str) -> FileResult:
    """Ingest one drive log (runs in a worker process); never raises for a bad log."""
    store = Store(store_url)
    path = Path(file)
    try:
        size = path.stat().st_size
        sha = sha256_file(path)
    except OSError as e:
        return FileResult(file, "skipped", f"it cannot be read ({e.strerror})")
    drive_id = sha[:DRIVE_ID_CHARS]
    if store.has_drive(drive_id):
        return FileResult(file, "already", drive_id=drive_id)
    q = store.path("quarantine", f"{sha}.json")
    if store.fs.exists(q):
        with store.fs.open(q, "rb") as f:
            reason = json.load(f).get("reason", "quarantined before")
        return FileResult(file, "quarantined", reason, drive_id)
    try:
        parsed = _parse(path)
        tables, video, clips = _tables(parsed, drive_id, path, sha, size)
    except CorruptLogError as e:
        reason = e.reason
        _quarantine(store, path, sha, reason)
        return FileResult(file, "quarantined", reason, drive_id)
    except Exception as e:  # a log odd in a way not foreseen: keep it out, keep the others going
        reason = f"reading it failed unexpectedly ({type(e).__name__}: {e}); please report this"
        _quarantine(store, path, sha, reason)
        return FileResult(file, "quarantined", reason, drive_id)
    if not _write_drive(store, work, drive_id, tables, video):
        return FileResult(file, "already", drive_id=drive_id)
    frames = tables["frames"].num_rows
    return FileResult(
        file, "ingested", "", drive_id, frames, clips, sum(len(v) for v in video.values())
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_work(store: Store) -> int:
    """Remove what ingest runs that died (``kill -9``) left under ``tmp/``; how many entries.

    Only on a local store, where a process id says whether its run is alive. On a shared
    object store another host's live run looks the same as a dead one, so nothing is removed
    there; what is left under ``tmp/`` is never read, only stored.
    """
    if not store.local:
        return 0
    removed = 0
    for entry in store.fs.ls(store.path("tmp"), detail=False):
        name = posixpath.basename(entry.rstrip("/"))
        pid_text = name.split("-")[1] if name.count("-") >= 2 else ""
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        store.fs.rm(entry, recursive=True)
        removed += 1
    return removed


# ------------------------------------------------------------------------------ the job
def ingest(
    paths: Sequence[str | os.PathLike[str]],
    store: str | os.PathLike[str],
    workers: int | None = None,
    progress: Callable[[FileResult], None] | None = None,
) -> IngestSummary:
    """Ingest drive logs (files or folders of ``.mcap``) into the clip store at ``store``.

    ``workers``: processes (default: one per core, at most one per file). ``progress`` is
    called with each file's result as it finishes.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise DojoConfigError("paths=[] names no drive logs or folders to ingest.")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise DojoConfigError(
            f"workers={workers!r} must be a whole number of processes, at least 1."
        )
    start = time.perf_counter()
    files, skipped = find_logs(paths)
    st = Store(store, create=True)
    clean_stale_work(st)
    summary = IngestSummary(
        store=st.url, files_seen=len(files) + len(skipped), skipped=list(skipped)
    )
    summary.files_skipped = len(skipped)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(files)))
    if "memory" in (st.fs.protocol if isinstance(st.fs.protocol, tuple) else (st.fs.protocol,)):
        n_workers = (
            1  # an in-memory filesystem lives in this process: workers could not write to it
        )
    summary.workers = n_workers
    work = _run_dir(st)
    st.fs.makedirs(work, exist_ok=True)
    # pyarrow imports pandas (~0.5 s) the first time it builds a table; do it once here, before
    # the workers fork, rather than once in every worker
    pa.table({"warm_up": [0]})
    try:
        if n_workers == 1:
            results: Iterable[FileResult] = (ingest_file(st.url, str(f), work) for f in files)
            for r in results:
                _count(summary, r, progress)
        else:
            # fork: a caller's script needs no __main__ guard; the workers use only PyAV,
            # pyarrow and fsspec, none of which a parent's threads hold locks in
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with cf.ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
                futures = [pool.submit(ingest_file, st.url, str(f), work) for f in files]
                for fut in cf.as_completed(futures):
                    _count(summary, fut.result(), progress)
    finally:
        if st.fs.exists(work):
            st.fs.rm(work, recursive=True)
    summary.wall_s = time.perf_counter() - start
    return summary


def _count(
    summary: IngestSummary, r: FileResult, progress: Callable[[FileResult], None] | None
) -> None:
    if r.status == "ingested":
        summary.files_ingested += 1
        summary.frames += r.frames
        summary.clips += r.clips
        summary.video_bytes += r.video_bytes
    elif r.status == "already":
        summary.files_already += 1
    elif r.status == "quarantined":
        summary.files_quarantined += 1
        summary.quarantined.append({"file": r.file, "reason": r.reason})
    else:
        summary.files_skipped += 1
        summary.skipped.append({"file": r.file, "reason": r.reason})
    if progress is not None:
        progress(r)


__all__ = ["FileResult", "IngestSummary", "clean_stale_work", "find_logs", "ingest", "ingest_file"]
