"""Calibration: the model's terms fitted to step times measured on this machine, and its CPU family.

The CPU is a family like the others: a ``cpu-core`` (one training process, one thread) and a
``cpu-host`` of ``cores`` of them, with the all-reduce between processes going through gloo.
Its figures come from a calibration file rather than a datasheet:

- the core's peak FP32 [TFLOP/s] (clock x 32 FLOPs a cycle, as ``dojo bench train`` states it);
- fitted by :func:`fit` to measured steps: ``efficiency`` (achieved / peak on the net's
  counted FLOPs), ``step_overhead_s`` (fixed cost a step: op dispatch), ``sample_overhead_s``
  (cost a sample the FLOP counter does not see: the uint8 -> float input, element-wise ops),
  the optimizer's effective memory bandwidth, and the all-reduce's effective bandwidth and
  latency per step between processes.

The fit is linear least squares on *relative* errors (each row divided by its measured time),
with every term kept non-negative. The packaged ``specs/cpu-calibration.json`` holds the
numbers fitted on the machine named inside it; ``dojo plan --calibrate`` refits and writes a
new file, which the planner then reads from ``$DOJO_CALIBRATION`` or
``~/.config/dojo/calibration.json`` (the first that exists; else the packaged one).
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dojo.atomic import write_text
from dojo.compute.specs import Family, Level, ModelDefaults, packaged_families
from dojo.errors import DojoConfigError

PACKAGED = "cpu-calibration.json"
USER_PATH = Path("~/.config/dojo/calibration.json")
BYTES_PER_PARAM_UPDATE = 28.0  # [B] AdamW fp32: read w, g, m, v; write w, m, v


@dataclass(frozen=True)
class Measurement:
    """One measured training-step configuration; ``step_s`` [s] is the time fitted (see ``clock``)."""

    size: str
    batch: int  # global
    nproc: int
    step_s: float
    flops_per_sample: float
    params: int
    wall_s: float = 0.0  # [s] the wall clock's step time (0: not recorded)
    cpu_s: float = 0.0  # [s] the CPU time the process got a step (the slowest process's)


@dataclass(frozen=True)
class Fit:
    """The fitted terms (see the module doc)."""

    efficiency: float
    step_overhead_s: float
    sample_overhead_s: float  # [s] a sample, beyond its counted FLOPs
    update_gbs: float  # [GB/s] effective memory bandwidth of the optimizer step
    allreduce_gbs: float  # [GB/s] effective bandwidth of the all-reduce between processes
    allreduce_latency_us: float  # [us] per ring step


@dataclass(frozen=True)
class Calibration:
    """A machine, its core's peak, the fitted terms and the measurements they came from."""

    machine: dict[str, Any]
    peak_tflops_per_core: float
    peak_source: str
    fit: Fit
    measurements: tuple[Measurement, ...] = field(default=())
    core_power_w: float = 5.0  # assumed; a server core's share of its package TDP

    @property
    def cores(self) -> int:
        return int(self.machine.get("cores", 1))

    def model(self) -> ModelDefaults:
        return ModelDefaults(
            efficiency=self.fit.efficiency,
            comm_efficiency=1.0,
            overlap=0.0,
            bytes_per_param_update=BYTES_PER_PARAM_UPDATE,
            step_overhead_s=self.fit.step_overhead_s,
            sample_overhead_s=self.fit.sample_overhead_s,
        )

    def family(self) -> Family:
        """The ``cpu`` family of this machine: ``cpu-core`` x ``cores`` = ``cpu-host``."""
        src = f"calibration on {self.machine.get('cpu', 'this machine')} ({self.machine.get('date', '')})"
        core = Level(
            name="core",
            part="CPU core (one process, one thread)",
            unit="cpu-core",
            tflops={"fp32": self.peak_tflops_per_core},
            power_w=self.core_power_w,
            memory_bw_gbs=self.fit.update_gbs,
            uplink_gbs=self.fit.allreduce_gbs,
            latency_us=self.fit.allreduce_latency_us,
        )
        host = Level(
            name="host",
            part=str(self.machine.get("cpu", "CPU host")),
            unit="cpu-host",
            fanout=self.cores,
        )
        sources = {
            "core.tflops.fp32": self.peak_source,
            "core.power_w": "assumed: 5 W a core",
            "core.memory_bw_gbs": f"fitted: {src}",
            "core.uplink_gbs": f"fitted: gloo all-reduce between processes, {src}",
            "family.efficiency": f"fitted: {src}",
        }
        return Family(
            name="cpu",
            title=f"this machine's CPU ({self.machine.get('cpu', '?')})",
            levels=(core, host),
            model=self.model(),
            sources=sources,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        try:
            return cls(
                machine=dict(data["machine"]),
                peak_tflops_per_core=float(data["peak_tflops_per_core"]),
                peak_source=str(data["peak_source"]),
                fit=Fit(**data["fit"]),
                measurements=tuple(Measurement(**m) for m in data.get("measurements", ())),
                core_power_w=float(data.get("core_power_w", 5.0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DojoConfigError(f"The calibration is not in the expected form ({e}).") from None


def default_calibration_path() -> Path | None:
    """The calibration file the planner reads when none is named (None: the packaged one)."""
    env = os.environ.get("DOJO_CALIBRATION")
    if env:
        return Path(env)
    user = USER_PATH.expanduser()
    return user if user.exists() else None


def load_calibration(path: str | Path | None = None) -> Calibration:
    """The calibration at ``path``, else the default (see :func:`default_calibration_path`)."""
    where = Path(path) if path is not None else default_calibration_path()
    if where is None:
        try:
            text = (
                importlib.resources.files("dojo.compute")
                .joinpath("specs", PACKAGED)
                .read_text(encoding="utf-8")
            )
        except FileNotFoundError:
            raise DojoConfigError(
                f"The packaged calibration specs/{PACKAGED} is missing; run dojo plan --calibrate."
            ) from None
        return Calibration.from_dict(json.loads(text))
    try:
        return Calibration.from_dict(json.loads(where.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise DojoConfigError(f"Calibration file {str(where)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DojoConfigError(
            f"Calibration file {str(where)!r} is not readable JSON ({e})."
        ) from None


def save_calibration(calibration: Calibration, path: str | Path) -> Path:
    """Write ``calibration`` as JSON to ``path`` (atomically); the path."""
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(calibration.to_dict(), indent=2) + "\n")
    return out


def all_families(calibration: Calibration | None = None) -> dict[str, Family]:
    """The packaged families plus this machine's ``cpu`` family."""
    cal = calibration or load_calibration()
    return {**packaged_families(), "cpu": cal.family()}


# ---------------------------------------------------------------------------- the fit
def _columns(m: Measurement, peak_flops: float) -> list[float]:
    """The design matrix row: time = x . row, x = (1/eff, s/B update, s a step, s/B comm, latency, s a sample)."""
    local = -(-m.batch // m.nproc)
    n = m.nproc
    grad_bytes = 4.0 * m.params  # fp32 gradients
    return [
        m.flops_per_sample * local / peak_flops,
        BYTES_PER_PARAM_UPDATE * m.params,
        1.0,
        2.0 * (n - 1) / n * grad_bytes if n > 1 else 0.0,
        2.0 * math.ceil(math.log2(n)) if n > 1 else 0.0,  # the latency term of perf.allreduce_s
        float(local),
    ]


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares with x >= 0: drop the most negative term and refit until none is negative."""
    active = list(range(a.shape[1]))
    x = np.zeros(a.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        if (sol >= 0).all():
            x[:] = 0.0
            x[active] = sol
            return x
        active.pop(int(np.argmin(sol)))
    return x


def fit(measurements: Sequence[Measurement], peak_flops_per_core: float) -> Fit:
    """Fit the terms to ``measurements`` (relative least squares, non-negative terms)."""
    if len(measurements) < 3:
        raise DojoConfigError(
            f"A calibration needs at least 3 measurements; got {len(measurements)}."
        )
    if len({m.size for m in measurements}) < 2 or len({m.batch for m in measurements}) < 2:
        raise DojoConfigError(
            "A calibration needs at least two net sizes and two batches to tell its terms apart."
        )
    rows = np.array([_columns(m, peak_flops_per_core) for m in measurements])  # (M, 5)
    t = np.array([m.step_s for m in measurements])  # (M,)
    scale = rows.max(axis=0)
    scale[scale == 0] = 1.0
    x = _nnls(rows / scale / t[:, None], np.ones_like(t)) / scale
    inv_eff, s_per_byte_update, overhead, s_per_byte_comm, latency_s, per_sample = (
        float(v) for v in x
    )
    if inv_eff <= 0:
        raise DojoConfigError(
            "The calibration could not attribute any step time to compute; measure bigger batches."
        )
    return Fit(
        efficiency=1.0 / inv_eff,
        step_overhead_s=overhead,
        sample_overhead_s=per_sample,
        update_gbs=1e-9 / s_per_byte_update if s_per_byte_update > 0 else 0.0,
        allreduce_gbs=1e-9 / s_per_byte_comm if s_per_byte_comm > 0 else 1e6,
        allreduce_latency_us=latency_s * 1e6,
    )


def leave_one_out(measurements: Sequence[Measurement], peak_flops_per_core: float) -> list[float]:
    """Each measurement's step time [s] predicted by a fit to all the others."""
    out = []
    for i, m in enumerate(measurements):
        rest = [x for j, x in enumerate(measurements) if j != i]
        out.append(predict_s(m, fit(rest, peak_flops_per_core), peak_flops_per_core))
    return out


def predict_s(m: Measurement, fit_: Fit, peak_flops_per_core: float) -> float:
    """The calibrated model's step time [s] for the configuration of ``m``."""
    x = [
        1.0 / fit_.efficiency,
        1e-9 / fit_.update_gbs if fit_.update_gbs > 0 else 0.0,
        fit_.step_overhead_s,
        1e-9 / fit_.allreduce_gbs if fit_.allreduce_gbs > 0 else 0.0,
        fit_.allreduce_latency_us * 1e-6,
        fit_.sample_overhead_s,
    ]
    return float(np.dot(_columns(m, peak_flops_per_core), x))


__all__ = [
    "Calibration",
    "Fit",
    "Measurement",
    "all_families",
    "default_calibration_path",
    "fit",
    "leave_one_out",
    "load_calibration",
    "predict_s",
    "save_calibration",
]
