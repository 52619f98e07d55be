"""H.264 for drive logs: the libx264 encoder settings, access-unit parsing and decoding (PyAV).

libx264 through PyAV: 4:2:0, full range, BT.601, no B-frames, one packet per frame
(``tune=zerolatency``), an IDR keyframe with SPS and PPS every keyframe interval, one thread per
encoder so the bytes do not depend on the machine. Grey images become the luma plane with
neutral chroma, so grey pixels survive exactly up to the codec's quantisation.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from dojo.errors import DojoConfigError

VIDEO_FORMAT = "h264"
DEFAULT_CRF = 18  # libx264 constant rate factor: 0 lossless (not browser-decodable) .. 51 worst
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
_NAL_IDR, _NAL_SPS, _NAL_PPS = 5, 7, 8
# full range, BT.601 (AVCOL_RANGE_JPEG, AVCOL_SPC/PRI/TRC_SMPTE170M): grey levels map 1:1 to luma
_RANGE_FULL, _BT601 = 2, 6


class _H264Encoder:
    """libx264 through PyAV: one (H, W) or (H, W, 3) uint8 image in, one access unit out."""

    def __init__(
        self, width: int, height: int, fps: float, keyint: int, crf: int, preset: str, rgb: bool
    ) -> None:
        try:
            ctx = cast(VideoCodecContext, av.CodecContext.create("libx264", "w"))
        except (av.FFmpegError, ValueError) as e:
            raise DojoConfigError(
                f"PyAV has no libx264 H.264 encoder ({e}); install the PyPI 'av' wheel, which bundles it."
            ) from e
        rate = Fraction(fps).limit_denominator(1001)
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.framerate, ctx.time_base = rate, 1 / rate
        ctx.gop_size, ctx.max_b_frames, ctx.thread_count = keyint, 0, 1
        ctx.color_range, ctx.colorspace = _RANGE_FULL, _BT601
        ctx.color_primaries, ctx.color_trc = _BT601, _BT601
        ctx.options = {
            "preset": preset,
            "tune": "zerolatency",  # no lookahead, no frame threads: a packet per frame at once
            "crf": str(crf),
            # IDR every keyint frames and nowhere else, SPS/PPS in each, no B-frames, Annex B
            "x264-params": f"keyint={keyint}:scenecut=0:bframes=0:repeat-headers=1:annexb=1",
        }
        ctx.open()
        self._ctx, self._rgb, self._w, self._h = ctx, rgb, width, height
        self._reformatter = VideoReformatter()
        self._yuv = np.full(width * height * 3 // 2, 128, dtype=np.uint8)  # neutral chroma

    def encode(
        self, image: np.ndarray, index: int, keyframe: bool = False
    ) -> list[tuple[int, bytes]]:
        """(pts, Annex B bytes) of the packets out after frame ``index``: one with these settings.

        ``keyframe`` forces an IDR frame here (x264 turns a forced I picture into an IDR when
        open GOPs are off, its default), so decoding can start at this frame.
        """
        if self._rgb:
            frame = self._reformatter.reformat(  # one reformatter keeps its scaler: 5x faster
                av.VideoFrame.from_ndarray(image, format="rgb24"),
                format="yuv420p",
                dst_colorspace=Colorspace.ITU601,
                dst_color_range=ColorRange.JPEG,
            )
        else:
            self._yuv[: self._w * self._h] = image.reshape(-1)
            frame = av.VideoFrame.from_ndarray(self._yuv.reshape(-1, self._w), format="yuv420p")
        frame.color_range = _RANGE_FULL
        frame.pts = index
        if keyframe:
            frame.pict_type = PictureType.I
        return [(int(p.pts or 0), bytes(p)) for p in self._ctx.encode(frame)]

    def flush(self) -> list[tuple[int, bytes]]:
        return [(int(p.pts or 0), bytes(p)) for p in self._ctx.encode(None)]


def nal_unit_types(data: bytes) -> list[int]:
    """Types of the NAL units of an Annex B byte stream (5: IDR slice, 7: SPS, 8: PPS)."""
    types, i = [], data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        types.append(data[i + 3] & 0x1F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


def is_keyframe(data: bytes) -> bool:
    """Whether an access unit starts a GOP that decodes on its own: IDR slice with SPS and PPS."""
    types = set(nal_unit_types(data))
    return {_NAL_IDR, _NAL_SPS, _NAL_PPS} <= types


def decode_access_units(units: Iterable[bytes], rgb: bool) -> np.ndarray:
    """Decode H.264 access units (the first a keyframe) to uint8 (T, H, W) or (T, H, W, 3)."""
    ctx = cast(VideoCodecContext, av.CodecContext.create("h264", "r"))
    ctx.thread_count = 1
    frames: list[np.ndarray] = []

    def take(decoded: list[av.VideoFrame]) -> None:
        for frame in decoded:
            if rgb:
                frames.append(frame.to_ndarray(format="rgb24"))
            else:  # yuv420p: rows [0, H) of the planar layout are the luma plane
                frames.append(frame.to_ndarray()[: frame.height].copy())

    for data in units:
        take(ctx.decode(av.Packet(data)))
    take(ctx.decode(None))
    if not frames:
        return np.zeros((0, 0, 0), dtype=np.uint8)
    return np.stack(frames)
