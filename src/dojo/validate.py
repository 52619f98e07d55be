"""The checks every config and public function uses on user-supplied values.

Each returns the value in its canonical type or raises :class:`~dojo.errors.ConfigError` with one
sentence that names it: ``name`` is the label the user knows (``"loop lr"``, ``"--cars"``,
``"TrainConfig.steps"``), and the message reads ``<name>=<value> must be ...``. Booleans are never
numbers here (``True`` is not a count of cars), and numbers must be finite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import TypeVar

from dojo.errors import ConfigError

T = TypeVar("T")


def _is_bool(value: object) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool too


def whole(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` (Python or numpy integer, not bool) in ``[low, high]``."""
    if _is_bool(value) or not isinstance(value, Integral):
        raise ConfigError(f"{name}={value!r} must be a whole number{_int_bounds(low, high)}.")
    n = int(value)
    if (low is not None and n < low) or (high is not None and n > high):
        raise ConfigError(f"{name}={value!r} must be a whole number{_int_bounds(low, high)}.")
    return n


def _int_bounds(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def number(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite ``float`` (not bool) within the bounds; ``*_open`` excludes the bound."""
    if _is_bool(value) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{name}={value!r} must be a finite number.")
    x = float(value)
    too_low = low is not None and (x < low or (low_open and x == low))
    too_high = high is not None and (x > high or (high_open and x == high))
    if too_low or too_high:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            parts.append(f"{'<' if high_open else '<='} {high:g}")
        raise ConfigError(f"{name}={value!r} must be {' and '.join(parts)}.")
    return x


def positive(name: str, value: object) -> float:
    """A finite number > 0 (a duration, a rate, a size)."""
    return number(name, value, 0.0, low_open=True)


def share(name: str, value: object) -> float:
    """A fraction in [0, 1]."""
    if _is_bool(value) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name}={value!r} must be a share in [0, 1].")
    return float(value)


def flag(name: str, value: object) -> bool:
    """A real ``bool`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be True or False.")
    return value


def choice(name: str, value: T, choices: Iterable[T]) -> T:
    """``value`` if it is one of ``choices``."""
    options = list(choices)
    if value not in options:
        raise ConfigError(
            f"{name}={value!r} is not known; choose one of: {', '.join(map(str, options))}."
        )
    return value


def text(name: str, value: object) -> str:
    """A non-empty string (a name, a folder)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}={value!r} must be a non-empty string.")
    return value


def store_canonical(config: object, name: str, value: object) -> None:
    """Set a frozen dataclass's field ``name`` to its checked ``value`` unless it already holds a
    plain ``int`` or ``float``: a numpy scalar passes the checks, and the config must still
    serialize to the JSON it always did (an ``int`` stays an ``int``)."""
    if type(getattr(config, name)) not in (int, float):
        object.__setattr__(config, name, value)


__all__ = [
    "choice",
    "flag",
    "number",
    "positive",
    "share",
    "store_canonical",
    "text",
    "whole",
]
