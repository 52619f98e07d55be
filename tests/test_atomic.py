"""dojo.atomic: a reader sees the old file or the new one, never a torn or temporary one."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dojo import atomic
from dojo.atomic import atomic_write, fsync_folder, temporary_name, write_bytes, write_text
from dojo.errors import DojoError, StorageFullError
from tests.fleet.tmpfs import small_tmpfs


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_write_replaces_the_target_whole(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("x" * 10_000)
    assert write_text(target, '{"step": 2}') == target
    assert target.read_text() == '{"step": 2}'  # no tail of the longer old file
    assert write_bytes(target, b"\x00\x01") == target
    assert target.read_bytes() == b"\x00\x01"
    assert leftovers(tmp_path, "state.json") == []


def test_a_new_file_is_created(tmp_path: Path) -> None:
    target = tmp_path / "new.txt"
    with atomic_write(target, "w", encoding="utf-8") as f:
        f.write("héllo")
    assert target.read_text(encoding="utf-8") == "héllo"
    assert leftovers(tmp_path, "new.txt") == []


def test_the_target_is_untouched_until_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "metrics.jsonl"
    target.write_text("old\n")
    with atomic_write(target, "w") as f:
        f.write("new\n")
        f.flush()
        assert target.read_text() == "old\n"  # the new bytes sit in the temporary file
        assert temporary_name(target).exists()
    assert target.read_text() == "new\n"


def test_an_exception_mid_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old weights")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as f:
        f.write(b"half of the new weigh")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old weights"
    assert leftovers(tmp_path, "checkpoint.pt") == []


def test_an_interrupt_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(target, "w") as f:
        f.write("new")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert leftovers(tmp_path, "a.txt") == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_raises_storage_full_and_keeps_the_old_file(tmp_path: Path, code: int) -> None:
    """Simulated: the write fails the way a full disk (or an exhausted quota) fails it."""
    target = tmp_path / "state.json"
    target.write_text("old")
    full = pytest.raises(StorageFullError, match=r"state\.json.*disk is full")
    with full as info, atomic_write(target, "w") as f:
        f.write("new")
        raise OSError(code, os.strerror(code))
    assert info.value.path == str(target)
    assert isinstance(info.value, DojoError) and isinstance(info.value, OSError)
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == code
    assert target.read_text() == "old"
    assert leftovers(tmp_path, "state.json") == []


def test_other_os_errors_pass_through_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "x"
    target.write_text("old")
    with pytest.raises(OSError) as info, atomic_write(target, "w"):
        raise OSError(errno.EIO, "I/O error")
    assert not isinstance(info.value, StorageFullError) and info.value.errno == errno.EIO
    assert target.read_text() == "old"
    assert leftovers(tmp_path, "x") == []


def test_a_missing_folder_is_an_os_error_not_a_leftover(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_text(tmp_path / "no" / "such" / "file", "x")
    assert list(tmp_path.iterdir()) == []


def test_only_write_modes_are_accepted(tmp_path: Path) -> None:
    for mode in ("a", "r", "r+b", "ab"):
        refused = pytest.raises(ValueError, match="must be 'w', 'wt' or 'wb'")
        with refused, atomic_write(tmp_path / "x", mode):
            pass
    assert list(tmp_path.iterdir()) == []


def test_the_file_and_its_folder_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    folders: list[str] = []
    real_fsync, real_folder = os.fsync, atomic.fsync_folder

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    def folder_fsync(folder: str | os.PathLike[str]) -> None:
        folders.append(str(folder))
        real_folder(folder)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic, "fsync_folder", folder_fsync)
    write_text(tmp_path / "x", "data")
    assert len(synced) >= 1  # the file (the folder's fsync goes through fsync_folder)
    assert folders == [str(tmp_path)]


def test_fsync_folder_is_best_effort(tmp_path: Path) -> None:
    fsync_folder(tmp_path)  # a real folder
    fsync_folder(tmp_path / "missing")  # nothing to open: no error


def test_a_real_full_filesystem(tmp_path: Path) -> None:
    """A 64 KiB tmpfs in a private mount namespace: the new file does not fit; the old one stays."""
    unshare, mnt, mount = small_tmpfs(tmp_path, "64k")
    child = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from dojo.atomic import write_bytes
        from dojo.errors import StorageFullError

        folder = Path(sys.argv[1])
        target = folder / "weights.bin"
        write_bytes(target, b"old" * 100)
        error, path = "", None
        try:
            write_bytes(target, bytes(1 << 20))  # 1 MiB into 64 KiB
        except StorageFullError as e:
            error, path = str(e), e.path
        print(json.dumps({
            "error": error,
            "path": path,
            "same": target.read_bytes() == b"old" * 100,
            "files": sorted(p.name for p in folder.iterdir()),
        }))
        """
    )
    script = tmp_path / "fill.py"
    script.write_text(child)
    cmd = f"{mount} && exec {sys.executable} {script} {mnt}"
    run = subprocess.run([unshare, "-rm", "sh", "-c", cmd], capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()
    out = json.loads(run.stdout)
    assert "disk is full" in out["error"] and "weights.bin" in out["error"]
    assert out["path"] == str(mnt / "weights.bin")
    assert out["same"] and out["files"] == ["weights.bin"]
