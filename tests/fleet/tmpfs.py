"""A real, tiny tmpfs for full-disk tests, mounted in a private mount namespace."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def small_tmpfs(tmp_path: Path, size: str) -> tuple[str, Path, str]:
    """(unshare binary, mount point, shell command that mounts it); skips where it cannot be done.

    Run a test's child as ``[unshare, "-rm", "sh", "-c", f"{mount} && ..."]``: the mount lives
    only in that namespace, so nothing outside the test ever sees it.
    """
    unshare = shutil.which("unshare")
    mnt = tmp_path / "small"
    mnt.mkdir()
    mount = f"mount -t tmpfs -o size={size} none {mnt}"
    if (
        unshare is None
        or subprocess.run([unshare, "-rm", "sh", "-c", mount], capture_output=True).returncode != 0
    ):
        pytest.skip("cannot mount a private tmpfs here (unshare -rm not permitted)")
    return unshare, mnt, mount
