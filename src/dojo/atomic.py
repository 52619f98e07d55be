"""Atomic writes: a reader (or a run resumed after ``kill -9``) sees the old file or the new one.

One recipe for every file Dojo replaces: write to a temporary name in the same folder, flush and
fsync it, ``os.replace`` it over the target, then fsync the folder so the rename itself survives a
power cut. A failure removes the temporary file and leaves the target as it was. A full disk (or
quota) raises :class:`~dojo.errors.StorageFullError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dojo.errors import StorageFullError

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})  # no space, or no quota left


def temporary_name(path: Path) -> Path:
    """Where ``path`` is written before the rename: same folder, unique per process."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "wb", **open_kw: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on a clean exit it replaces ``path`` durably."""
    target = Path(path)
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write mode={mode!r} must be 'w', 'wt' or 'wb'.")
    tmp = temporary_name(target)
    try:
        with open(tmp, mode, **open_kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        _remove_quietly(tmp)
        if e.errno in DISK_FULL:
            raise StorageFullError(
                f"Cannot write {target}: the disk is full ({e.strerror}); the previous file, if any, is intact.",
                path=str(target),
            ) from e
        raise
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_folder(target.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make a rename in ``folder`` durable (best effort: some filesystems cannot fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


__all__ = [
    "DISK_FULL",
    "atomic_write",
    "fsync_folder",
    "temporary_name",
    "write_bytes",
    "write_text",
]
