"""dojo.settings: flags, configs and service specs generated from one declaration per field."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from dojo.errors import ConfigError
from dojo.settings import add_flags, argv_for, from_args, from_dict, setting, spec_model


def _pair(text: str) -> tuple[float, float]:
    lo, hi = text.split(":")
    return float(lo), float(hi)


@dataclass(frozen=True)
class _Inner:
    size: int = setting(3, help="inner size (default %(default)s)")


@dataclass(frozen=True)
class _Config:
    cars: int = setting(8, help="fleet size (default %(default)s)", unit="cars")
    rate_hz: float = setting(10.0, help="how often", flag="--rate")
    mode: str = setting("a", help="a | b", choices=("a", "b"), cli_choices=True)
    label: str | None = setting(None, help="an optional name")
    fast: bool = setting(False, help="go fast")
    progress: bool = setting(True, help="no bar", negate="--no-progress")
    window: tuple[float, float] = setting(
        (-1.0, 2.0),
        help="window",
        cli_default="-1:2",
        parse=_pair,
        show=lambda w: f"{w[0]:g}:{w[1]:g}",
    )
    inner: _Inner = _Inner()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    add_flags(
        p,
        _Config,
        ["cars", "rate_hz", "mode", "label", "fast", "progress", "window", "inner.size"],
        flags={"inner.size": "--inner-size"},
    )
    return p


def test_flags_take_their_names_defaults_and_help_from_the_fields() -> None:
    text = _parser().format_help()
    assert "--cars CARS fleet size (default 8)" in " ".join(text.split())
    for words in ("--rate RATE", "how often", "{a,b}", "--label LABEL", "--fast", "go fast"):
        assert words in text
    assert "--no-progress" in text and "--inner-size INNER_SIZE" in text
    assert "inner size (default 3)" in text
    args = _parser().parse_args([])
    config = from_args(_Config, args, ["cars", "rate_hz", "mode", "label", "fast", "progress"])
    assert config == _Config()


def test_values_from_flags_build_the_config_nested_ones_too() -> None:
    argv = ["--cars", "3", "--rate", "2.5", "--mode", "b", "--label", "x", "--fast"]
    argv += ["--no-progress", "--window=-2:4", "--inner-size", "7"]
    config = from_args(_Config, _parser().parse_args(argv))
    assert config == _Config(3, 2.5, "b", "x", True, False, (-2.0, 4.0), _Inner(7))
    with pytest.raises(SystemExit):  # argparse refuses a choice it checks, as before
        _parser().parse_args(["--mode", "c"])


def test_a_bad_flag_value_is_one_config_error_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--window 'nope': ") as err:
        from_args(_Config, _parser().parse_args(["--window", "nope"]))  # not two numbers
    assert "\n" not in str(err.value)


def test_argv_for_gives_back_the_flags_of_the_values() -> None:
    paths = ["cars", "rate_hz", "label", "fast", "progress", "window", "inner.size"]
    config = _Config(cars=5, fast=True, progress=False, window=(0.0, 3.0), inner=_Inner(9))
    values = {p: getattr(config, p) for p in paths[:-1]} | {"inner.size": 9}
    argv = argv_for(_Config, values, paths, {"inner.size": "--inner-size"})
    assert argv == [
        "--cars", "5", "--rate", "10.0", "--fast", "--no-progress", "--window", "0:3",
        "--inner-size", "9",
    ]  # fmt: skip
    assert from_args(_Config, _parser().parse_args(argv)) == config


def test_from_dict_reads_json_values_and_refuses_unknown_names() -> None:
    config = from_dict(_Config, {"window": [0.0, 1.0], "inner": {"size": 2}})
    assert config.window == (0.0, 1.0) and config.inner == _Inner(2)
    with pytest.raises(ConfigError, match="_Config has no setting 'speed'"):
        from_dict(_Config, {"speed": 1})


def test_a_spec_model_has_the_configs_defaults_and_the_services_bounds() -> None:
    from pydantic import BaseModel, ConfigDict, ValidationError

    class Base(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

    Spec = spec_model("Spec", Base, _Config, {"cars": ("cars", {"le": 10}), "mode": ("mode", {})})
    assert Spec().model_dump() == {"cars": 8, "mode": "a"}
    schema = Spec.model_json_schema()["properties"]
    assert schema["cars"]["maximum"] == 10 and schema["cars"]["description"] == "fleet size [cars]"
    assert schema["mode"]["enum"] == ["a", "b"]
    for bad in ({"cars": 11}, {"cars": "3"}, {"mode": "c"}, {"speed": 1}):
        with pytest.raises(ValidationError):
            Spec.model_validate(bad)
