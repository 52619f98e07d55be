"""A tenant's code archive (tar.gz or zip), checked member by member as it is unpacked into its own
folder.

Every member is checked before its bytes are written: a regular file or a folder, a relative path
of harmless components (:func:`dojo.service.store.storage.safe_name`: no ``..``, no absolute
path, no hidden or odd names), no links or devices of any kind (a link can point out of the
folder), no two members with one name, at most ``MAX_FILES`` of them. The unpacked size is
bounded by the caller's ``max_bytes`` (the tenant's room) and, against a zip bomb, by
``MAX_RATIO`` times the archive's size: both are counted on the bytes actually written, not
on what the archive declares. Any refusal is an :class:`~dojo.service.api.problems.ApiError`
(422, 413 for a zip bomb, or the caller's quota answer) naming the member, and leaves nothing
behind.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dojo.service.api.problems import ApiError
from dojo.service.store.storage import safe_name

MAX_FILES = 10_000
MAX_DEPTH = 16  # folders deep
MAX_RATIO = 100  # unpacked bytes per archive byte beyond SMALL_BYTES: more is a zip bomb
SMALL_BYTES = 16 << 20  # any archive may unpack to this much, whatever its ratio
CHUNK = 1 << 20
GZIP_MAGIC, ZIP_MAGIC = b"\x1f\x8b", b"PK\x03\x04"


@dataclass(frozen=True)
class Unpacked:
    files: int
    size_bytes: int  # of the unpacked files


def _member_path(name: str) -> tuple[str, ...]:
    """A member's path as checked components (a folder's trailing slash dropped)."""
    shown = repr(name[:120])
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ApiError(422, f"Archive member {shown} has an absolute path; paths must be relative.")
    parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
    if ".." in parts:
        raise ApiError(422, f"Archive member {shown} climbs out of the archive ('..').")
    if not parts:
        raise ApiError(422, f"Archive member {shown} has an empty path.")
    if len(parts) > MAX_DEPTH:
        raise ApiError(422, f"Archive member {shown} is more than {MAX_DEPTH} folders deep.")
    for part in parts:
        try:
            safe_name(part)
        except ApiError as e:
            raise ApiError(422, f"Archive member {shown}: {e.detail}") from None
    return parts


@dataclass(frozen=True)
class _Member:
    parts: tuple[str, ...]
    is_dir: bool
    size: int  # declared [bytes]; the bytes written are counted again
    open: object  # () -> a binary file of its bytes (files only)


def _tar_members(f: IO[bytes]) -> Iterator[_Member]:
    try:
        tar = tarfile.open(fileobj=f, mode="r:gz")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ApiError(422, f"The archive is not a readable tar.gz ({e}).") from None
    with tar:
        try:
            for m in tar:
                parts = _member_path(m.name)
                if not (m.isfile() or m.isdir()):
                    kind = "a link" if (m.issym() or m.islnk()) else "not a regular file"
                    raise ApiError(
                        422,
                        f"Archive member {m.name[:120]!r} is {kind}; code archives hold only "
                        "files and folders.",
                    )
                yield _Member(parts, m.isdir(), m.size, lambda m=m: tar.extractfile(m))
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ApiError(422, f"The archive is truncated or corrupt ({e}).") from None


def _zip_members(f: IO[bytes]) -> Iterator[_Member]:
    try:
        zf = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ApiError(422, f"The archive is not a readable zip ({e}).") from None
    with zf:
        for info in zf.infolist():
            parts = _member_path(info.filename)
            mode = info.external_attr >> 16
            file_type = mode & 0o170000
            if file_type not in (0, 0o100000, 0o040000):  # unset, a regular file, a folder
                raise ApiError(
                    422,
                    f"Archive member {info.filename[:120]!r} is a link or special file; code "
                    "archives hold only files and folders.",
                )
            yield _Member(parts, info.is_dir(), info.file_size, lambda info=info: zf.open(info))


@contextmanager
def _members(path: Path) -> Iterator[Iterator[_Member]]:
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head.startswith(GZIP_MAGIC):
            yield _tar_members(f)
        elif head.startswith(ZIP_MAGIC):
            yield _zip_members(f)
        else:
            raise ApiError(
                422, "The upload is not a code archive: send a .tar.gz or a .zip of a folder."
            )


def unpack(
    archive: Path, dest: Path, *, max_bytes: int, over_quota: Callable[[int], ApiError]
) -> Unpacked:
    """Check ``archive`` and unpack it into ``dest`` (which must not exist); see the module doc.

    One pass: each member is checked (path, type, a name taken twice or as both a file and a
    folder, the declared sizes so far) before its bytes are written, and the bytes written are
    counted. ``max_bytes``: the tenant's room; ``over_quota(size)`` is raised past it. On any
    refusal ``dest`` is removed, so nothing is left half-unpacked.
    """
    cap = min(max_bytes, max(SMALL_BYTES, MAX_RATIO * archive.stat().st_size))

    def too_big(size: int) -> ApiError:
        if cap < max_bytes:
            return ApiError(
                413,
                f"The archive unpacks to more than {cap} bytes, over {MAX_RATIO} times its own "
                "size (a zip bomb?); it was not stored.",
                limit=cap,
            )
        return over_quota(size)

    seen: set[tuple[str, ...]] = set()
    files: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()  # every member's parents
    count = declared = written = 0
    dest.mkdir(parents=True)
    try:
        with _members(archive) as members:
            for m in members:
                shown = "/".join(m.parts)
                if m.parts in seen:
                    raise ApiError(422, f"Archive member {shown!r} appears twice.")
                parents = [m.parts[:i] for i in range(1, len(m.parts))]
                if (not m.is_dir and m.parts in folders) or any(p in files for p in parents):
                    raise ApiError(422, f"Archive member {shown!r} is both a file and a folder.")
                declared += m.size
                if declared > cap:  # stop before unpacking (or, for a tar.gz, reading) the rest
                    raise too_big(declared)
                seen.add(m.parts)
                folders.update(parents)
                target = dest.joinpath(*m.parts)
                if m.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                files.add(m.parts)
                count += 1
                if count > MAX_FILES:
                    raise ApiError(422, f"The archive holds more than {MAX_FILES} files.")
                target.parent.mkdir(parents=True, exist_ok=True)
                src = m.open()  # type: ignore[operator]
                with src, open(target, "xb") as out:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > cap:
                            raise too_big(written)
                        out.write(chunk)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return Unpacked(files=count, size_bytes=written)


def files_under(folder: Path) -> list[str]:
    """The unpacked files' paths, relative and sorted (for a code listing)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


__all__ = ["MAX_FILES", "MAX_RATIO", "Unpacked", "files_under", "unpack"]
