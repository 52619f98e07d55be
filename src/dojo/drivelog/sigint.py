"""Holding Ctrl-C back while a drive log is inside a record, so it never lands half-way.

One :data:`GUARD` serves every writer of the process; ``with GUARD:`` around a record or the
close defers a SIGINT that arrives meanwhile to the end of the block (main thread only).
"""

from __future__ import annotations

import signal
import threading
from typing import Any


class SigintGuard:
    """A SIGINT handler that defers Ctrl-C while any writer is inside a record.

    Installed once, in front of whatever handler was there (re-wrapped if someone replaces
    it), so that entering and leaving a record costs a counter, not two ``sigaction`` calls:
    logging writes tens of thousands of records a second. Used as ``with GUARD:``; a class
    with ``__enter__`` rather than a generator, and the installed handler read from the C
    level, because both run for every record (``signal.getsignal`` alone costs ~7 us here, in
    turning the handler into an enum member).
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False
        self.previous: Any = None
        self._main = threading.main_thread()
        # signal.getsignal without the enum conversion; the public one where it is missing
        self._current = getattr(getattr(signal, "_signal", None), "getsignal", signal.getsignal)

    def handle(self, signum: int, frame: Any) -> None:
        if self.depth > 0:
            self.pending = True
        else:
            self.forward(frame)

    def forward(self, frame: Any) -> None:
        previous = self.previous
        if callable(previous):
            previous(signal.SIGINT, frame)  # the default handler raises KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.raise_signal(signal.SIGINT)

    def armed(self) -> bool:
        """Make sure the guard is SIGINT's handler; False where it cannot be (not the main thread)."""
        if threading.current_thread() is not self._main:
            return False
        current = self._current(signal.SIGINT)
        if current == self.handle:
            return True
        if current is None:  # a handler installed outside Python: leave it alone
            return False
        self.previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self.handle)
        return True

    def __enter__(self) -> None:
        """Hold back Ctrl-C until the block is done, so it never lands inside a record.

        Only the main thread can own signal handlers; elsewhere the block runs unprotected.
        """
        if threading.current_thread() is self._main:
            self.armed()
            self.depth += 1

    def __exit__(self, *exc: object) -> None:
        if threading.current_thread() is not self._main:
            return
        self.depth -= 1
        if self.depth == 0 and self.pending:
            self.pending = False
            self.forward(None)


GUARD = SigintGuard()

__all__ = ["GUARD", "SigintGuard"]
