"""OpenFiles: the loader's cache of open files, least recently used closed first."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from dojo.data.store import OpenFiles


def test_reads_ranges_keeps_few_files_open_and_closes_them(tmp_path: Path) -> None:
    fs = fsspec.filesystem("file")
    paths = []
    for i in range(3):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(bytes(range(i, i + 100)))
        paths.append(str(p))
    files = OpenFiles(limit=2)
    assert files.read(fs, paths[0], 10, 14) == bytes([10, 11, 12, 13])
    first = files.entries[paths[0]][0]
    assert files.read(fs, paths[0], 95, 200) == bytes(
        range(95, 100)
    )  # short at the end: fewer bytes
    assert files.entries[paths[0]][0] is first  # the same open file, not opened again
    files.read(fs, paths[1], 0, 1)
    files.read(fs, paths[0], 0, 1)  # 0 is now the most recently used
    files.read(fs, paths[2], 5, 6)
    assert (
        list(files.entries) == [paths[0], paths[2]] and first.closed is False
    )  # 1 was closed, 0 kept
    built = files.get("labels", lambda: (None, "a reader"))
    assert built == "a reader" and paths[0] not in files.entries  # over the limit: the oldest went
    files.close()
    assert files.entries == {} and first.closed


def test_a_missing_file_is_an_oserror_and_nothing_is_kept(tmp_path: Path) -> None:
    files = OpenFiles()
    with pytest.raises(OSError):
        files.read(fsspec.filesystem("file"), str(tmp_path / "gone.h264"), 0, 10)
    assert files.entries == {}
