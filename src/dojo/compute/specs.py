"""System specs: the published figures of each accelerator family, read from ``specs/*.toml``.

A family is a chip and the levels built on it (D1 -> tile -> tray -> cabinet -> ExaPOD; GPU ->
node -> rack). Every figure in the files is ``{ value = ..., source = "..." }``; :class:`Family`
keeps the values typed and the sources beside them (``Family.sources``), so a plan can say
where each number came from. The CPU family of this machine is built from the calibration
file instead (see :mod:`dojo.compute.calibration`).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from dojo.errors import DojoConfigError

SPEC_FILES = ("dojo.toml", "h100.toml", "a100.toml")


@dataclass(frozen=True)
class Level:
    """One level of a hierarchy; level 0 is the chip.

    ``fanout``: blocks of the level below in one block of this level (1 for the chip).
    ``uplink_gbs`` [GB/s, each way]: bandwidth of one block of this level to its ring
    neighbours in the level above; ``latency_us`` [us]: per ring step at that hop.
    ``overhead_w`` [W]: power of one block beyond its chips (power delivery, hosts, NICs).
    ``dram_gb``, ``dram_bw_gbs``: memory attached at this level (Dojo's interface processors).
    Only the chip has ``tflops`` (per precision), ``power_w``, ``memory_gb`` and ``memory_bw_gbs``.
    """

    name: str
    part: str
    unit: str = ""  # the name a system is asked for by (``tile``, ``h100-node``)
    fanout: int = 1
    uplink_gbs: float = 0.0
    latency_us: float = 0.0
    overhead_w: float = 0.0
    dram_gb: float = 0.0
    dram_bw_gbs: float = 0.0
    tflops: Mapping[str, float] = field(default_factory=dict)
    power_w: float = 0.0
    memory_gb: float = 0.0
    memory_bw_gbs: float = 0.0


@dataclass(frozen=True)
class ModelDefaults:
    """The performance model's terms for a family (fitted for the CPU, assumed elsewhere).

    ``efficiency``: achieved / peak FLOP/s of the compute; ``comm_efficiency``: achieved /
    nominal link bandwidth of the all-reduce; ``overlap``: share of the backward pass the
    all-reduce can hide behind; ``step_overhead_s`` [s]: fixed cost of every step;
    ``sample_overhead_s`` [s]: cost of each sample on a chip beyond its counted FLOPs;
    ``bytes_per_param_update`` [B]: memory traffic of the optimizer per parameter.
    """

    efficiency: float
    comm_efficiency: float
    overlap: float
    bytes_per_param_update: float
    step_overhead_s: float = 0.0
    sample_overhead_s: float = 0.0


@dataclass(frozen=True)
class Family:
    """A chip and its levels (``levels[0]`` is the chip), the model's defaults, the headlines."""

    name: str
    title: str
    levels: tuple[Level, ...]
    model: ModelDefaults
    headlines: Mapping[str, float] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # "level.figure" -> source

    @property
    def chip(self) -> Level:
        return self.levels[0]

    def level_index(self, name: str) -> int:
        for i, level in enumerate(self.levels):
            if level.name == name:
                return i
        raise DojoConfigError(
            f"Level {name!r} is not one of {self.name}'s: {', '.join(lv.name for lv in self.levels)}."
        )

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.chip.tflops)


def _value(entry: Any, where: str, sources: dict[str, str]) -> Any:
    """The value of a ``{value, source}`` entry, its source recorded under ``where``."""
    if not isinstance(entry, Mapping) or "value" not in entry or "source" not in entry:
        raise DojoConfigError(f'Spec entry {where} must be {{ value = ..., source = "..." }}.')
    sources[where] = str(entry["source"])
    return entry["value"]


_LEVEL_FIGURES = (
    "fanout",
    "uplink_gbs",
    "latency_us",
    "overhead_w",
    "dram_gb",
    "dram_bw_gbs",
    "power_w",
    "memory_gb",
    "memory_bw_gbs",
)


def family_from_dict(data: Mapping[str, Any]) -> Family:
    """A :class:`Family` from a parsed spec file (see ``specs/dojo.toml`` for the layout)."""
    sources: dict[str, str] = {}
    fam = data["family"]
    name = str(fam["name"])
    model = ModelDefaults(
        efficiency=float(_value(fam["efficiency"], "family.efficiency", sources)),
        comm_efficiency=float(_value(fam["comm_efficiency"], "family.comm_efficiency", sources)),
        overlap=float(_value(fam["overlap"], "family.overlap", sources)),
        bytes_per_param_update=float(
            _value(fam["bytes_per_param_update"], "family.bytes_per_param_update", sources)
        ),
    )
    levels = []
    for raw in data["levels"]:
        lname = str(raw["name"])
        kwargs: dict[str, Any] = {
            "name": lname,
            "part": str(raw.get("part", lname)),
            "unit": str(raw.get("unit", lname)),
        }
        for fig in _LEVEL_FIGURES:
            if fig in raw:
                value = _value(raw[fig], f"{lname}.{fig}", sources)
                kwargs[fig] = int(value) if fig == "fanout" else float(value)
        kwargs["tflops"] = {
            prec: float(_value(entry, f"{lname}.tflops.{prec}", sources))
            for prec, entry in raw.get("tflops", {}).items()
        }
        levels.append(Level(**kwargs))
    headlines = {
        k: float(_value(v, f"headlines.{k}", sources)) for k, v in data.get("headlines", {}).items()
    }
    family = Family(
        name=name,
        title=str(fam["title"]),
        levels=tuple(levels),
        model=model,
        headlines=headlines,
        sources=sources,
    )
    _check(family)
    return family


def _check(family: Family) -> None:
    if not family.levels or not family.chip.tflops:
        raise DojoConfigError(f"Spec {family.name!r} needs a chip level with tflops first.")
    for level in family.levels[1:]:
        if level.fanout < 1:
            raise DojoConfigError(
                f"Spec {family.name!r}: level {level.name!r} needs a fanout >= 1."
            )


def _read_toml(text: str) -> dict[str, Any]:
    try:
        import tomllib as toml
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as toml  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise DojoConfigError(
                "Reading the system specs needs Python 3.11 or the tomli package."
            ) from None
    return toml.loads(text)


@cache
def load_family(filename: str) -> Family:
    """The family in the packaged spec file ``filename`` (e.g. ``dojo.toml``)."""
    text = (
        importlib.resources.files("dojo.compute")
        .joinpath("specs", filename)
        .read_text(encoding="utf-8")
    )
    return family_from_dict(_read_toml(text))


def packaged_families() -> dict[str, Family]:
    """Every packaged family by name (``dojo``, ``h100``, ``a100``)."""
    families = [load_family(f) for f in SPEC_FILES]
    return {f.name: f for f in families}


__all__ = [
    "Family",
    "Level",
    "ModelDefaults",
    "family_from_dict",
    "load_family",
    "packaged_families",
]
