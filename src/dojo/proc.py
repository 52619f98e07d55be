"""Child processes that end with their parent (Linux; elsewhere they may outlive it)."""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(signal_number: int) -> Callable[[], None]:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets ``signal_number`` when the
    process that started it dies, so a killed launcher or agent leaves nothing running."""

    def arm() -> None:  # pragma: no cover - runs in the child between fork and exec
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal_number)

    return arm
