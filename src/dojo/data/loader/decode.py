"""Decoding a clip's video: the frames its windows need, once each, into reused memory.

Each camera's stream is decoded sequentially from the keyframe at or before the clip's first
needed frame, over one byte range read from a file the shard keeps open. Grey rigs take the
luma plane as it is (the fleet writes grey as luma with neutral chroma): what
:func:`dojo.drivelog.decode_video` returns, and far cheaper than a pixel-format conversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

from dojo.data.buffers import BufferPool
from dojo.data.loader.plan import Rig, _Clip
from dojo.data.store import OpenFiles, Store
from dojo.errors import ConfigError

_LUMA_FORMATS = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray")


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
    into memory from ``kept.pool``; a ConfigError names the clip and camera whose video is
    missing or does not decode.
    """
    lo, hi, starts = _decode_span(clip, windows, frames)
    out = kept.pool.tensors([(len(rig.cameras), hi - lo + 1, *rig.image_shape(1)[2:])])[0].numpy()
    for c, cam in enumerate(rig.cameras):
        path = store.path("drives", clip.drive_id, "video", f"{cam}.h264")
        first = int(starts[c])
        if first < 0:
            raise ConfigError(
                f"Clip {clip.clip_id} camera {cam!r} has no keyframe at or before frame {int(clip.frame[lo])}; "
                "the store is damaged."
            )
        offsets = clip.byte_offset[c, first : hi + 1]
        sizes = clip.byte_size[c, first : hi + 1]
        base, end = int(offsets.min()), int((offsets + sizes).max())
        try:
            data = kept.files.read(store.fs, path, base, end)
        except OSError as e:
            raise ConfigError(
                f"Clip {clip.clip_id} camera {cam!r}: cannot read {path} ({e})."
            ) from e
        if len(data) != end - base:
            raise ConfigError(
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
            raise ConfigError(
                f"Clip {clip.clip_id} camera {cam!r}: the video in {path} does not decode ({e})."
            ) from e
        if got != hi + 1 - first:
            raise ConfigError(
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
