"""Training metrics: one JSON line per step, and TensorBoard event files of the same scalars.

``OUT/metrics.jsonl`` holds one line per optimizer step
(``{"step", "epoch", "loss", "lr", "samples_per_s", "data_wait_share", "step_s"}``) and one per
validation (``{"step", "val_loss", "val_windows"}``). On resume, lines after the checkpoint's
step are dropped first: those steps are run again, and the file then reads as if the run had
never stopped.

TensorBoard: ``torch.utils.tensorboard.SummaryWriter`` when the ``tensorboard`` package is
installed; otherwise :class:`EventFile`, a small writer of the same file format (TFRecord
framing with CRC-32C, ``Event`` protobufs holding scalar ``Summary`` values) so ``tensorboard
--logdir OUT/tb`` works without adding a dependency to training. Either way the files land in
``OUT/tb``.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from dojo.atomic import write_text


# ------------------------------------------------------------------------------ JSON lines
def truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep only the lines of ``path`` whose ``step`` is at most ``last_step`` (atomically)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(row, dict) and int(row.get("step", 0)) <= last_step:
            kept.append(line)
    write_text(path, "".join(f"{line}\n" for line in kept))


class JsonLines:
    """Append-only JSON lines, flushed per line so a crash loses at most the line being written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, row: Mapping[str, Any]) -> None:
        self._f.write(json.dumps(row, separators=(",", ":")) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


# ---------------------------------------------------------------------- TensorBoard events
def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli polynomial, reflected
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as TFRecord framing uses."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _field(number, 2) + _varint(len(data)) + data


def event_bytes(
    wall_time_s: float,
    step: int,
    *,
    scalars: Mapping[str, float] | None = None,
    file_version: str | None = None,
    session_start: bool = False,
) -> bytes:
    """One ``tensorflow.Event`` protobuf: wall_time (1, double), step (2, int64), and one of
    file_version (3, string), summary (5: values (1) of tag (1) and simple_value (2, float)) or
    session_log (7: status (1) START = 1; TensorBoard then drops earlier events from ``step`` on)."""
    out = _field(1, 1) + struct.pack("<d", wall_time_s) + _field(2, 0) + _varint(step)
    if file_version is not None:
        out += _bytes_field(3, file_version.encode())
    if session_start:
        out += _bytes_field(7, _field(1, 0) + _varint(1))
    if scalars:
        values = b"".join(
            _bytes_field(
                1, _bytes_field(1, tag.encode()) + _field(2, 5) + struct.pack("<f", float(v))
            )
            for tag, v in scalars.items()
        )
        out += _bytes_field(5, values)
    return out


def record_bytes(data: bytes) -> bytes:
    """TFRecord framing: length, masked CRC of the length, data, masked CRC of the data."""
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


class EventFile:
    """A TensorBoard event file of scalars, written without the tensorboard package."""

    def __init__(self, logdir: Path, purge_step: int | None = None) -> None:
        logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.dojo"
        self.path = logdir / name
        self._f = open(self.path, "ab")  # noqa: SIM115 (closed in close())
        self._f.write(record_bytes(event_bytes(time.time(), 0, file_version="brain.Event:2")))
        if purge_step is not None:  # a resumed run: hide what the stopped one logged from here on
            self._f.write(record_bytes(event_bytes(time.time(), purge_step, session_start=True)))
        self._f.flush()

    def add_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self._f.write(record_bytes(event_bytes(time.time(), step, scalars=scalars)))

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class _Scalars(Protocol):
    def add_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class _SummaryWriterScalars:
    """torch's SummaryWriter behind the same three calls."""

    def __init__(self, logdir: Path, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._w = SummaryWriter(log_dir=str(logdir), purge_step=purge_step)

    def add_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for tag, v in scalars.items():
            self._w.add_scalar(tag, v, step)

    def flush(self) -> None:
        self._w.flush()

    def close(self) -> None:
        self._w.close()


def tensorboard_writer(logdir: Path, purge_step: int | None = None) -> tuple[_Scalars, str]:
    """A scalar writer for ``logdir`` and which one it is (``"tensorboard"`` or ``"dojo"``).

    ``purge_step``: on resume, the first step written again; both writers then mark a session
    start at it, and TensorBoard drops the older events at or after that step, so the curve
    reads as one run (the JSONL file is trimmed the same way).
    """
    try:
        return _SummaryWriterScalars(logdir, purge_step), "tensorboard"
    except ImportError:  # torch.utils.tensorboard needs the tensorboard package
        return EventFile(logdir, purge_step), "dojo"


class Metrics:
    """Rank 0's metric sinks: JSON lines and TensorBoard; every other rank gets a no-op."""

    def __init__(self, out: Path | None, resume_step: int) -> None:
        self.enabled = out is not None
        self.tb_kind = "none"
        if out is None:
            return
        jsonl = out / "metrics.jsonl"
        if resume_step:
            truncate_jsonl(jsonl, resume_step)
        elif jsonl.exists():
            jsonl.unlink()  # the same run started again from step 0
        self.jsonl = JsonLines(jsonl)
        self.tb, self.tb_kind = tensorboard_writer(
            out / "tb", purge_step=resume_step + 1 if resume_step else None
        )

    def step(self, row: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self.jsonl.write(row)
        scalars = {f"train/{k}": float(v) for k, v in row.items() if k not in ("step", "epoch")}
        self.tb.add_scalars(int(row["step"]), scalars)

    def validation(
        self, step: int, val_loss: float, windows: int, extra: Mapping[str, float] | None = None
    ) -> None:
        """One validation: ``extra`` holds further ``val_*`` figures (e.g. ``val_iou``)."""
        if not self.enabled:
            return
        more = dict(extra or {})
        self.jsonl.write({"step": step, "val_loss": val_loss, "val_windows": windows, **more})
        self.tb.add_scalars(
            step,
            {
                "val/loss": val_loss,
                **{f"val/{k.removeprefix('val_')}": float(v) for k, v in more.items()},
            },
        )
        self.tb.flush()

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tb.close()


__all__ = [
    "EventFile",
    "JsonLines",
    "Metrics",
    "crc32c",
    "event_bytes",
    "record_bytes",
    "tensorboard_writer",
    "truncate_jsonl",
]
