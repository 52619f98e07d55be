"""Dojo's exceptions, one type per kind of failure.

Every error Dojo raises on purpose derives from :class:`DojoError`, and its message is one
sentence a user can act on (it names the bad value, file or limit). Code that must react to a
kind of failure catches the type and reads its attributes; no code parses a message.

``DojoConfigError`` is the name the project used before the kinds were split; it stays as an
alias of :class:`ConfigError`.
"""

from __future__ import annotations

from typing import Any


class DojoError(Exception):
    """The root of every error Dojo raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # keep keyword attributes (reason, path, ...) when an error crosses a process boundary
        # (ingest and loader workers send their errors back pickled)
        return (type(self), self.args, self.__dict__)


class ConfigError(DojoError, ValueError):
    """A user-supplied value is invalid; the message names the value and what is allowed."""


DojoConfigError = ConfigError


class CorruptLogError(DojoError, ValueError):
    """A drive log cannot be read: truncated, not MCAP, or a message that does not decode.

    ``reason`` is a short machine-readable word (``truncated``, ``not_mcap``, ``bad_message``,
    ...) that ingest records when it quarantines the file; ``path`` names the file when known.
    """

    def __init__(self, message: str, *, reason: str = "corrupt", path: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.path = path


class StorageFullError(DojoError, OSError):
    """A write failed because the disk (or the quota) is full; what was stored before is intact."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class TrainingDivergedError(DojoError, RuntimeError):
    """Training produced a non-finite loss or weights; ``step`` is where it was seen."""

    def __init__(self, message: str, *, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


class ServiceError(DojoError, RuntimeError):
    """The training service refused or failed a request; ``status`` is its HTTP status if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClusterError(DojoError, RuntimeError):
    """A Ray cluster cannot be reached, does not match this machine, or was lost mid-run.

    ``address`` names the cluster (``HOST:PORT`` or ``auto``).
    """

    def __init__(self, message: str, *, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


__all__ = [
    "ClusterError",
    "ConfigError",
    "CorruptLogError",
    "DojoConfigError",
    "DojoError",
    "ServiceError",
    "StorageFullError",
    "TrainingDivergedError",
]
