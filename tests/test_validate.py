"""dojo.validate: each check returns the canonical value or one sentence naming the bad one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dojo.errors import ConfigError
from dojo.validate import choice, flag, number, positive, share, store_canonical, text, whole


# ---------------------------------------------------------------------------------- whole
@pytest.mark.parametrize("value", [0, 7, -3, 10**12, np.int64(5), np.int32(2), np.uint8(9)])
def test_whole_accepts_python_and_numpy_integers(value: object) -> None:
    out = whole("x", value)
    assert out == int(value)  # type: ignore[call-overload]
    assert type(out) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 1.0, 2.5, "3", None, np.float64(3)])
def test_whole_refuses_bools_floats_and_strings(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^loop cars=.* must be a whole number\.$"):
        whole("loop cars", value)


def test_whole_bounds_are_closed_and_named() -> None:
    assert whole("n", 1, 1) == 1
    assert whole("n", 5, 1, 5) == 5
    assert whole("n", 0, high=0) == 0
    with pytest.raises(ConfigError, match=r"^loop cars=0 must be a whole number >= 1\.$"):
        whole("loop cars", 0, 1)
    with pytest.raises(ConfigError, match=r"^n=6 must be a whole number in \[1, 5\]\.$"):
        whole("n", 6, 1, 5)
    with pytest.raises(ConfigError, match=r"^n=1 must be a whole number <= 0\.$"):
        whole("n", 1, high=0)
    with pytest.raises(ConfigError, match=r"^n=np.int64\(-1\)|^n=-1"):
        whole("n", np.int64(-1), 0)


# --------------------------------------------------------------------------------- number
@pytest.mark.parametrize(
    "value", [0, 1, -2.5, 1e-300, np.float32(0.5), np.float64(3.0), np.int64(4)]
)
def test_number_accepts_finite_reals(value: object) -> None:
    out = number("x", value)
    assert out == float(value)  # type: ignore[arg-type]
    assert type(out) is float


@pytest.mark.parametrize(
    "value", [True, np.bool_(False), math.nan, math.inf, -math.inf, np.float64("nan"), "1", None]
)
def test_number_refuses_bools_non_finite_and_strings(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^loop lr=.* must be a finite number\.$"):
        number("loop lr", value)


def test_number_closed_bounds_include_the_bound() -> None:
    assert number("x", 0.0, 0.0, 1.0) == 0.0
    assert number("x", 1.0, 0.0, 1.0) == 1.0
    with pytest.raises(ConfigError, match=r"^x=-0.1 must be >= 0 and <= 1\.$"):
        number("x", -0.1, 0.0, 1.0)
    with pytest.raises(ConfigError, match=r"^x=1.5 must be >= 0 and <= 1\.$"):
        number("x", 1.5, 0.0, 1.0)
    with pytest.raises(ConfigError, match=r"^x=3 must be <= 2\.$"):
        number("x", 3, high=2.0)


def test_number_open_bounds_exclude_the_bound() -> None:
    assert number("x", 0.25, 0.0, 0.5, low_open=True) == 0.25
    with pytest.raises(ConfigError, match=r"^alpha=0.0 must be > 0 and <= 0.5\.$"):
        number("alpha", 0.0, 0.0, 0.5, low_open=True)
    with pytest.raises(ConfigError, match=r"^x=1 must be >= 0 and < 1\.$"):
        number("x", 1, 0.0, 1.0, high_open=True)
    assert number("x", 0.999, 0.0, 1.0, high_open=True) == 0.999


def test_positive_is_an_open_lower_bound_at_zero() -> None:
    assert positive("dt", 1e-9) == 1e-9
    assert positive("dt", np.float32(2.0)) == 2.0
    for bad in (0, 0.0, -1.0):
        with pytest.raises(ConfigError, match=r"^dt=.* must be > 0\.$"):
            positive("dt", bad)
    for bad in (math.inf, math.nan, True):
        with pytest.raises(ConfigError, match=r"^dt=.* must be a finite number\.$"):
            positive("dt", bad)


# ---------------------------------------------------------------------------------- share
@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, 1.0, np.float64(0.2), np.int64(1)])
def test_share_accepts_zero_to_one_inclusive(value: object) -> None:
    out = share("s", value)
    assert out == float(value)  # type: ignore[arg-type]
    assert type(out) is float


@pytest.mark.parametrize("value", [-0.01, 1.01, math.nan, math.inf, True, np.bool_(True), "0.5"])
def test_share_refuses_outside_and_non_numbers(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^loop sample_normal=.* must be a share in \[0, 1\]\.$"):
        share("loop sample_normal", value)


# -------------------------------------------------------------------- flag, choice, text
def test_flag_takes_only_real_bools() -> None:
    assert flag("f", True) is True
    assert flag("f", False) is False
    for bad in (0, 1, "yes", None, np.bool_(True)):
        with pytest.raises(ConfigError, match=r"^loop warm_start=.* must be True or False\.$"):
            flag("loop warm_start", bad)


def test_choice_returns_the_value_or_lists_the_options() -> None:
    assert choice("size", "tiny", ("tiny", "base")) == "tiny"
    assert choice("n", 2, iter([1, 2, 3])) == 2  # any iterable, consumed once
    with pytest.raises(
        ConfigError, match=r"^size='huge' is not known; choose one of: tiny, base\.$"
    ):
        choice("size", "huge", ("tiny", "base"))


def test_text_needs_a_non_empty_string() -> None:
    assert text("out", "out/loop") == "out/loop"
    for bad in ("", "   ", None, 3, b"x"):
        with pytest.raises(ConfigError, match=r"^out=.* must be a non-empty string\.$"):
            text("out", bad)


def test_messages_show_the_value_as_repr() -> None:
    with pytest.raises(ConfigError) as info:
        whole("--cars", "3")
    assert str(info.value) == "--cars='3' must be a whole number."
    with pytest.raises(ValueError):  # ConfigError is a ValueError for older callers
        number("x", math.nan)


def test_store_canonical_turns_numpy_scalars_into_python_numbers() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Config:
        cars: object = 2
        lr: object = 1

    c = Config(np.int64(3), np.float32(0.5))
    store_canonical(c, "cars", whole("cars", c.cars))
    store_canonical(c, "lr", number("lr", c.lr))
    assert type(c.cars) is int and c.cars == 3
    assert type(c.lr) is float and c.lr == 0.5
    d = Config(4, 1)
    store_canonical(d, "lr", number("lr", d.lr))  # a plain int stays an int (same JSON)
    assert type(d.lr) is int
