"""``dojo autolabel``: the data engine's offline labeling stage over a clip store.

For every ingested drive it writes ``drives/<id>/autolabels.parquet`` (schema
:data:`AUTOLABELS`): one row per logged frame, every frame whoever drove it, with the careful
driver's action and what it sees (:mod:`dojo.data.autolabel.teacher`) and, every
``grid_every``-th frame, the occupancy grid with per-cell velocity. Labels are deterministic
and versioned (:data:`VERSION`); a drive already labelled at this version is left as it is, so
re-running changes nothing. Each drive's file is written whole to ``tmp/`` and moved into
place, so a run killed half-way leaves every drive either labelled or untouched.

A drive that cannot be fully labelled says why (``partial``): without a scene (a log written
before the scene channel) or without a known road (no scenario in its metadata), the stage
keeps what the telemetry measured (gap, TTC) and leaves the action empty - it never guesses
one. A scene that contradicts itself refuses the drive, naming the frame.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import json
import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dojo.data.autolabel.scene import (
    COLUMNS,
    SceneFrames,
    scene_frames,
    stack_frames,
    take_frames,
)
from dojo.data.autolabel.teacher import LABEL_FIELDS, future_lanes, labels_on
from dojo.data.store import AUTOLABELS, FLOW_STEP_MPS, TABLE_FILES, Store
from dojo.errors import CorruptLogError
from dojo.proc import die_with_parent
from dojo.settings import setting
from dojo.validate import positive, whole
from dojo.world.occupancy import OccupancySpec, occupancy_flow
from dojo.world.road import RoadConfig, Roads
from dojo.world.scenarios import check_family, road_and_ego_v0

VERSION = 1  # of the labels: a new version relabels every drive
BATCH_FRAMES = 20_000  # frames of several drives labelled in one call (numpy's arrays long)
LABEL_SOURCE = "autolabel"
FILE = TABLE_FILES["autolabels"]


@dataclass(frozen=True)
class AutolabelConfig:
    """``grid_every``: frames between occupancy grids (1: every frame); ``grid_forward_m``: how
    far ahead the grid reaches (the logged ground truth reaches 40 m; perception is scored to
    80 m)."""

    grid_every: int = setting(5, help="frames between occupancy grids (default %(default)s)")
    grid_forward_m: float = setting(
        80.0, help="how far ahead the grid reaches [m] (default %(default)s)"
    )
    grid_backward_m: float = setting(20.0, help="grid reach behind [m] (default %(default)s)")
    grid_side_m: float = setting(20.0, help="grid reach to each side [m] (default %(default)s)")
    cell_m: float = setting(0.5, help="grid cell size [m] (default %(default)s)")

    def __post_init__(self) -> None:
        whole("grid_every", self.grid_every, 1)
        for name in ("grid_forward_m", "grid_backward_m", "grid_side_m", "cell_m"):
            positive(name, getattr(self, name))
        self.spec()  # its own checks

    def spec(self) -> OccupancySpec:
        return OccupancySpec(
            self.cell_m, self.grid_forward_m, self.grid_backward_m, self.grid_side_m
        )


@dataclass
class AutolabelSummary:
    """What a run did; ``as_dict`` is the ``--json`` output."""

    store: str
    version: int = VERSION
    drives: int = 0
    drives_labelled: int = 0
    drives_already: int = 0
    drives_partial: list[dict[str, str]] = field(default_factory=list)
    drives_refused: list[dict[str, str]] = field(default_factory=list)
    frames: int = 0
    frames_labelled: int = 0
    frames_network_driven: int = 0
    frames_network_driven_labelled: int = 0
    grids: int = 0
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["frames_per_s"] = self.frames / self.wall_s if self.wall_s > 0 else 0.0
        return out


Visibility = Callable[[SceneFrames, dict[str, Any]], np.ndarray]


def _read(
    st: Store, drive_id: str, table: str, columns: list[str] | None = None
) -> pa.Table | None:
    path = st.path("drives", drive_id, TABLE_FILES.get(table, f"{table}.parquet"))
    if not st.fs.exists(path):
        return None
    with st.fs.open(path, "rb") as f:  # ParquetFile: a third less than read_table's dataset
        return pq.ParquetFile(f).read(columns=columns)


def _drive_config(st: Store, drive_id: str) -> dict[str, Any]:
    drives = _read(st, drive_id, "drives")
    if drives is None or drives.num_rows != 1:
        raise CorruptLogError(f"Drive {drive_id} has no drive record.", reason="no drive record")
    row = drives.to_pylist()[0]
    try:
        config = json.loads(row.get("config") or "{}")
    except ValueError:
        config = {}
    return row | {"config": config if isinstance(config, dict) else {}}


def _labelled(st: Store, drive_id: str) -> pa.Table | None:
    """The columns a summary counts of the drive's labels at this VERSION (None: to label)."""
    path = st.path("drives", drive_id, FILE)
    if not st.fs.exists(path):
        return None
    with st.fs.open(path, "rb") as f:
        table = pq.read_table(f, columns=["complete", "driver", "grid"])
    version = (table.schema.metadata or {}).get(b"dojo_autolabel_version")
    return table if version == str(VERSION).encode() else None


@dataclass
class _Drive:
    """One drive read and checked, ready for the batched labeler (``scene`` None: partial)."""

    drive_id: str
    telemetry: pa.Table
    why: str  # why it is only partly labelled ('' when it is labelled whole)
    scene: SceneFrames | None = None  # the scene at each telemetry step
    road: RoadConfig | None = None
    ego_v0_mps: float = 0.0
    visible: np.ndarray | None = None  # (F, K)
    future_lane: np.ndarray | None = None  # (F, K)


def _prepare(st: Store, drive_id: str, visibility: Visibility) -> _Drive:
    """Read a drive's tables and check its scene; CorruptLogError names what is wrong."""
    row = _drive_config(st, drive_id)
    telemetry = _read(st, drive_id, "telemetry", ["t_s", "command", "driver", "gap_m", "ttc_s"])
    if telemetry is None:
        raise CorruptLogError(f"Drive {drive_id} has no telemetry table.", reason="no telemetry")
    family, seed = row.get("family"), row.get("seed")
    if telemetry.num_rows == 0:  # a drive that ended before its first step: nothing to label
        return _Drive(drive_id, telemetry, "")
    scene_table = _read(st, drive_id, "scene", list(COLUMNS))
    if scene_table is None or scene_table.num_rows == 0:
        return _Drive(
            drive_id, telemetry, "its log has no scene channel (written before it existed)"
        )
    if not family or seed is None:
        return _Drive(drive_id, telemetry, "its log names no scenario, so the road is unknown")
    scene = scene_frames(scene_table, drive_id)
    tel_t = telemetry.column("t_s").to_numpy()
    at = np.searchsorted(scene.t_s, tel_t)
    ok = (at < scene.frames) & np.isclose(scene.t_s[np.minimum(at, scene.frames - 1)], tel_t)
    if not ok.all():
        t_bad = float(tel_t[np.flatnonzero(~ok)[0]])
        raise CorruptLogError(
            f"Drive {drive_id}: the scene has no frame at telemetry time {t_bad:.3f} s.",
            reason=f"the scene has no frame at t={t_bad:.3f} s",
        )
    road, ego_v0_mps = road_and_ego_v0(check_family(str(family)), int(str(seed)))
    framed = take_frames(scene, at)
    fps = 1.0 / float(np.median(np.diff(tel_t))) if len(tel_t) > 1 else 10.0
    return _Drive(
        drive_id,
        telemetry,
        "",
        framed,
        road,
        ego_v0_mps,
        visibility(framed, row),
        future_lanes(framed, fps),
    )


def _label_batch(drives: list[_Drive]) -> list[dict[str, np.ndarray]]:
    """The labels of every drive with a scene, computed in one call; per drive, in order."""
    full = [d for d in drives if d.scene is not None]
    if not full:
        return []
    scenes = [d.scene for d in full if d.scene is not None]
    sizes = [s.frames for s in scenes]
    frames = stack_frames(scenes)
    k = frames.present.shape[1]
    own = np.repeat(np.arange(len(full)), sizes)  # (F,) which drive each frame is of
    roads = Roads.stack([d.road for d in full if d.road is not None]).take(own)

    def stacked(name: str) -> np.ndarray:
        parts = [getattr(d, name) for d in full]
        return np.concatenate([np.pad(p, ((0, 0), (0, k - p.shape[1]))) for p in parts])

    command = np.concatenate(
        [d.telemetry.column("command").to_numpy(zero_copy_only=False) for d in full]
    ).astype(np.int64)
    v0 = np.repeat([d.ego_v0_mps for d in full], sizes)
    labels = labels_on(frames, roads, command, v0, stacked("visible"), stacked("future_lane"))
    cuts = np.cumsum(sizes)[:-1]
    return [
        dict(zip(labels.values, parts, strict=True))
        for parts in zip(*(np.split(v, cuts) for v in labels.values.values()), strict=True)
    ]


def _table(d: _Drive, cols: dict[str, np.ndarray] | None, cfg: AutolabelConfig) -> pa.Table:
    """The drive's label table; ``cols`` its labels (None: partial, from the telemetry)."""
    telemetry, n, spec = d.telemetry, d.telemetry.num_rows, cfg.spec()
    grids: list[bytes | None] = [None] * n
    flows: list[bytes | None] = [None] * n
    if cols is not None and d.scene is not None and d.road is not None:
        every = np.arange(0, n, cfg.grid_every)
        sub = take_frames(d.scene, every)
        roads = Roads.stack([d.road]).take(np.zeros(len(every), dtype=np.int64))
        grid, flow = occupancy_flow(roads, sub.vehicles(roads), spec)
        assert flow is not None
        q = np.clip(np.rint(flow / FLOW_STEP_MPS), -127, 127).astype(np.int8)
        for i, f in enumerate(every):
            grids[f], flows[f] = grid[i].tobytes(), q[i].tobytes()
    else:
        cols = {name: np.full(n, np.nan) for name in LABEL_FIELDS}
        for name in ("gap_m", "ttc_s"):  # what the telemetry measured
            value = telemetry.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            cols["lead_gap_m" if name == "gap_m" else name] = value
    complete = not d.why
    has_grid = np.array([g is not None for g in grids], dtype=bool)
    table = pa.table(
        {
            "drive_id": [d.drive_id] * n,
            "frame": np.arange(n, dtype=np.int32),
            "t_s": telemetry.column("t_s").to_numpy(),
            "version": np.full(n, VERSION, dtype=np.int16),
            "label_source": [LABEL_SOURCE] * n,
            "driver": telemetry.column("driver"),
            "complete": np.full(n, complete),
            "accel_mps2": _nullable(cols["accel_mps2"]),
            "lane_shift": cols["lane_shift"].astype(np.int8)
            if complete
            else pa.nulls(n, pa.int8()),
            "lead_id": np.nan_to_num(cols["lead_id"], nan=-1).astype(np.int32),
            "lead_gap_m": _nullable(cols["lead_gap_m"]),
            "closing_mps": _nullable(cols["closing_mps"]),
            "ttc_s": _nullable(cols["ttc_s"]),
            **{
                k: _nullable(cols[k])
                for k in LABEL_FIELDS
                if k.endswith("_gap_m") and k != "lead_gap_m"
            },
            "visible_objects": np.nan_to_num(cols["visible_objects"], nan=0).astype(np.int16),
            "grid_rows": np.where(has_grid, spec.rows, 0).astype(np.int16),
            "grid_cols": np.where(has_grid, spec.cols, 0).astype(np.int16),
            "cell_m": np.full(n, spec.cell_m),
            "grid_forward_m": np.full(n, spec.forward_m),
            "grid": pa.array(grids, type=pa.binary()),
            "flow": pa.array(flows, type=pa.binary()),
        },
        schema=AUTOLABELS,
    )
    return table.replace_schema_metadata({"dojo_autolabel_version": str(VERSION)})


def _nullable(a: np.ndarray) -> pa.Array:
    """Floats with NaN (not labelled, or a lane that does not exist) as nulls."""
    a = np.asarray(a, dtype=np.float64)
    return pa.array(a, mask=np.isnan(a))


ROW_GROUP_ROWS = 100  # a clip's decision steps at 10 Hz: the loader reads a clip's grids alone


def _write(st: Store, drive_id: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    # a dictionary only for the repeated strings: on the grids it costs a third of the write
    # and saves nothing (each grid is its own)
    pq.write_table(
        table,
        buf,
        compression="zstd",
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=["drive_id", "label_source", "driver"],
    )
    st.write_atomic(f"drives/{drive_id}/{FILE}", buf.getvalue())


@dataclass
class _Done:
    """What labelling one drive did, as a worker reports it back."""

    drive_id: str
    status: str  # 'labelled', 'already' or 'refused'
    why: str = ""  # partial: why; refused: the reason
    counts: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)


def _counts(table: pa.Table) -> tuple[int, int, int, int, int]:
    """(frames, labelled, network-driven, network-driven labelled, grids) of a label table."""
    complete = table.column("complete").to_numpy(zero_copy_only=False)
    network = pc.equal(table.column("driver"), "network").to_numpy(zero_copy_only=False)
    grids = int(table.column("grid").is_valid().to_numpy(zero_copy_only=False).sum())
    both = int((network & complete).sum())
    return table.num_rows, int(complete.sum()), int(network.sum()), both, grids


def _label_chunk(
    url: str, drive_ids: list[str], cfg: AutolabelConfig, visibility: Visibility
) -> list[_Done]:
    """Label ``drive_ids`` of the store at ``url`` (one process's share), in batches."""
    st = Store(url)
    done: list[_Done] = []
    batch: list[_Drive] = []

    def flush() -> None:
        labels = iter(_label_batch(batch))
        for d in batch:
            table = _table(d, next(labels) if d.scene is not None else None, cfg)
            _write(st, d.drive_id, table)
            done.append(_Done(d.drive_id, "labelled", d.why, _counts(table)))
        batch.clear()

    for drive_id in drive_ids:
        table = _labelled(st, drive_id)
        if table is not None:
            done.append(_Done(drive_id, "already", "", _counts(table)))
            continue
        try:
            batch.append(_prepare(st, drive_id, visibility))
        except CorruptLogError as e:
            done.append(_Done(drive_id, "refused", e.reason or str(e)))
            continue
        if sum(d.telemetry.num_rows for d in batch) >= BATCH_FRAMES:
            flush()
    flush()
    return done


def _chunk_task(shared: tuple[str, AutolabelConfig, Visibility], chunk: list[str]) -> list[_Done]:
    """One Ray task: one chunk of drives."""
    return _label_chunk(shared[0], chunk, *shared[1:])


def _travels(fn: object) -> bool:
    """Whether ``fn`` can be sent to a worker process (pickled by its module and name)."""
    try:
        pickle.dumps(fn)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def _chunks(st: Store, drive_ids: list[str], workers: int) -> list[list[str]]:
    """Drives split into consecutive shares of about equal frames, at least one per worker."""
    rows = []
    for d in drive_ids:
        path = st.path("drives", d, TABLE_FILES["telemetry"])
        with st.fs.open(path, "rb") as f:
            rows.append(pq.read_metadata(f).num_rows)
    total = sum(rows)
    shares = max(workers, -(-total // BATCH_FRAMES))
    out: list[list[str]] = [[] for _ in range(shares)]
    seen = 0
    for d, n in zip(drive_ids, rows, strict=True):
        out[min(shares - 1, seen * shares // max(total, 1))].append(d)
        seen += n
    return [c for c in out if c]


def autolabel(
    store: str | os.PathLike[str] | Store,
    visibility: Visibility,
    dataset: str | None = None,
    config: AutolabelConfig | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
    ray: str | None = None,
) -> AutolabelSummary:
    """Label every drive of ``store`` (or of ``dataset``'s windows) not yet labelled at VERSION.

    ``workers``: processes (default one per core); each labels its share of the drives and
    writes each drive's file whole, so the result does not depend on how many there are.
    ``visibility`` travels to them by name; one that cannot (a lambda, a closure) makes the run
    label in this process. ``ray``: a Ray cluster's address to label on instead, a task a
    chunk of drives (one a CPU of the cluster at least); every node must reach the store.
    """
    from dojo.data.datasets import load_dataset

    cfg = config or AutolabelConfig()
    st = store if isinstance(store, Store) else Store(store)
    if workers is not None:
        workers = whole("workers", workers, 1)
    drive_ids = st.drive_ids()
    if dataset is not None:
        wanted = {e["drive_id"] for e in load_dataset(st, dataset).entries}
        drive_ids = [d for d in drive_ids if d in wanted]
    out = AutolabelSummary(store=st.url, drives=len(drive_ids))
    tick = time.perf_counter()
    if ray is not None:
        from dojo.cluster import check_shared_path, cluster_cpus

        check_shared_path(ray, st.url, "store")
        workers = cluster_cpus(ray)
    n = max(1, min(workers or os.cpu_count() or 1, len(drive_ids)))
    if "memory" in (st.fs.protocol if isinstance(st.fs.protocol, tuple) else (st.fs.protocol,)):
        n = 1  # an in-memory filesystem lives in this process: workers could not write to it
    if n > 1 and not _travels(visibility):
        n = 1  # a lambda or a closure cannot reach a worker: label in this process instead
    chunks = _chunks(st, drive_ids, n) if drive_ids else []
    results: dict[str, _Done] = {}

    def take(done: list[_Done]) -> None:
        for d in done:
            results[d.drive_id] = d
            if progress is not None:
                progress(d.drive_id)

    if ray is not None:
        from dojo.cluster import map_tasks

        map_tasks(_chunk_task, chunks, ray, (st.url, cfg, visibility), lambda _, d: take(d))
    elif n == 1:
        for chunk in chunks:
            take(_label_chunk(st.url, chunk, cfg, visibility))
    else:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        arm = die_with_parent(signal.SIGKILL)  # a killed run leaves no worker writing on
        # n - 1 workers and this process, which takes every n-th chunk: a fork costs as much
        # as labelling a few drives
        mine, theirs = chunks[::n], [c for i, c in enumerate(chunks) if i % n]
        with cf.ProcessPoolExecutor(n - 1, mp_context=ctx, initializer=arm) as pool:
            futures = [pool.submit(_label_chunk, st.url, c, cfg, visibility) for c in theirs]
            for chunk in mine:
                take(_label_chunk(st.url, chunk, cfg, visibility))
            for fut in cf.as_completed(futures):
                take(fut.result())
    for drive_id in drive_ids:  # in the store's order, whatever order the workers finished in
        d = results[drive_id]
        if d.status == "refused":
            out.drives_refused.append({"drive_id": drive_id, "reason": d.why})
            continue
        out.drives_labelled += int(d.status == "labelled")
        out.drives_already += int(d.status == "already")
        if d.why:
            out.drives_partial.append({"drive_id": drive_id, "reason": d.why})
        frames, labelled, network, both, grids = d.counts
        out.frames += frames
        out.frames_labelled += labelled
        out.frames_network_driven += network
        out.frames_network_driven_labelled += both
        out.grids += grids
    out.wall_s = time.perf_counter() - tick
    return out


__all__ = [
    "AUTOLABELS",
    "FILE",
    "LABEL_SOURCE",
    "VERSION",
    "AutolabelConfig",
    "AutolabelSummary",
    "autolabel",
]
