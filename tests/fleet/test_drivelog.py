"""Drive logs: MCAP round trip, H.264 fidelity and structure, crash safety and clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest
from mcap.reader import make_reader

from dojo.bench.logwrite import measure_frame_cost
from dojo.drivelog import (
    PARTIAL_SUFFIX,
    DriveLogWriter,
    decode_access_units,
    decode_video,
    nal_unit_types,
    read_drive_log,
    read_occupancy,
    video_packets,
)
from dojo.errors import CorruptLogError, DojoConfigError, StorageFullError
from dojo.world import World
from dojo.world.camera import CameraRig, ego_pose, render
from dojo.world.occupancy import OccupancySpec, occupancy
from dojo.world.scene import scene_objects
from tests.fleet.tmpfs import small_tmpfs

STEPS = 30  # 3 s at 10 Hz
MIN_PSNR_GREY_DB = 35.0  # measured about 56-77 dB at the default crf=18
# RGB goes through 4:2:0 chroma subsampling, which alone costs the palette's hard colour edges
# most of the error (measured about 34.5 dB with or without the codec)
MIN_PSNR_RGB_DB = 30.0
CONFIG = {"family": "cut_in", "seed": 3, "mode": "human", "car_id": "car-3"}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Drive:
    """A real 3 s drive of World('cut_in', seeds=[3]) with the default grey camera rig."""

    def __init__(self, rgb: bool = False) -> None:
        world = World("cut_in", seeds=[3])
        self.rig = CameraRig.default(rgb=rgb)
        frames, grids, poses, telemetry, events, self.scenes = [], [], [], [], [], []
        for step in range(STEPS):
            t = step / 10
            frames.append(render(world.roads, world.vehicles, self.rig)[0])
            self.scenes.append(scene_objects(world, 0))
            grids.append(occupancy(world.roads, world.vehicles)[0])
            x, y, yaw = (float(a[0]) for a in ego_pose(world.roads, world.vehicles, np.array([0])))
            poses.append((t, x, y, 0.0, yaw))
            result = world.step(None, None)
            telemetry.append(
                {
                    "speed_mps": world.vehicles.v[0, 0],
                    "accel_mps2": world.vehicles.accel[0, 0],
                    "steer_rad": world.vehicles.steer[0, 0],
                    "lane": world.perception.index.lane[0, 0],
                    "ttc_s": result.ego_ttc_s[0],
                    "command": "KEEP_LANE",
                    "mode": "human",
                }
            )
            if step in (12, 20):
                kind = "intervention_start" if step == 12 else "intervention_end"
                events.append((t, {"kind": kind, "critical": step == 12, "reason": "ttc", "n": 1}))
        self.frames = np.stack(frames)  # (T, cams, H, W) or (T, cams, H, W, 3)
        self.grids = np.stack(grids)  # (T, rows, cols)
        self.poses = np.array(poses)  # (T, 5)
        self.telemetry = telemetry
        self.events = events

    def write(self, path: Path, **options: object) -> None:
        with DriveLogWriter.from_rig(path, self.rig, metadata=CONFIG, **options) as log:
            for step in range(STEPS):
                t = step / 10
                log.write_frame(t, self.frames[step])
                log.write_pose(*self.poses[step])
                log.write_telemetry(t, self.telemetry[step])
                log.write_occupancy(t, self.grids[step])
                log.write_scene(t, self.scenes[step])
                for t_event, event in self.events:
                    if t_event == t:
                        log.write_event(t, event)


@pytest.fixture(scope="module")
def drive() -> Drive:
    return Drive()


@pytest.fixture(scope="module")
def log_path(drive: Drive, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drive") / "car-3.mcap"
    drive.write(path)
    return path


def small_writer(path: Path | object, **options: object) -> DriveLogWriter:
    return DriveLogWriter(path, ["front", "rear"], 32, 16, **options)  # type: ignore[arg-type]


def grey(t: int) -> np.ndarray:
    """Two 16x32 test images that change with t."""
    img = np.full((2, 16, 32), 60, dtype=np.uint8)
    img[:, 4:10, t % 20 : t % 20 + 8] = 200
    return img


# ------------------------------------------------------------------------------ round trip
def test_round_trip_with_the_official_mcap_reader(log_path: Path, drive: Drive) -> None:
    assert not log_path.with_name(log_path.name + PARTIAL_SUFFIX).exists()
    with open(log_path, "rb") as f:
        reader = make_reader(f, validate_crcs=True)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        assert summary.chunk_indexes and {c.compression for c in summary.chunk_indexes} == {"zstd"}
        assert all(c.message_index_offsets for c in summary.chunk_indexes)  # message index
        schemas = {ch.topic: summary.schemas[ch.schema_id] for ch in summary.channels.values()}
        names = {topic: s.name for topic, s in schemas.items()}
        assert names == {
            **{f"/camera/{cam}": "foxglove.CompressedVideo" for cam in drive.rig.names},
            "/ego/pose": "foxglove.FrameTransform",
            "/camera_mounts": "foxglove.FrameTransform",
            "/telemetry": "dojo.Telemetry",
            "/events": "dojo.Event",
            "/labels/occupancy": "foxglove.Grid",
            "/scene": "foxglove.SceneUpdate",
        } | {f"/camera/{c}/calibration": "foxglove.CameraCalibration" for c in drive.rig.names}
        assert {s.encoding for s in schemas.values()} == {"jsonschema"}
        assert {ch.message_encoding for ch in summary.channels.values()} == {"json"}
        counts = {
            summary.channels[cid].topic: n
            for cid, n in summary.statistics.channel_message_counts.items()
        }
        # a calibration at t = 0 and at each later keyframe (1 s apart): 3 in 3 s
        calibrations = {t: 3 for t in names if t.endswith("/calibration")}
        mounts = len(drive.rig.cameras)  # one transform per camera
        assert (
            counts
            == {topic: STEPS for topic in names}
            | {"/events": 2, "/camera_mounts": mounts}
            | calibrations
        )
        assert summary.statistics.attachment_count == 0
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        assert set(meta) == {"drive", "drive_log", "summary"}
        assert meta["drive"]["family"] == "cut_in" and meta["drive"]["seed"] == "3"
        assert meta["drive"]["software_version"]
        # a video message is a Foxglove CompressedVideo with every required field
        _, channel, message = next(reader.iter_messages(topics=["/camera/front"]))
        video = json.loads(message.data)
        assert set(json.loads(schemas["/camera/front"].data)["required"]) <= set(video)
        assert video["format"] == "h264" and video["timestamp"] == {"sec": 0, "nsec": 0}

    log = read_drive_log(log_path)
    assert log.status == "complete" and log.summary["frames_per_camera"] == str(STEPS)
    assert log.cameras == tuple(drive.rig.names) and (log.width, log.height) == (96, 48)
    assert log.chunk_compressions == frozenset({"zstd"})
    assert log.config["car_id"] == "car-3" and log.config["mode"] == "human"
    assert log.message_counts["/ego/pose"] == STEPS
    assert [round(m["t_s"], 6) for m in log.telemetry] == [round(s / 10, 6) for s in range(STEPS)]
    first = log.telemetry[0]
    assert first["speed_mps"] == pytest.approx(float(drive.telemetry[0]["speed_mps"]))
    assert first["command"] == "KEEP_LANE" and first["mode"] == "human"
    ttc = [m["ttc_s"] for m in log.telemetry]
    expected = [None if np.isinf(m["ttc_s"]) else float(m["ttc_s"]) for m in drive.telemetry]
    assert ttc == expected
    assert [(e["kind"], e["critical"], e["reason"], e["n"]) for e in log.events] == [
        ("intervention_start", True, "ttc", 1),
        ("intervention_end", False, "ttc", 1),
    ]
    assert log.summary["critical_events"] == "1"
    np.testing.assert_allclose(log.poses, drive.poses, atol=1e-9)


def test_occupancy_labels_round_trip_and_place_cells_in_the_ego_frame(
    log_path: Path, drive: Drive
) -> None:
    t, grids = read_occupancy(log_path)
    np.testing.assert_allclose(t, np.arange(STEPS) / 10)
    np.testing.assert_array_equal(grids, drive.grids)
    # the foxglove.Grid pose must put cell (r, c) where dojo.world.occupancy says it is
    with open(log_path, "rb") as f:
        _, _, message = next(make_reader(f).iter_messages(topics=["/labels/occupancy"]))
    grid = json.loads(message.data)
    q = grid["pose"]["orientation"]
    x, y, z, w = q["x"], q["y"], q["z"], q["w"]
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    spec = OccupancySpec()
    xs, ys = spec.centres()
    origin = np.array([grid["pose"]["position"][k] for k in "xyz"])
    cell = grid["cell_size"]["x"]
    for r, c in [(0, 0), (7, 53), (spec.rows - 1, spec.cols - 1)]:
        ego = origin + rot @ np.array([(c + 0.5) * cell, (r + 0.5) * cell, 0.0])
        assert ego[:2] == pytest.approx([xs[r], ys[c]])


def test_same_drive_gives_the_same_bytes(drive: Drive, log_path: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.mcap"
    drive.write(again)
    assert sha(again) == sha(log_path)


# ----------------------------------------------------------------------------------- video
def test_video_decodes_to_the_rendered_frames(log_path: Path, drive: Drive) -> None:
    for cam, name in enumerate(drive.rig.names):
        video = decode_video(log_path, name)
        assert video.shape == (STEPS, 48, 96) and video.dtype == np.uint8
        assert psnr(video, drive.frames[:, cam]) >= MIN_PSNR_GREY_DB, name


def test_rgb_video_round_trip(tmp_path: Path) -> None:
    drive = Drive(rgb=True)
    path = tmp_path / "rgb.mcap"
    drive.write(path)
    video = decode_video(path, "front")
    assert video.shape == (STEPS, 48, 96, 3)
    assert psnr(video, drive.frames[:, 0]) >= MIN_PSNR_RGB_DB


def test_no_b_frames_one_access_unit_per_message_and_regular_keyframes(tmp_path: Path) -> None:
    path = tmp_path / "gop.mcap"
    with small_writer(path, keyframe_interval_s=0.5) as log:  # 5 frames at 10 Hz
        for t in range(23):
            log.write_frame(t / 10, grey(t))
    packets = video_packets(path, "front")
    assert len(packets) == 23
    assert [p.keyframe for p in packets] == [t % 5 == 0 for t in range(23)]
    for p in packets:
        assert p.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))  # Annex B
        types = nal_unit_types(p.data)
        if p.keyframe:
            assert {5, 7, 8} <= set(types)  # IDR slice with its SPS and PPS
        else:
            assert 5 not in types and 7 not in types
    # each message decodes to exactly one frame at once, in order, and none is a B-frame:
    # with no reordering the decoder never holds a frame back
    ctx = av.CodecContext.create("h264", "r")
    for p in packets:
        frames = ctx.decode(av.Packet(p.data))
        assert len(frames) == 1
        assert frames[0].pict_type in (av.video.frame.PictureType.I, av.video.frame.PictureType.P)
    assert ctx.decode(None) == []


def test_every_keyframe_decodes_standalone(tmp_path: Path) -> None:
    path = tmp_path / "keys.mcap"
    with small_writer(path) as log:
        for t in range(25):
            log.write_frame(t / 10, grey(t))
    packets = video_packets(path, "rear")
    keys = [i for i, p in enumerate(packets) if p.keyframe]
    assert keys == [0, 10, 20]
    full = decode_video(path, "rear")
    for start in keys[1:]:
        tail = decode_access_units([p.data for p in packets[start:]], rgb=False)
        np.testing.assert_array_equal(tail, full[start:])


# ---------------------------------------------------------------------------- crash safety
def test_ctrl_c_inside_with_leaves_a_valid_indexed_log(tmp_path: Path) -> None:
    path = tmp_path / "interrupted.mcap"
    with pytest.raises(KeyboardInterrupt), small_writer(path) as log:
        for t in range(15):
            log.write_frame(t / 10, grey(t))
        raise KeyboardInterrupt
    assert log.closed
    log.close()  # idempotent
    assert not path.with_name(path.name + PARTIAL_SUFFIX).exists()
    with open(path, "rb") as f:
        assert make_reader(f).get_summary() is not None
    result = read_drive_log(path)
    assert result.status == "interrupted: KeyboardInterrupt"
    assert result.message_counts["/camera/front"] == 15
    assert decode_video(path, "front").shape == (15, 16, 32)


def test_real_sigint_during_writes_leaves_a_valid_log(tmp_path: Path) -> None:
    """A real Ctrl-C (SIGINT) lands while frames are being written as fast as they can be."""
    path = tmp_path / "sigint.mcap"
    child = textwrap.dedent(
        """
        import sys
        import numpy as np
        from dojo.drivelog import DriveLogWriter

        img = np.zeros((2, 16, 32), np.uint8)
        with DriveLogWriter(sys.argv[1], ["front", "rear"], 32, 16) as log:
            t = 0
            while True:
                img[:, :, t % 32] = t % 256
                log.write_frame(t / 10, img)
                log.write_event(t / 10, {"kind": "near_miss"})
                t += 1
                if t == 20:
                    print("ready", flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert b"KeyboardInterrupt" in err
    log = read_drive_log(path)
    assert log.status == "interrupted: KeyboardInterrupt"
    frames = int(log.summary["frames_per_camera"])
    assert frames >= 20 and log.message_counts["/camera/rear"] == frames
    assert len(decode_video(path, "front")) == frames


def test_truncated_or_corrupt_files_raise_a_clear_error(log_path: Path, tmp_path: Path) -> None:
    data = log_path.read_bytes()
    half = tmp_path / "half.mcap"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptLogError, match="half.mcap.*truncated") as info:
        read_drive_log(half)
    assert info.value.reason.startswith("it is truncated") and info.value.path == str(half)
    # flip bytes inside the first chunk: the chunk CRC catches it
    with open(log_path, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None
    chunk = summary.chunk_indexes[0]
    broken = bytearray(data)
    middle = chunk.chunk_start_offset + chunk.chunk_length // 2
    broken[middle : middle + 16] = bytes(16)
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(broken))
    with pytest.raises(CorruptLogError, match="bad.mcap.*corrupt"):
        read_drive_log(bad)
    with pytest.raises(CorruptLogError, match="bad.mcap"):
        decode_video(bad, "front")
    text = tmp_path / "notes.mcap"
    text.write_text("not a log")
    with pytest.raises(CorruptLogError, match="not an MCAP file"):
        read_drive_log(text)
    with pytest.raises(DojoConfigError, match="does not exist"):
        read_drive_log(tmp_path / "missing.mcap")
    with pytest.raises(DojoConfigError, match="'side'.*" + ", ".join(CameraRig.default().names)):
        decode_video(log_path, "side")


def test_a_full_disk_raises_a_clear_error_and_leaves_closed_logs_alone(tmp_path: Path) -> None:
    """/dev/full is a real device on which every write fails with ENOSPC, as on a full disk."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    done = tmp_path / "done.mcap"
    with small_writer(done) as log:
        log.write_frame(0.0, grey(0))
    before = sha(done)
    full = open("/dev/full", "wb")  # noqa: SIM115 -- its close fails too, see below
    log = small_writer(full)
    with pytest.raises(StorageFullError, match="disk is full.*/dev/full"), log:
        for t in range(5):
            log.write_frame(t / 10, grey(t))
    with pytest.raises(DojoConfigError, match="closed after an error"):
        log.write_frame(1.0, grey(1))
    with pytest.raises(OSError):  # the caller's stream still holds the bytes it could not write
        full.close()
    assert sha(done) == before and read_drive_log(done).status == "complete"


def test_a_full_filesystem_removes_the_partial_log(tmp_path: Path) -> None:
    """A real 256 KiB tmpfs fills up while a drive is logged (needs a private mount namespace)."""
    unshare, mnt, mount = small_tmpfs(tmp_path, "256k")
    child = textwrap.dedent(
        """
        import hashlib, json, sys
        from pathlib import Path
        import numpy as np
        from dojo.drivelog import DriveLogWriter, read_drive_log
        from dojo.errors import StorageFullError

        folder = Path(sys.argv[1])
        done = folder / "done.mcap"
        with DriveLogWriter(done, ["front"], 32, 16) as log:
            log.write_frame(0.0, np.zeros((1, 16, 32), np.uint8))
        before = hashlib.sha256(done.read_bytes()).hexdigest()
        big = folder / "big.mcap"
        rng = np.random.default_rng(0)
        error = ""
        try:
            with DriveLogWriter(big, ["front"], 32, 16, chunk_size_bytes=1 << 16) as log:
                for t in range(2000):  # incompressible labels: ~13 KB a message
                    log.write_occupancy(t / 10, rng.integers(0, 256, (120, 80), dtype=np.uint8))
        except StorageFullError as e:
            error = str(e)
        print(json.dumps({
            "error": error,
            "big": big.exists(),
            "partial": (folder / "big.mcap.partial").exists(),
            "done_same": hashlib.sha256(done.read_bytes()).hexdigest() == before,
            "done_status": read_drive_log(done).status,
        }))
        """
    )
    script = tmp_path / "fill.py"
    script.write_text(child)
    cmd = f"{mount} && exec {sys.executable} {script} {mnt}"
    run = subprocess.run([unshare, "-rm", "sh", "-c", cmd], capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()
    out = json.loads(run.stdout)
    assert "disk is full" in out["error"] and "big.mcap" in out["error"]
    assert not out["big"] and not out["partial"]
    assert out["done_same"] and out["done_status"] == "complete"


# ------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"width": 33}, "width=33"),
        ({"height": 0}, "height=0"),
        ({"width": True}, "width=True"),
        ({"cameras": []}, "cameras=[]"),
        ({"cameras": ["front", "front"]}, "repeated: front"),
        ({"cameras": ["front/left"]}, "'front/left'"),
        ({"fps": 0.0}, "fps=0.0"),
        ({"fps": float("nan")}, "fps=nan"),
        ({"keyframe_interval_s": 0.01}, "keyframe_interval_s=0.01"),
        ({"crf": 0}, "crf=0"),
        ({"preset": "warp"}, "preset='warp'"),
        ({"metadata": {"seed": object()}}, "metadata['seed']"),
    ],
)
def test_bad_writer_settings(tmp_path: Path, kwargs: dict, word: str) -> None:
    args = {"cameras": ["front"], "width": 32, "height": 16} | kwargs
    path = tmp_path / "x.mcap"
    with pytest.raises(DojoConfigError) as info:
        DriveLogWriter(path, **args)
    assert word in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_output_paths(tmp_path: Path) -> None:
    with pytest.raises(DojoConfigError, match="nowhere.*does not exist"):
        small_writer(tmp_path / "nowhere" / "x.mcap")
    (tmp_path / "file").write_text("")
    with pytest.raises(DojoConfigError, match="file is not a folder"):
        small_writer(tmp_path / "file" / "x.mcap")
    with pytest.raises(DojoConfigError, match="is a folder"):
        small_writer(tmp_path)
    (tmp_path / "old.mcap").write_text("")
    with pytest.raises(DojoConfigError, match="already exists"):
        small_writer(tmp_path / "old.mcap")
    small_writer(tmp_path / "old.mcap", overwrite=True).close()
    assert read_drive_log(tmp_path / "old.mcap").status == "complete"


def test_a_folder_that_is_not_writable(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    else:  # root writes into any folder of an ordinary file system; sysfs refuses even root
        folder = Path("/sys")
        if not folder.is_dir():
            pytest.skip("no sysfs here")
    try:
        with pytest.raises(DojoConfigError, match=f"Output folder {folder} is not writable"):
            small_writer(folder / "x.mcap")
    finally:
        if folder.is_relative_to(tmp_path):
            folder.chmod(0o755)
    assert not (folder / "x.mcap").exists()


def test_bad_writes(tmp_path: Path) -> None:
    log = small_writer(tmp_path / "x.mcap")
    ok = grey(0)
    bad_images = [ok[0], ok.astype(np.float32), ok[:, :, :30], ok.tolist()]
    for images in bad_images:
        with pytest.raises(
            DojoConfigError, match=r"images must be a uint8 array of shape \(2, 16, 32\)"
        ):
            log.write_frame(0.0, images)
    with pytest.raises(DojoConfigError, match="t_s=nan"):
        log.write_frame(float("nan"), ok)
    with pytest.raises(DojoConfigError, match="t_s=-1"):
        log.write_pose(-1, 0, 0, 0, 0)
    log.write_frame(0.5, ok)
    with pytest.raises(DojoConfigError, match="later than the previous frame"):
        log.write_frame(0.5, ok)
    telemetry = {"speed_mps": 1.0, "accel_mps2": 0.0, "steer_rad": 0.0, "lane": 1, "ttc_s": None}
    with pytest.raises(DojoConfigError, match="telemetry misses command"):
        log.write_telemetry(0.5, telemetry)
    with pytest.raises(DojoConfigError, match="telemetry speed_mps=inf"):
        log.write_telemetry(0.5, telemetry | {"command": "KEEP_LANE", "speed_mps": np.inf})
    with pytest.raises(DojoConfigError, match="telemetry lane=1.5"):
        log.write_telemetry(0.5, telemetry | {"command": 0, "lane": 1.5})
    with pytest.raises(DojoConfigError, match="event kind='crash'"):
        log.write_event(0.5, {"kind": "crash"})
    with pytest.raises(DojoConfigError, match="event critical='yes'"):
        log.write_event(0.5, {"kind": "collision", "critical": "yes"})
    with pytest.raises(DojoConfigError, match=r"grid must be a uint8 array of shape \(120, 80\)"):
        log.write_occupancy(0.5, np.zeros((80, 120), np.uint8))
    log.close()
    with pytest.raises(DojoConfigError, match="x.mcap was closed"):
        log.write_frame(1.0, ok)
    with pytest.raises(DojoConfigError, match="closed"):
        log.write_event(1.0, {"kind": "collision"})
    assert read_drive_log(tmp_path / "x.mcap").message_counts["/camera/front"] == 1


def test_write_frames_logs_what_write_frame_logs_one_by_one(tmp_path: Path) -> None:
    """A batch, encoded camera by camera, gives the same access units at the same times."""
    images = np.stack([grey(t) for t in range(25)])  # (T, cams, H, W)
    times = [t / 10 for t in range(25)]
    with small_writer(tmp_path / "one.mcap") as log:
        for t, frame in zip(times, images, strict=True):
            log.write_frame(t, frame, keyframe=t == 1.2)
    with small_writer(tmp_path / "batch.mcap") as log:
        log.write_frames(times[:12], images[:12])
        log.write_frames(times[12:], images[12:], keyframe=True)
    for camera in ("front", "rear"):
        one = video_packets(tmp_path / "one.mcap", camera)
        batch = video_packets(tmp_path / "batch.mcap", camera)
        assert [(p.t_s, p.data) for p in one] == [(p.t_s, p.data) for p in batch]
        assert [p.keyframe for p in batch].count(True) == 4  # 0, 1.0, the forced 1.2, 2.2 s


def test_bad_batches_of_frames_write_nothing(tmp_path: Path) -> None:
    log = small_writer(tmp_path / "x.mcap")
    images = np.stack([grey(t) for t in range(3)])
    with pytest.raises(DojoConfigError, match=r"shape \(2, 2, 16, 32\) \(frames, cameras"):
        log.write_frames([0.0, 0.1], images)
    with pytest.raises(
        DojoConfigError, match="t_s=0.1 must be later than the previous frame's 0.1"
    ):
        log.write_frames([0.0, 0.1, 0.1], images)
    with pytest.raises(DojoConfigError, match="t_s=inf"):
        log.write_frames([0.0, float("inf"), 0.3], images)
    log.write_frames([0.0, 0.1, 0.2], images)
    log.close()
    assert read_drive_log(tmp_path / "x.mcap").message_counts["/camera/front"] == 3


def test_measure_frame_cost(drive: Drive, tmp_path: Path) -> None:
    cost = measure_frame_cost(drive.frames[:10], tmp_path)
    assert cost.camera_frames == 10 * len(drive.rig.cameras)
    assert cost.encode_ms > 0 and cost.log_ms > 0 and cost.bytes_per_frame > 0
    assert list(tmp_path.iterdir()) == []


def _rotate(q: tuple[float, ...], v: tuple[float, float, float]) -> np.ndarray:
    x, y, z, w = q
    u, vec = np.array([x, y, z]), np.array(v, dtype=float)
    return 2 * np.dot(u, vec) * u + (w * w - np.dot(u, u)) * vec + 2 * w * np.cross(u, vec)


def test_camera_mounts_place_each_optical_frame_where_the_rig_looks(tmp_path: Path) -> None:
    """Foxglove's camera convention: optical +z forward, +x right, +y down, in the ego frame."""
    rig = CameraRig.default()
    path = tmp_path / "mounts.mcap"
    with DriveLogWriter.from_rig(path, rig) as log:
        log.write_frame(0.0, np.zeros(rig.image_shape, np.uint8))  # (cams, H, W)
    mounts = read_drive_log(path).camera_mounts
    assert set(mounts) == set(rig.names)
    for cam in rig.cameras:
        x, y, z, *q = mounts[cam.name]
        assert (x, y, z) == (cam.x_m, cam.y_m, cam.z_m)
        yaw = np.radians(cam.yaw_deg)
        np.testing.assert_allclose(
            _rotate(tuple(q), (0, 0, 1)), [np.cos(yaw), np.sin(yaw), 0], atol=1e-12
        )  # looks along yaw
        np.testing.assert_allclose(
            _rotate(tuple(q), (1, 0, 0)), [np.sin(yaw), -np.cos(yaw), 0], atol=1e-12
        )  # right
        np.testing.assert_allclose(_rotate(tuple(q), (0, 1, 0)), [0, 0, -1], atol=1e-12)  # down
    with pytest.raises(DojoConfigError, match="camera_mounts must give"):
        small_writer(tmp_path / "bad.mcap", camera_mounts=[(0, 0, 1, 0)])
    with pytest.raises(DojoConfigError, match="camera_mounts rear"):
        small_writer(tmp_path / "bad2.mcap", camera_mounts=[(0, 0, 1, 0), (0, 0, float("nan"), 0)])
    assert not (tmp_path / "bad.mcap").exists() and not (tmp_path / "bad2.mcap.partial").exists()


# ------------------------------------------------------------------ the format in one place
FIXTURE = Path(__file__).parents[1] / "fixtures" / "drivelog" / "v-2026-12.mcap"


def test_one_field_list_makes_the_json_schema_the_store_columns_and_the_record() -> None:
    """The telemetry fields are listed once (the Telemetry record); everything else follows."""
    from dataclasses import fields

    from dojo.data.store import TABLES
    from dojo.drivelog import TELEMETRY_FIELDS, schemas, telemetry

    names = [f.name for f in telemetry.FIELDS]
    assert names == list(telemetry.NAMES) and len(set(names)) == len(names) >= 9
    assert [f.name for f in fields(telemetry.Telemetry)] == ["t_s", *names, "extra"]
    assert TABLES["telemetry"] is telemetry.ARROW_SCHEMA
    assert TABLES["telemetry"].names == ["drive_id", "t_s", *names, "extra"]
    for f in telemetry.FIELDS:
        assert TABLES["telemetry"].field(f.name).type == f.arrow
        assert not f.unit or f"[{f.unit}]" in f.description  # the unit is in the name too
    # the JSON schema lists the fields of the first format version, in the same order; the
    # later ones travel as the extra fields it allows (listing them would change every log)
    in_schema = [f.name for f in telemetry.FIELDS if f.in_schema]
    assert list(schemas.TELEMETRY["properties"]) == ["timestamp", *in_schema]
    assert schemas.TELEMETRY["required"] == ["timestamp", *in_schema]
    assert list(TELEMETRY_FIELDS) == in_schema
    assert [f.name for f in telemetry.FIELDS if not f.in_schema] == [
        "gap_m",
        "leader",
        "driver",
        "target_lane",
        "v0_mps",
    ]
    for f in telemetry.FIELDS:
        if f.in_schema:
            assert schemas.TELEMETRY["properties"][f.name]["description"] == f.description


def test_the_schema_a_log_carries_is_the_one_generated(tmp_path: Path) -> None:
    """The schema bytes inside a new log and inside the 2026-12 fixture are the same."""
    from dojo.drivelog import schemas

    def telemetry_schema(path: Path) -> bytes:
        with open(path, "rb") as f:
            summary = make_reader(f).get_summary()
        assert summary is not None
        return next(s.data for s in summary.schemas.values() if s.name == "dojo.Telemetry")

    path = tmp_path / "now.mcap"
    with small_writer(path) as log:
        log.write_frame(0.0, grey(0))
    assert telemetry_schema(path) == schemas.schema_bytes(schemas.TELEMETRY)
    assert telemetry_schema(FIXTURE) == schemas.schema_bytes(schemas.TELEMETRY)


def test_a_log_written_before_the_drivelog_package_still_reads() -> None:
    """tests/fixtures/drivelog: a log written by the code of 2026-12, and what it read then."""
    expected = json.loads(FIXTURE.with_suffix(".expected.json").read_text())
    assert sha(FIXTURE) == expected["sha256"]
    log = read_drive_log(FIXTURE)
    assert log.message_counts == expected["message_counts"]
    assert {t: c.schema_name for t, c in log.channels.items()} == expected["schemas"]
    assert (log.config, log.summary) == (expected["config"], expected["summary"])
    assert list(log.cameras) == expected["cameras"]
    assert (log.width, log.height, log.rgb, log.fps, log.keyframe_interval) == (
        expected["width"],
        expected["height"],
        expected["rgb"],
        expected["fps"],
        expected["keyframe_interval"],
    )
    assert log.telemetry == expected["telemetry"] and log.events == expected["events"]
    assert log.events and log.events[0]["kind"] == "shadow_disagreement"
    assert log.poses.tolist() == expected["poses"]
    assert {k: list(v) for k, v in log.camera_mounts.items()} == expected["camera_mounts"]
    # the same telemetry, read with the official mcap library alone
    with open(FIXTURE, "rb") as f:
        raw = [json.loads(m.data) for _, _, m in make_reader(f).iter_messages(["/telemetry"])]
    assert [{k: v for k, v in r.items() if k != "timestamp"} for r in raw] == [
        {k: v for k, v in r.items() if k != "t_s"} for r in log.telemetry
    ]
    records = log.telemetry_records()
    # fields added after the fixture was written read as their defaults
    from dojo.drivelog.telemetry import NOT_LOGGED_LANE

    later = {"target_lane": NOT_LOGGED_LANE, "v0_mps": None}
    assert [r.as_dict() | r.extra for r in records] == [t | later for t in log.telemetry]
    assert all(isinstance(r.speed_mps, float) and isinstance(r.lane, int) for r in records)
    times, grids = read_occupancy(FIXTURE)
    occupancy_expected = expected["occupancy"]
    assert times.tolist() == occupancy_expected["times_s"]
    assert list(grids.shape) == occupancy_expected["shape"]
    assert hashlib.sha256(grids.tobytes()).hexdigest() == occupancy_expected["sha256"]
    for cam, want in expected["video"].items():
        packets = video_packets(FIXTURE, cam)
        assert len(packets) == want["packets"]
        assert sum(p.keyframe for p in packets) == want["keyframes"]
        data = b"".join(p.data for p in packets)
        assert hashlib.sha256(data).hexdigest() == want["bytes_sha256"]
        assert list(decode_video(FIXTURE, cam).shape) == want["decoded_shape"]
