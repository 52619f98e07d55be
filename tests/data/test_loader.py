"""The streaming loader on a real store: real fleet logs, ingested, decoded back window by window.

Every expected value comes from the drive logs themselves (the MCAP files, read with the fleet's
own reader and decoder), never from the store the loader reads, so a mistake in either the
loader's bookkeeping or its decoding shows up as a mismatch.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dojo.bench.loader import decode_rate_raw, loader_rate
from dojo.data.catalog import query
from dojo.data.ingest import ingest
from dojo.data.loader import (
    LANE_LOOKAHEAD_S,
    WindowDataset,
    WindowSpec,
    collate_windows,
    make_loader,
    merge_states,
)
from dojo.drivelog import decode_video, read_drive_log, read_occupancy
from dojo.errors import DojoConfigError
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import Fleet
from dojo.nets.policy import DrivingPolicy, PolicyConfig
from dojo.world.camera import CameraRig

STEP_S = 0.1  # the fleet's decision step and frame interval [s]
Key = tuple[str, int]  # (clip_id, target drive frame): one window

CAMS = len(CameraRig.default().cameras)  # the drives below carry the default rig


class Logged:
    """What the drive logs say, by drive: decoded video, telemetry rows and labels by time."""

    def __init__(self, logs: Path, store: Path) -> None:
        self.video: dict[str, dict[str, np.ndarray]] = {}
        self.telemetry: dict[str, dict[int, dict[str, Any]]] = {}
        self.labels: dict[str, dict[int, np.ndarray]] = {}
        _, rows = query(store, "SELECT drive_id, source FROM drives")
        for drive_id, source in rows:
            path = logs / source
            log = read_drive_log(path)
            self.video[drive_id] = {cam: decode_video(path, cam) for cam in log.cameras}
            self.telemetry[drive_id] = {round(r["t_s"] / STEP_S): r for r in log.telemetry}
            times, grids = read_occupancy(path)
            self.labels[drive_id] = {
                round(t / STEP_S): g for t, g in zip(times, grids, strict=True)
            }
        _, clips = query(store, "SELECT clip_id, drive_id FROM clips")
        self.drive_of = dict(clips)
        _, counts = query(
            store, "SELECT clip_id, count(DISTINCT frame) FROM frames GROUP BY clip_id"
        )
        self.clip_frames = dict(counts)


def _drive(out: Path, **kw: Any) -> Path:
    logs = out / "logs"
    Fleet(DriveConfig(out=str(logs), mode="manual", **kw)).run()
    return logs


@pytest.fixture(scope="module")
def grey(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Logged]:
    """2 cars x 24 s of grey 4-camera video: 2 drives of 240 frames, 3 clips each (10, 10, 4 s)."""
    root = tmp_path_factory.mktemp("loader")
    logs = _drive(root, cars=2, minutes=0.4, drive_s=24.0, families=("dense", "cut_in"))
    store = root / "store"
    summary = ingest([logs], store, workers=2)
    assert summary.files_ingested >= 2 and summary.clips == 6
    return logs, store, Logged(logs, store)


@pytest.fixture(scope="module")
def colour(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Logged]:
    """1 car x 3 s of rgb video: one short clip."""
    root = tmp_path_factory.mktemp("loader_rgb")
    logs = _drive(root, cars=1, minutes=0.05, drive_s=3.0, rgb=True, families=("dense",))
    store = root / "store"
    ingest([logs], store, workers=1)
    return logs, store, Logged(logs, store)


def keys(samples: Iterable[dict[str, Any]]) -> list[Key]:
    return [(s["clip_id"], int(s["frame"])) for s in samples]


def batch_keys(batches: Iterable[dict[str, Any]]) -> list[Key]:
    return [
        (c, int(f)) for b in batches for c, f in zip(b["clip_id"], b["frame"].tolist(), strict=True)
    ]


def check_against_logs(samples: Iterable[dict[str, Any]], logged: Logged, k: int) -> int:
    """Assert every window equals what its drive log holds; how many were checked."""
    n = 0
    for s in samples:
        drive = logged.drive_of[s["clip_id"]]
        f = int(s["frame"])
        step = round(float(s["t_s"]) / STEP_S)
        expected = np.stack(
            [v[f - k + 1 : f + 1] for v in logged.video[drive].values()]
        )  # (cams, k, H, W)
        assert torch.equal(s["images"], torch.from_numpy(expected)), (s["clip_id"], f)
        now, after = logged.telemetry[drive][step], logged.telemetry[drive][step + 1]
        assert s["speed_mps"].dtype == torch.float32 and s["speed_mps"].item() == pytest.approx(
            now["speed_mps"], abs=1e-5
        )
        assert s["action"].tolist() == pytest.approx(
            [after["accel_mps2"], after["steer_rad"]], abs=1e-5
        )
        assert s["command"].dtype == torch.int64 and s["command"].item() == int(after["command"])
        rows = logged.telemetry[drive]
        ahead = rows[
            min(step + 1 + round(LANE_LOOKAHEAD_S / STEP_S), len(rows) - 1)
        ]  # where it was 1.5 s on
        assert s["lane_shift"].item() == np.sign(int(ahead["lane"]) - int(after["lane"]))
        # the label is the action taken on seeing the frame: it carries the speed at t to t + dt
        assert after["speed_mps"] == pytest.approx(
            now["speed_mps"] + s["action"][0].item() * STEP_S, abs=1e-4
        )
        assert bool(s["has_occupancy"]) and torch.equal(
            s["occupancy"], torch.from_numpy(logged.labels[drive][step])
        )
        n += 1
    return n


# --------------------------------------------------------------------------- correctness
def test_every_window_decodes_to_the_logged_frames_with_its_telemetry_and_labels(
    grey: tuple[Path, Path, Logged],
) -> None:
    _, store, logged = grey
    data = WindowDataset(store, frames=2)
    samples = list(data)
    # one window per frame of a clip except its first (a window stays inside its clip)
    expected = {(c, f) for c, f in _all_targets(store, 2)}
    assert (
        len(samples)
        == data.num_windows
        == len(expected)
        == sum(n - 1 for n in logged.clip_frames.values())
    )
    assert set(keys(samples)) == expected and len(set(keys(samples))) == len(samples)
    assert check_against_logs(samples, logged, k=2) == len(samples)
    first = samples[0]
    assert first["images"].shape == (CAMS, 2, 48, 96) and first["images"].dtype == torch.uint8
    assert first["occupancy"].dtype == torch.uint8 and first["action"].shape == (2,)
    # each camera frame decoded once: the loader's decoding work equals the video, frame for frame
    assert data.decoded_camera_frames() == CAMS * sum(logged.clip_frames.values())


def _all_targets(store: Path, k: int) -> list[Key]:
    _, rows = query(
        store, "SELECT DISTINCT clip_id, frame, start_frame FROM frames JOIN clips USING (clip_id)"
    )
    return [(c, f) for c, f, start in rows if f - start >= k - 1]


def test_three_frames_stride_two_and_one_frame_windows(grey: tuple[Path, Path, Logged]) -> None:
    _, store, logged = grey
    data = WindowDataset(store, frames=3, stride=2, shuffle=False)
    samples = list(data)
    _, starts = query(store, "SELECT clip_id, start_frame FROM clips")
    start_of = dict(starts)
    assert samples and all(
        (f - start_of[c] - 2) % 2 == 0 and f - start_of[c] >= 2 for c, f in keys(samples)
    )
    assert check_against_logs(samples[::7], logged, k=3) == len(samples[::7])
    # k = 1: a drive's first frame has no telemetry row at its time (the first is logged after a step)
    single = keys(WindowDataset(store, frames=1, shuffle=False))
    assert len(single) == sum(logged.clip_frames.values()) - 2  # 2 drives
    assert all(f > 0 for _, f in single)


def test_an_rgb_rig_gives_colour_windows(colour: tuple[Path, Path, Logged]) -> None:
    _, store, logged = colour
    samples = list(WindowDataset(store, frames=2, shuffle=False))
    assert samples and samples[0]["images"].shape == (CAMS, 2, 48, 96, 3)
    assert check_against_logs(samples, logged, k=2) == len(samples)


def test_specs_restrict_the_windows_and_decode_only_from_the_last_keyframe(
    grey: tuple[Path, Path, Logged],
) -> None:
    _, store, logged = grey
    _, rows = query(
        store, "SELECT clip_id, t0_s FROM clips WHERE start_frame = 100 ORDER BY clip_id LIMIT 1"
    )
    clip, t0 = rows[0]
    lo_s, hi_s = (
        t0 + 2.0,
        t0 + 3.0,
    )  # targets 2.0 .. 3.0 s into a clip starting on a keyframe each 1 s
    data = WindowDataset(
        store, [(clip, lo_s, hi_s), (clip, lo_s + 0.5, hi_s)]
    )  # overlapping: no duplicates
    samples = list(data)
    assert sorted(keys(samples)) == [(clip, f) for f in range(120, 131)]
    # the first window needs frame 119: decoding starts at the keyframe of frame 110
    assert data.decoded_camera_frames() == CAMS * (130 - 110 + 1)
    assert check_against_logs(samples, logged, k=2) == 11
    # a dataset's entries (dicts), or an object holding them, select the same windows
    entry = {"clip_id": clip, "t0_s": lo_s, "t1_s": hi_s, "split": "train"}

    class Manifest:
        entries = [entry]

    for specs in ([entry], Manifest(), {"entries": [entry]}, [WindowSpec(clip, lo_s, hi_s)]):
        assert sorted(keys(WindowDataset(store, specs))) == sorted(keys(samples))
    assert WindowDataset(store, []).num_windows == 0 and list(WindowDataset(store, [])) == []


def test_a_store_on_another_fsspec_filesystem(grey: tuple[Path, Path, Logged]) -> None:
    logs, _, logged = grey
    ingest([logs], "memory://dojo-loader-test", workers=1)
    samples = list(WindowDataset("memory://dojo-loader-test", frames=2))
    assert len(samples) == sum(n - 1 for n in logged.clip_frames.values())
    assert check_against_logs(samples[::25], logged, k=2) == len(samples[::25])


def test_missing_labels_give_zeros_and_false(
    grey: tuple[Path, Path, Logged], tmp_path: Path
) -> None:
    _, store, _ = grey
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    for path in (copy / "drives").glob("*/labels.parquet"):
        table = pq.read_table(path)
        table = table.filter(np.asarray(table.column("frame")) % 2 == 0)  # odd frames: no row
        grid = table.column("grid").to_pylist()  # frames 2 mod 4: a row whose grid is null
        nulls = [
            None if f % 4 == 2 else g
            for f, g in zip(table.column("frame").to_pylist(), grid, strict=True)
        ]
        pq.write_table(
            table.set_column(
                table.schema.get_field_index("grid"), "grid", pa.array(nulls, pa.binary())
            ),
            path,
        )
    samples = list(WindowDataset(copy, frames=2, shuffle=False))
    for s in samples:
        labelled = s["frame"] % 4 == 0
        assert bool(s["has_occupancy"]) == labelled
        assert labelled or not s["occupancy"].any()
    assert any(s["occupancy"].any() for s in samples if s["has_occupancy"])
    for batch in make_loader(WindowDataset(copy, frames=2, shuffle=False), batch_size=16):
        assert batch["has_occupancy"].tolist() == (batch["frame"] % 4 == 0).tolist()
        assert not batch["occupancy"][~batch["has_occupancy"]].any()


def test_labels_out_of_order_of_another_size_and_without_statistics(
    grey: tuple[Path, Path, Logged], tmp_path: Path
) -> None:
    """A labels file another writer made: rows backwards, small row groups with no frame
    statistics, every fifth grid of another size. Each window still gets its own frame's grid,
    and the odd-sized ones count as unlabelled."""
    _, store, logged = grey
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    for path in (copy / "drives").glob("*/labels.parquet"):
        table = pq.read_table(path)
        table = table.take(np.arange(table.num_rows)[::-1])
        grid = table.column("grid").to_pylist()
        odd = [
            g[:-1] if f % 5 == 0 else g
            for f, g in zip(table.column("frame").to_pylist(), grid, strict=True)
        ]
        table = table.set_column(
            table.schema.get_field_index("grid"), "grid", pa.array(odd, pa.binary())
        )
        pq.write_table(table, path, row_group_size=7, write_statistics=False)
    data = WindowDataset(copy, frames=2, shuffle=False)
    samples = list(data)
    assert samples
    for s in samples:
        assert bool(s["has_occupancy"]) == (s["frame"] % 5 != 0)
        if s["has_occupancy"]:
            want = logged.labels[logged.drive_of[s["clip_id"]]][round(float(s["t_s"]) / STEP_S)]
            assert torch.equal(s["occupancy"], torch.from_numpy(want))
        else:
            assert not s["occupancy"].any()


# -------------------------------------------------------------------- order and sharding
def test_order_is_a_function_of_seed_and_epoch_and_the_buffer_mixes_clips(
    grey: tuple[Path, Path, Logged],
) -> None:
    _, store, _ = grey
    a, b = WindowDataset(store, seed=3), WindowDataset(store, seed=3)
    first = keys(a)
    assert first == keys(b) == a.shard_order(0, 1)
    a.set_epoch(1)
    second = keys(a)
    assert second != first and sorted(second) == sorted(first)
    assert keys(WindowDataset(store, seed=4)) != first
    # within a shuffled epoch consecutive windows jump between clips and frames
    assert sum(x[0] != y[0] for x, y in zip(first, first[1:], strict=False)) > len(first) // 4
    # unshuffled: clip after clip in store order, frames in order
    _, rows = query(store, "SELECT clip_id FROM clips ORDER BY drive_id, start_frame")
    rank = {c: i for i, (c,) in enumerate(rows)}
    unshuffled = keys(WindowDataset(store, shuffle=False))
    assert unshuffled == sorted(first, key=lambda kf: (rank[kf[0]], kf[1]))


@pytest.mark.parametrize(("world_size", "workers"), [(3, 0), (2, 2)])
def test_shards_over_ranks_and_workers_cover_every_window_once(
    grey: tuple[Path, Path, Logged], world_size: int, workers: int
) -> None:
    _, store, _ = grey
    everything = set(keys(WindowDataset(store)))
    seen: list[Key] = []
    for rank in range(world_size):
        data = WindowDataset(store, rank=rank, world_size=world_size)
        batches = list(make_loader(data, batch_size=16, num_workers=workers))
        assert {int(s) for b in batches for s in b["shards"]} == {world_size * max(workers, 1)}
        shards = {int(s) for b in batches for s in b["shard"]}
        assert shards <= set(range(rank * max(workers, 1), (rank + 1) * max(workers, 1)))
        seen += batch_keys(batches)
    assert len(seen) == len(set(seen)) == len(everything) and set(seen) == everything
    counts = WindowDataset(store).windows_per_shard(world_size * max(workers, 1))
    assert sum(counts) == len(everything)


# ---------------------------------------------------------------------------------- resume
def test_resume_in_process_continues_the_same_sequence(grey: tuple[Path, Path, Logged]) -> None:
    _, store, _ = grey
    samples = list(WindowDataset(store, seed=7))
    whole = keys(samples)
    for taken in (0, 1, 150, len(whole)):
        data = WindowDataset(store, seed=7)
        it = iter(data)
        head = keys(next(it) for _ in range(taken))
        state = json.loads(json.dumps(data.state_dict()))  # it must survive a JSON checkpoint
        fresh = WindowDataset(store, seed=7)
        fresh.load_state_dict(state)
        rest = list(fresh)
        assert head + keys(rest) == whole, taken
        # the labels read for the rest (read ahead from where it resumed) are each window's own
        for got, want in zip(rest, samples[taken:], strict=True):
            assert torch.equal(got["occupancy"], want["occupancy"]) and torch.equal(
                got["images"], want["images"]
            )
    # an epoch later, from a saved position, too
    data = WindowDataset(store, seed=7)
    data.set_epoch(2)
    epoch2 = keys(data)
    data.set_epoch(2)
    it = iter(data)
    head = keys(next(it) for _ in range(40))
    fresh = WindowDataset(store, seed=7)
    fresh.load_state_dict(data.state_dict())
    assert fresh.epoch == 2 and head + keys(fresh) == epoch2


def test_resume_with_dataloader_workers_continues_the_same_batches(
    grey: tuple[Path, Path, Logged],
) -> None:
    _, store, _ = grey
    whole = batch_keys(make_loader(WindowDataset(store, seed=1), batch_size=16, num_workers=2))
    data = WindowDataset(store, seed=1)
    head: list[dict[str, Any]] = []
    for batch in make_loader(data, batch_size=16, num_workers=2):
        head.append(batch)
        if len(head) == 5:
            break
    state = data.state_dict()
    assert state["shards"] == 2 and sum(state["positions"].values()) == 5 * 16
    fresh = WindowDataset(store, seed=1)
    fresh.load_state_dict(state)
    rest = batch_keys(make_loader(fresh, batch_size=16, num_workers=2))
    assert batch_keys(head) + rest == whole
    # the same position with another number of shards is refused, not silently wrong
    other = WindowDataset(store, seed=1)
    other.load_state_dict(state)
    with pytest.raises(DojoConfigError, match="2 shards"):
        iter(other)


def test_ddp_ranks_positions_merge_and_resume(grey: tuple[Path, Path, Logged]) -> None:
    _, store, _ = grey
    whole = [keys(WindowDataset(store, rank=r, world_size=2)) for r in range(2)]
    states, heads = [], []
    for r, taken in ((0, 30), (1, 55)):
        data = WindowDataset(store, rank=r, world_size=2)
        it = iter(data)
        heads.append(keys(next(it) for _ in range(taken)))
        states.append(data.state_dict())
    merged = json.loads(json.dumps(merge_states(states)))
    for r in range(2):
        fresh = WindowDataset(store, rank=r, world_size=2)
        fresh.load_state_dict(merged)
        assert heads[r] + keys(fresh) == whole[r]


def test_a_position_from_other_settings_is_refused(grey: tuple[Path, Path, Logged]) -> None:
    _, store, _ = grey
    state = WindowDataset(store, seed=1).state_dict()
    with pytest.raises(DojoConfigError, match="other windows or order settings"):
        WindowDataset(store, seed=2).load_state_dict(state)
    with pytest.raises(DojoConfigError, match="not a saved loader position"):
        WindowDataset(store).load_state_dict({"epoch": 1})


# ------------------------------------------------------------------------------ bad input
def test_bad_inputs_are_one_clear_sentence(grey: tuple[Path, Path, Logged], tmp_path: Path) -> None:
    _, store, _ = grey
    with pytest.raises(DojoConfigError, match="not a Dojo clip store"):
        WindowDataset(tmp_path)
    with pytest.raises(DojoConfigError, match="'nope' in the window specs is not in store"):
        WindowDataset(store, [("nope", 0.0, 1.0)])
    with pytest.raises(DojoConfigError, match="frames=0 must be a whole number >= 1"):
        WindowDataset(store, frames=0)
    with pytest.raises(DojoConfigError, match="stride=1.5"):
        WindowDataset(store, stride=1.5)  # type: ignore[arg-type]
    clip = query(store, "SELECT clip_id FROM clips LIMIT 1")[1][0][0]
    with pytest.raises(DojoConfigError, match="after t1_s"):
        WindowDataset(store, [(clip, 2.0, 1.0)])
    with pytest.raises(DojoConfigError, match="must be"):
        WindowDataset(store, "not specs")
    with pytest.raises(DojoConfigError, match="give both or neither"):
        WindowDataset(store, rank=1)
    with pytest.raises(DojoConfigError, match="persistent_workers"):
        make_loader(WindowDataset(store, []), num_workers=1, persistent_workers=True)


def test_video_that_does_not_decode_names_the_clip_and_camera(
    grey: tuple[Path, Path, Logged], tmp_path: Path
) -> None:
    _, store, _ = grey
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    # the longest drive: a short one (a crash in its first frames) may hold no 2-frame window
    drive = query(copy, "SELECT drive_id FROM drives ORDER BY frames DESC, drive_id LIMIT 1")[1][0][
        0
    ]
    clips = [c for (c,) in query(copy, f"SELECT clip_id FROM clips WHERE drive_id = '{drive}'")[1]]
    assert WindowDataset(copy, [(c, 0.0, 1e9) for c in clips]).num_windows > 0
    video = copy / "drives" / drive / "video" / "left.h264"
    video.write_bytes(bytes(len(video.read_bytes())))  # same length, every byte zero
    with pytest.raises(DojoConfigError, match=rf"Clip ({'|'.join(clips)}) camera 'left'"):
        list(WindowDataset(copy, [(c, 0.0, 1e9) for c in clips]))
    video.unlink()
    with pytest.raises(
        DojoConfigError, match=rf"Clip ({'|'.join(clips)}) camera 'left': cannot read"
    ):
        list(WindowDataset(copy, [(clips[0], 0.0, 1e9)]))


# ------------------------------------------------------------------------ training, rates
def test_batches_feed_the_driving_policy(grey: tuple[Path, Path, Logged]) -> None:
    _, store, _ = grey
    data = WindowDataset(store, frames=2)
    batch = next(iter(make_loader(data, batch_size=8)))
    assert batch["images"].shape == (8, CAMS, 2, 48, 96) and batch["speed_mps"].shape == (8,)
    assert batch["action"].shape == (8, 2) and batch["has_occupancy"].dtype == torch.bool
    assert data.rig is not None
    policy = DrivingPolicy(
        PolicyConfig(cameras=len(data.rig.cameras), frames=2, height=48, width=96)
    )
    loss = torch.nn.functional.mse_loss(
        policy(batch["images"], batch["speed_mps"], batch["command"]), batch["action"]
    )
    loss.backward()
    assert torch.isfinite(loss)
    samples = [s for _, s in zip(range(3), WindowDataset(store), strict=False)]
    stacked = collate_windows(samples)
    assert all(torch.equal(stacked["images"][i], samples[i]["images"]) for i in range(3))
    assert stacked["t_s"].dtype == torch.float64 and stacked["clip_id"] == [
        s["clip_id"] for s in samples
    ]


@pytest.mark.parametrize(("workers", "occupancy"), [(0, True), (2, True), (2, False)])
def test_loader_batches_equal_collated_windows_field_by_field(
    grey: tuple[Path, Path, Logged], workers: int, occupancy: bool
) -> None:
    """The loader builds batches itself; they must be what collating the windows in turn gives."""
    _, store, _ = grey
    data = WindowDataset(store, seed=5, occupancy=occupancy)
    batch_size = 24  # not a divisor of a shard's windows: every shard ends on a partial batch
    batches = list(make_loader(data, batch_size=batch_size, num_workers=workers))
    shards = max(workers, 1)
    per_shard = data.windows_per_shard(shards)
    assert [len(b["clip_id"]) for b in batches].count(batch_size) == sum(
        n // batch_size for n in per_shard
    )
    # the DataLoader's round robin over workers, each worker batching its own shard's windows
    sample_batches: list[list[list[dict[str, Any]]]] = [[] for _ in range(shards)]
    for shard in range(shards):
        windows = list(
            WindowDataset(store, seed=5, occupancy=occupancy)._iter_shard(
                shard, shards, 0, track=False
            )
        )
        sample_batches[shard] = [
            windows[i : i + batch_size] for i in range(0, len(windows), batch_size)
        ]
    expected = [
        collate_windows(b) for group in itertools.zip_longest(*sample_batches) for b in group if b
    ]
    assert len(batches) == len(expected)
    for got, want in zip(batches, expected, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, torch.Tensor):
                assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
            else:
                assert got[key] == value, key
    if occupancy:
        assert any(b["has_occupancy"].any() for b in batches) and "occupancy" in batches[0]
    dropped = list(
        make_loader(
            WindowDataset(store, seed=5), batch_size=batch_size, num_workers=workers, drop_last=True
        )
    )
    assert [len(b["clip_id"]) for b in dropped] == [batch_size] * sum(
        n // batch_size for n in per_shard
    )
    with pytest.raises(DojoConfigError, match="collate_fn"):
        make_loader(WindowDataset(store), collate_fn=collate_windows)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_let_go_lend_their_memory_and_batches_held_keep_their_contents(
    grey: tuple[Path, Path, Logged], workers: int
) -> None:
    """Batches the trainer keeps are never written over while the others are let go (and reused).

    With workers this is the slots' handshake across processes (a batch in a slot the trainer's
    side has seen before arrives without its tensors and is rebuilt there); test_slots.py checks
    each step of it, and test_buffers.py that let-go memory is lent again.
    """
    _, store, _ = grey
    held = list(
        make_loader(WindowDataset(store, seed=3), batch_size=16, num_workers=workers)
    )  # no reuse
    kept: list[tuple[int, dict[str, Any]]] = []
    for i, batch in enumerate(
        make_loader(WindowDataset(store, seed=3), batch_size=16, num_workers=workers)
    ):
        assert batch_keys([batch]) == batch_keys([held[i]])
        assert torch.equal(batch["images"], held[i]["images"]) and torch.equal(
            batch["occupancy"], held[i]["occupancy"]
        )
        if i % 3 == 0:
            kept.append((i, batch))  # a trainer keeping some batches (to log them, say)
    for i, batch in kept:  # and none of those kept was written over
        assert torch.equal(batch["images"], held[i]["images"]) and torch.equal(
            batch["occupancy"], held[i]["occupancy"]
        )


def test_rates_count_the_same_frames_on_both_sides(grey: tuple[Path, Path, Logged]) -> None:
    _, store, logged = grey
    raw = decode_rate_raw(store)
    assert raw["frames"] == CAMS * sum(logged.clip_frames.values()) and raw["frames_per_s"] > 0
    rate = loader_rate(store, num_workers=0, batch_size=32)
    assert rate["decoded_camera_frames"] == raw["frames"]
    assert (
        rate["windows"] == sum(n - 1 for n in logged.clip_frames.values())
        and rate["windows_per_s"] > 0
    )
    clip = sorted(logged.clip_frames)[0]
    one = decode_rate_raw(store, [clip], max_frames=7)
    assert one["frames"] == 7 and one["clips"] == 1
    assert (
        loader_rate(store, [clip], occupancy=False)["decoded_camera_frames"]
        == CAMS * logged.clip_frames[clip]
    )
