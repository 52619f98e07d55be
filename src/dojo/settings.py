"""One declaration per setting: a config dataclass field carries its default, help, flag and unit.

A stage's config (``DriveConfig``, ``TrainConfig``, ``EvalConfig``, ``LoopConfig``) declares each
setting once with :func:`setting`; from those fields this module generates

* the command line: :func:`add_flags` (name, type, default, help; bool switches, optional values,
  values typed as text such as a window ``-3s:+2s``) and :func:`from_args` back to the config;
* the argv that reproduces a config's values (:func:`argv_for`), which the service's agent runs;
* a pydantic model of a subset of the fields (:func:`spec_model`), the service's job specs, whose
  defaults are the config's and whose extra bounds are the service's own.

A path names a field, ``"cars"``, or a field of a nested config, ``"drive.cars"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass
from typing import Any, Literal, Union

from dojo.errors import ConfigError

KEY = "dojo.setting"


@dataclass(frozen=True)
class Setting:
    """What the command line and the service need to know of one field."""

    help: str  # may use %(default)s, as argparse does
    flag: str | None = None  # default: "--" + the field's name with dashes
    unit: str = ""  # e.g. "s", "min", "windows": shown in the service's description
    choices: tuple[str, ...] = ()  # the allowed values: a Literal in the service's spec
    cli_choices: bool = False  # argparse itself refuses other values (`dojo train --net`)
    metavar: str | None = None
    required: bool = False  # the flag must be given (the field has no default worth showing)
    cli_default: str | None = None  # the flag's default as typed, where the value is parsed
    parse: Callable[[str], Any] | None = None  # flag text -> value (a window, a list)
    show: Callable[[Any], str] | None = None  # value -> flag text (argv_for)
    negate: str | None = None  # a True default turned off by this flag (--no-progress)


def setting(default: Any = MISSING, *, default_factory: Any = MISSING, help: str, **kw: Any) -> Any:
    """A dataclass field declared with its :class:`Setting` (``help``, ``flag``, ``unit`` ...)."""
    meta = {KEY: Setting(help=help, **kw)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field(cls: type, name: str) -> dataclasses.Field[Any]:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def resolve(cls: type, path: str) -> tuple[type, dataclasses.Field[Any], Setting]:
    """The config class, field and setting that ``path`` names (``"train.lr"`` through nesting)."""
    *outer, name = path.split(".")
    for part in outer:
        cls = _hints(cls)[part]
    f = _field(cls, name)
    meta = f.metadata.get(KEY)
    if meta is None:
        raise KeyError(f"{cls.__name__}.{name} is not declared with setting()")
    return cls, f, meta


def default_of(source: Any, path: str) -> Any:
    """The default of ``path``: read from ``source`` when it is a config, else the field's."""
    if not isinstance(source, type):
        value = source
        for part in path.split("."):
            value = getattr(value, part)
        return value
    _, f, _ = resolve(source, path)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def flag_of(path: str, meta: Setting) -> str:
    return meta.flag or "--" + path.rsplit(".", 1)[-1].replace("_", "-")


def _value_type(hint: Any) -> Any:
    """``int`` for ``int | None``; the type argparse converts a flag's text with."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (Union, types.UnionType) and len(args) == 1:
        return args[0]
    return hint


def add_flags(
    parser: argparse.ArgumentParser,
    source: Any,
    paths: Iterable[str],
    *,
    flags: Mapping[str, str] | None = None,
    helps: Mapping[str, str | None] | None = None,
    choices: bool = True,
) -> None:
    """Add a flag per path, in order; ``source`` (a config class or instance) gives the defaults.

    ``flags``/``helps`` rename a flag or reword its help where a command exposes a nested field
    under its own name (``dojo loop --train-steps`` is ``train.steps``); ``choices=False`` leaves
    the values to the config's own check. Each flag's dest is its path, so :func:`from_args`
    finds it.
    """
    cls = source if isinstance(source, type) else type(source)
    for path in paths:
        owner, f, meta = resolve(cls, path)
        flag = (flags or {}).get(path) or flag_of(path, meta)
        text = (helps or {}).get(path, meta.help) or None
        default = default_of(source, path)
        hint = _value_type(_hints(owner)[f.name])
        if hint is bool:
            if meta.negate:
                parser.add_argument(meta.negate, dest=path, action="store_false", help=text)
            else:
                parser.add_argument(flag, dest=path, action="store_true", help=text)
            continue
        kw: dict[str, Any] = {"dest": path, "help": text}
        kw["metavar"] = meta.metavar or flag.lstrip("-").replace("-", "_").upper()
        if meta.required:
            kw["required"] = True
        else:
            kw["default"] = meta.cli_default if meta.cli_default is not None else default
        if meta.cli_choices and choices:
            kw["choices"] = meta.choices
            kw.pop("metavar")
        if meta.parse is None and hint in (int, float):
            kw["type"] = hint
        parser.add_argument(flag, **kw)


def values_from_args(
    cls: type, args: argparse.Namespace, paths: Iterable[str] | None = None
) -> dict[str, Any]:
    """The values of ``paths`` (default: every declared field of ``cls``) that ``args`` holds,
    nested as ``{"drive": {"cars": 4}, "loops": 2}``; text flags are parsed by their setting."""
    if paths is None:  # every declared field, and the nested ones add_flags added
        paths = [f.name for f in dataclasses.fields(cls) if KEY in f.metadata]
        paths += [name for name in vars(args) if "." in name]
    out: dict[str, Any] = {}
    for path in paths:
        if not hasattr(args, path):
            continue
        _, _, meta = resolve(cls, path)
        value = getattr(args, path)
        if meta.parse is not None and isinstance(value, str):
            try:
                value = meta.parse(value)
            except (ConfigError, ValueError) as e:
                raise ConfigError(f"{flag_of(path, meta)} {value!r}: {e}") from None
        *outer, name = path.split(".")
        box = out
        for part in outer:
            box = box.setdefault(part, {})
        box[name] = value
    return out


def from_args(
    cls: type[Any], args: argparse.Namespace, paths: Iterable[str] | None = None, **fixed: Any
) -> Any:
    """``cls`` built from the flags :func:`add_flags` added (plus ``fixed`` values).

    A nested config is built by the class's ``from_dict`` when it has one (the loop's, which
    applies its overrides), else from the nested values alone.
    """
    values = {**values_from_args(cls, args, paths), **fixed}
    builder = getattr(cls, "from_dict", None)
    return builder(values) if builder is not None else from_dict(cls, values)


def from_dict(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """``cls`` from plain (JSON) values: nested dicts become their configs, lists tuples."""
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no setting {', '.join(map(repr, unknown))}.")
    kw: dict[str, Any] = {}
    for name, value in data.items():
        hint = _value_type(hints[name])
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = from_dict(hint, value)  # type: ignore[arg-type]
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        kw[name] = value
    return cls(**kw)


def argv_for(
    cls: type,
    values: Mapping[str, Any],
    paths: Iterable[str],
    flags: Mapping[str, str] | None = None,
) -> list[str]:
    """The flags that give ``values`` (keyed by path) on the command line of ``cls``'s stage.

    A value of None or an empty list is left out (the stage's default then applies); a bool
    becomes its switch.
    """
    argv: list[str] = []
    for path in paths:
        if path not in values or values[path] is None or values[path] == []:
            continue
        owner, f, meta = resolve(cls, path)
        flag = (flags or {}).get(path) or flag_of(path, meta)
        value = values[path]
        if _value_type(_hints(owner)[f.name]) is bool:
            if meta.negate and not value:
                argv.append(meta.negate)
            elif not meta.negate and value:
                argv.append(flag)
            continue
        text = meta.show(value) if meta.show is not None else str(value)
        # text such as "-3s:+2s" would read as a flag of its own (a negative number does not)
        argv += [f"{flag}={text}"] if text.startswith("-") and not _numeric(text) else [flag, text]
    return argv


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def spec_model(
    name: str,
    base: type[Any],
    source: Any,
    fields: Mapping[str, tuple[str, Mapping[str, Any]]],
    extra: Mapping[str, tuple[Any, Any]] | None = None,
) -> Any:
    """A pydantic model of the settings ``fields`` names: ``{path: (api_name, bounds)}``.

    Each field's type, default and description come from the config (``source``: a class or an
    instance, whose values are the defaults); ``bounds`` are the service's own pydantic
    constraints (``ge``, ``le``, ``max_length``; ``annotation`` for a stricter type, ``required``
    where the service asks for what the stage may leave out).
    ``extra``: fields only the service has, ``{name: (annotation, FieldInfo)}``.
    """
    from pydantic import Field, create_model

    cls = source if isinstance(source, type) else type(source)
    model: dict[str, Any] = {}
    for path, (api_name, bounds) in fields.items():
        owner, f, meta = resolve(cls, path)
        bounds = dict(bounds)
        hint = bounds.pop("annotation", None)
        if hint is None:
            hint = _hints(owner)[f.name]
            if meta.choices:
                hint = Literal[meta.choices]
        default = default_of(source, path)
        if isinstance(default, tuple):
            default = list(default)
        text = meta.help.replace(" (default %(default)s)", "").replace("%%", "%")
        if meta.unit:
            text += f" [{meta.unit}]"
        no_default = f.default is MISSING and f.default_factory is MISSING
        if bounds.pop("required", False) or no_default:
            model[api_name] = (hint, Field(description=text, **bounds))
        else:
            model[api_name] = (hint, Field(default, description=text, **bounds))
    model.update(extra or {})
    return create_model(name, __base__=base, **model)


__all__ = [
    "Setting",
    "add_flags",
    "argv_for",
    "default_of",
    "from_args",
    "from_dict",
    "resolve",
    "setting",
    "spec_model",
    "values_from_args",
]
