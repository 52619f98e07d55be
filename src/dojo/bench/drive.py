"""`dojo bench drive`: fleet speed with full logging, beside PyAV encoding the same frames alone.

One call of :func:`bench_drive` measures, in the same process and run:

1. **Logged drive**: ``cars`` cars drive ``seconds`` simulated seconds each in ``mode`` with
   ``logging="full"`` into a temporary folder (removed afterwards). Every step's camera images
   are copied out in ``Fleet.on_step`` (not timed by the fleet's ``sensors_s``/``logging_s``,
   but inside its ``wall_s``: one small copy per step).
2. **Encode alone**: exactly those images, encoded with PyAV/libx264 and nothing else: one
   encoder per (car, camera) stream, a fresh one for each new drive of a car (as the writer
   opens a new log and new encoders then), in the writer's batches of one keyframe interval
   (each camera's frames of a batch in a row), the same settings as
   :class:`~dojo.drivelog.DriveLogWriter` (ultrafast, zerolatency, CRF
   :data:`~dojo.drivelog.DEFAULT_CRF`, an IDR every ``keyframe_interval_s`` at 10 fps,
   one thread). It reuses the writer's own private ``_H264Encoder`` so both sides run the very
   same encoder code; packets are thrown away (only their sizes are summed). The time includes
   opening the encoders and flushing them, as the writer's does.
3. **No logging**: the same fleet with ``logging="none"``: no files and, in modes whose
   network does not look at images, no rendering either: the pure simulation rate.

The headline is ``ratio_video_logging_to_encode`` = the fleet's ``video_logging_s`` (logging
the camera frames: encoding, base64 and JSON, MCAP records) / ``encode_alone_s``; the target is
at most :data:`TARGET_RATIO`. Beside it, ``ratio_logging_to_encode`` puts everything the fleet
spends writing logs (also occupancy labels, telemetry, poses, events, opening and closing
files and zstd) over the same encode time.
Encode alone runs :data:`ENCODE_PASSES` times and the fastest pass counts, so the ratio errs
towards logging looking costly. A short warm-up (one logged step of one car, one encoded frame) runs first and is not counted.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dojo.bench.machine import PRESET, machine_info

# The writer's encoder itself, private on purpose: the benchmark must time the same code path
# the drive logs use, with the same settings, and nothing else.
from dojo.drivelog import DEFAULT_CRF, _H264Encoder
from dojo.errors import DojoConfigError
from dojo.fleet.config import MODES, DriveConfig
from dojo.fleet.drive import Fleet
from dojo.validate import choice, positive, whole
from dojo.world.world import DT_S

TARGET_RATIO = 1.5  # logging may cost at most this many times the H.264 encode alone
ENCODE_PASSES = 3  # encode-alone passes; the fastest is the reference
MAX_CAPTURE_BYTES = 4 << 30  # the captured frames are held in memory for the encode-alone pass


def _check(cars: object, seconds: object, mode: object) -> tuple[int, float, str]:
    return whole("cars", cars, 1), positive("seconds", seconds), str(choice("mode", mode, MODES))


def _drive_config(cars: int, seconds: float, mode: str, out: Path, logging: str) -> DriveConfig:
    return DriveConfig(cars=cars, minutes=seconds / 60.0, mode=mode, out=str(out), logging=logging)


def _logged_drive(config: DriveConfig) -> tuple[Any, np.ndarray, np.ndarray, Fleet]:
    """Drive with full logging; every step's images (steps, cars, *image_shape) and drive numbers."""
    fleet = Fleet(config)
    steps, cars = config.steps, config.cars
    shape = (steps, cars, *fleet.rig.image_shape)
    size = math.prod(shape)
    if size > MAX_CAPTURE_BYTES:
        raise DojoConfigError(
            f"cars={cars} x seconds={steps * DT_S:g} needs {size / 2**30:.1f} GiB of captured "
            f"frames (limit {MAX_CAPTURE_BYTES / 2**30:.0f} GiB); use fewer cars or seconds."
        )
    images = np.empty(shape, dtype=np.uint8)
    drives = np.zeros((steps, cars), dtype=np.int64)  # which drive of its car each frame is in
    current = fleet.drive_no.copy()
    taken = 0

    def capture(_: object) -> None:
        nonlocal current, taken
        images[taken] = fleet.history[:, :, -1]  # copied: the history is rolled in place
        drives[taken] = current
        current = fleet.drive_no.copy()  # cars whose drive ended start the next one next step
        taken += 1

    fleet.on_step = capture
    summary = fleet.run()
    if summary.interrupted:
        raise KeyboardInterrupt
    if taken != steps or summary.frames_logged != steps * cars:
        raise RuntimeError(
            f"the logged drive made {taken} steps and logged {summary.frames_logged} frame steps; "
            f"expected {steps} and {steps * cars}."
        )
    return summary, images, drives, fleet


def encode_alone(
    images: np.ndarray, drives: np.ndarray, fps: float, keyint: int, rgb: bool
) -> tuple[float, int, int]:
    """Encode (steps, cars, cams, H, W[, 3]) images as the writer would; (seconds, images, bytes).

    One encoder per (car, camera), replaced when ``drives`` says the car began a new drive.
    Like the fleet's full logging, each car's frames go in batches of ``keyint`` frames (ended
    early by a new drive), each camera's frames of a batch one after another.
    """
    steps, cars, cams = images.shape[:3]
    height, width = images.shape[3:5]
    count = size = 0
    start = time.perf_counter()
    for c in range(cars):
        k = 0
        while k < steps:
            drive = drives[k, c]
            end = k + 1
            while end < steps and drives[end, c] == drive:
                end += 1
            encoders = [
                _H264Encoder(width, height, fps, keyint, DEFAULT_CRF, PRESET, rgb)
                for _ in range(cams)
            ]
            for first in range(k, end, keyint):
                last = min(first + keyint, end)
                for cam, encoder in enumerate(encoders):
                    for i in range(first, last):
                        packets = encoder.encode(images[i, c, cam], i - k)
                        size += sum(len(data) for _, data in packets)
                count += (last - first) * cams
            for encoder in encoders:
                size += sum(len(data) for _, data in encoder.flush())
            k = end
    return time.perf_counter() - start, count, size


def _warm_up(folder: Path, mode: str) -> None:
    """One logged step of one car: first-use costs (imports, tables, codec setup) stay out."""
    Fleet(_drive_config(1, DT_S, mode, folder, "full")).run()


def bench_drive(
    cars: int = 8,
    seconds: float = 30.0,
    mode: str = "manual",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every measurement of `dojo bench drive` (see the module docstring); JSON-able result."""
    cars, seconds, mode = _check(cars, seconds, mode)
    say = log or (lambda _: None)
    with tempfile.TemporaryDirectory(prefix="dojo-bench-drive-") as tmp:
        root = Path(tmp)
        say("warm-up: one logged step ...")
        _warm_up(root / "warmup", mode)
        config = _drive_config(cars, seconds, mode, root / "drives", "full")
        sim_s = config.steps * DT_S
        say(f"logged drive: {cars} cars x {sim_s:g} s simulated, logging full ...")
        logged, images, drives, fleet = _logged_drive(config)
        rig = fleet.rig
        fps = 1.0 / DT_S
        keyint = max(1, round(config.keyframe_interval_s * fps))
        say(f"PyAV/libx264 alone: the same {images.shape[0] * cars * len(rig.names):,} images ...")
        # the fastest of a few passes: a noisy neighbour can only make the reference look slower
        passes = [encode_alone(images, drives, fps, keyint, rig.rgb) for _ in range(ENCODE_PASSES)]
        encode_s, encoded, h264_bytes = min(passes)
        del images
        say(f"no-logging drive: {cars} cars x {sim_s:g} s simulated ...")
        bare = Fleet(_drive_config(cars, seconds, mode, root / "none", "none")).run()
        if bare.interrupted:
            raise KeyboardInterrupt
    cams = len(rig.names)
    width, height = rig.cameras[0].width_px, rig.cameras[0].height_px
    frame_steps = logged.frames_logged
    camera_images = frame_steps * cams
    ratio = logged.logging_s / encode_s if encode_s > 0 else math.inf
    video_ratio = logged.video_logging_s / encode_s if encode_s > 0 else math.inf
    return {
        "machine": machine_info(width, height),
        "cars": cars,
        "mode": mode,
        "cameras": list(rig.names),
        "image_size": f"{width}x{height} {'rgb' if rig.rgb else 'grey'}",
        "steps": config.steps,
        "sim_seconds_per_car": sim_s,
        "encoder": f"libx264 preset={PRESET} tune=zerolatency crf={DEFAULT_CRF} "
        f"keyint={keyint} fps={fps:g} threads=1",
        "wall_s_logged": logged.wall_s,
        "fleet_sim_seconds_per_wall_s": cars * sim_s / logged.wall_s,
        "wall_s_no_logging": bare.wall_s,
        "fleet_sim_seconds_per_wall_s_no_logging": cars * sim_s / bare.wall_s,
        "camera_frames_logged": frame_steps,
        "camera_images_logged": camera_images,
        "camera_images_per_s_logged": camera_images / logged.wall_s,
        "sensors_s": logged.sensors_s,
        "logging_s": logged.logging_s,
        "images_per_s_logging": camera_images / logged.logging_s
        if logged.logging_s > 0
        else math.inf,
        "encode_alone_s": encode_s,
        "images_encoded_alone": encoded,
        "images_per_s_encode_alone": encoded / encode_s if encode_s > 0 else math.inf,
        "video_logging_s": logged.video_logging_s,
        "ratio_video_logging_to_encode": video_ratio,
        "ratio_logging_to_encode": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": bool(video_ratio <= TARGET_RATIO),
        "files_written": len(logged.files),
        "bytes_written": logged.bytes,
        "bytes_per_image": logged.bytes / camera_images if camera_images else 0.0,
        "h264_bytes_encode_alone": h264_bytes,
    }


def format_table(result: dict[str, Any]) -> str:
    """The result as a small table, the logging-to-encode ratio on its own line."""
    m = result["machine"]
    cams = len(result["cameras"])
    out = [
        f"dojo bench drive: {result['cars']} cars x {result['sim_seconds_per_car']:g} s simulated, "
        f"mode {result['mode']}, {cams} cameras {result['image_size']}, {result['steps']} steps",
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, PyAV {m['av']}, {m['libx264']}",
        f"encoder: {result['encoder']}",
        "",
        f"{'measure':<44}{'value':>14}",
    ]
    rows: list[tuple[str, str]] = [
        ("fleet sim-s / wall-s, logging full", f"{result['fleet_sim_seconds_per_wall_s']:,.1f}"),
        (
            "fleet sim-s / wall-s, no logging",
            f"{result['fleet_sim_seconds_per_wall_s_no_logging']:,.1f}",
        ),
        ("camera images logged", f"{result['camera_images_logged']:,}"),
        ("camera images / wall-s, logged drive", f"{result['camera_images_per_s_logged']:,.0f}"),
        ("camera images / s, logging alone", f"{result['images_per_s_logging']:,.0f}"),
        ("camera images / s, PyAV encode alone", f"{result['images_per_s_encode_alone']:,.0f}"),
        ("wall s, logged drive", f"{result['wall_s_logged']:,.2f}"),
        ("  of which sensors (cameras, labels) s", f"{result['sensors_s']:,.2f}"),
        ("  of which logging s (all channels)", f"{result['logging_s']:,.2f}"),
        ("    of which camera frames s", f"{result['video_logging_s']:,.2f}"),
        ("PyAV encode alone s", f"{result['encode_alone_s']:,.2f}"),
        ("wall s, no-logging drive", f"{result['wall_s_no_logging']:,.2f}"),
        ("bytes per camera image (MCAP, all channels)", f"{result['bytes_per_image']:,.0f}"),
        (
            "bytes per camera image (H.264 alone)",
            f"{result['h264_bytes_encode_alone'] / max(result['images_encoded_alone'], 1):,.0f}",
        ),
    ]
    out += [f"{name:<44}{value:>14}" for name, value in rows]
    verdict = "met" if result["meets_target"] else "NOT met"
    out += [
        "",
        f"camera-frame logging / encode alone: {result['ratio_video_logging_to_encode']:.2f}x "
        f"(target <= {result['target_ratio']:g}x): {verdict}",
        f"all logging (video, labels, telemetry, pose, events, files) / encode alone: "
        f"{result['ratio_logging_to_encode']:.2f}x",
    ]
    return "\n".join(out)


__all__ = [
    "TARGET_RATIO",
    "bench_drive",
    "encode_alone",
    "format_table",
]
