"""Ingest: MCAP drive logs in, clips in the clip store out (see :mod:`dojo.data.store`).

>>> summary = ingest(["drives/"], "store")
>>> summary.files_ingested, summary.clips, summary.frames

One pass over each log with the drive-log decoder (:mod:`dojo.drivelog.decode`; the tables are
built in :mod:`dojo.data.drive_tables`): the camera access units are remuxed (copied, never
re-encoded) into one Annex B file per camera, and telemetry, poses, events and occupancy labels
become Parquet tables. Every access unit is also decoded once with PyAV, so a
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

import pyarrow as pa
import pyarrow.parquet as pq

from dojo.data.drive_tables import build_tables, parse
from dojo.data.store import (
    DRIVE_ID_CHARS,
    ROW_GROUP_ROWS,
    TABLE_FILES,
    TABLES,
    Store,
    parquet_options,
)
from dojo.drivelog.format import PARTIAL_SUFFIX
from dojo.errors import CorruptLogError, DojoConfigError
from dojo.validate import whole

_HASH_BLOCK = 1 << 20
LABEL_ROW_GROUP_ROWS = 100  # one clip at 10 Hz (MAX_CLIP_S)


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
        parsed = parse(path)
        tables, video, clips = build_tables(parsed, drive_id, path, sha, size)
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
    ray: str | None = None,
) -> IngestSummary:
    """Ingest drive logs (files or folders of ``.mcap``) into the clip store at ``store``.

    ``workers``: processes (default: one per core, at most one per file). ``progress`` is
    called with each file's result as it finishes. ``ray``: a Ray cluster's address to ingest
    on instead, a task a file; every node must reach the store and the inputs (checked first).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise DojoConfigError("paths=[] names no drive logs or folders to ingest.")
    if workers is not None:
        workers = whole("workers", workers, 1)  # processes
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
    if ray is not None:  # every node must reach the store and the inputs; its CPUs are the workers
        from dojo.cluster import check_shared_path, cluster_cpus

        check_shared_path(ray, st.url, "store")
        check_shared_path(ray, list(paths), "input")
        summary.workers = cluster_cpus(ray)
    work = _run_dir(st)
    st.fs.makedirs(work, exist_ok=True)
    # pyarrow imports pandas (~0.5 s) the first time it builds a table; do it once here, before
    # the workers fork, rather than once in every worker
    pa.table({"warm_up": [0]})
    try:
        if ray is not None:
            from dojo.cluster import map_tasks

            map_tasks(
                _ingest_task,
                [str(f) for f in files],
                ray,
                shared=(st.url, work),
                finished=lambda _, r: _count(summary, r, progress),
            )
        elif n_workers == 1:
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


def _ingest_task(shared: tuple[str, str], file: str) -> FileResult:
    """One Ray task: one file."""
    return ingest_file(shared[0], file, shared[1])


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
