"""What a benchmark ran on: the CPU's model, clock and FP32 FLOPs a cycle, the codec versions.

Every benchmark's result carries one of these, so a figure is never read without its machine.
"""

from __future__ import annotations

import os
import platform
import re
from typing import Any

import av
import numpy as np

# The writer's encoder itself, private on purpose: the x264 version is read from what the drive
# logs' own encoder writes, with their settings.
from dojo.drivelog import DEFAULT_CRF, _H264Encoder

PRESET = "ultrafast"  # DriveLogWriter's default, which the fleet uses
# FP32 FLOPs per cycle per core: 2 FMA units x lanes x 2; 8 lanes with AVX2, 16 with AVX-512
CPU_FLOPS_PER_CYCLE = {"avx512f": 64, "avx2": 32}
CPU_FLOPS_PER_CYCLE_OTHER = 8  # SSE: 2 x 4 lanes, no FMA counted twice

# Dense BF16 tensor-core peaks [TFLOP/s] from NVIDIA's datasheets (their "with sparsity" figure
# halved), keyed by a substring of torch.cuda.get_device_name. Matched in this order, so the
# PCIe and NVL parts of H100 are found before the "H100" of the SXM part ("NVIDIA H100 80GB
# HBM3"); GH200's GPU is an H100 or H200 die and reads as its "H200" or "H100".
GPU_BF16_PEAK_TFLOPS: tuple[tuple[str, float, str], ...] = (
    ("H100 PCIe", 756.5, "NVIDIA H100 datasheet: 1,513 TFLOPS BF16 with sparsity (PCIe)"),
    ("H100 NVL", 835.5, "NVIDIA H100 datasheet: 1,671 TFLOPS BF16 with sparsity (NVL)"),
    ("H100", 989.0, "NVIDIA H100 datasheet: 1,979 TFLOPS BF16 with sparsity (SXM)"),
    ("H200", 989.0, "NVIDIA H200 datasheet: 1,979 TFLOPS BF16 with sparsity (SXM)"),
    ("A100", 312.0, "NVIDIA A100 datasheet: 624 TFLOPS BF16 with sparsity"),
    ("L40S", 362.0, "NVIDIA L40S datasheet: 733 TFLOPS BF16 with sparsity (362.05 dense)"),
)


def gpu_bf16_peak(device_name: str) -> tuple[float | None, str]:
    """(dense BF16 peak [FLOP/s] or None, its source or why there is none) for a CUDA device name."""
    for key, tflops, source in GPU_BF16_PEAK_TFLOPS:
        if key in device_name:
            return tflops * 1e12, f"{device_name}: {tflops:g} TFLOP/s dense BF16 ({source}, halved)"
    known = ", ".join(key for key, _, _ in GPU_BF16_PEAK_TFLOPS)
    return None, f"{device_name}: no datasheet peak in dojo.bench.machine (knows {known})"


def cpu_flops_per_cycle() -> tuple[int, str]:
    """(FP32 FLOPs per cycle per core, the widest vector extension /proc/cpuinfo lists)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    for ext, flops in CPU_FLOPS_PER_CYCLE.items():
        if ext in flags:
            return flops, ext
    return CPU_FLOPS_PER_CYCLE_OTHER, "no AVX2"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _x264_version(width: int, height: int) -> str:
    """'x264 core N' as x264 writes it into the SEI of its first keyframe."""
    encoder = _H264Encoder(width, height, 10.0, 10, DEFAULT_CRF, PRESET, False)
    packets = encoder.encode(np.zeros((height, width), np.uint8), 0) + encoder.flush()
    found = re.search(rb"x264 - core \d+", b"".join(data for _, data in packets))
    return found.group(0).decode().replace(" - ", " ") if found else "libx264 (version unknown)"


def machine_info(width: int = 96, height: int = 48) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, Python, PyAV and libx264."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "av": av.__version__,
        "libx264": _x264_version(width, height),
        "libavcodec": ".".join(str(v) for v in av.library_versions.get("libavcodec", ())),
    }


def cpu_clock_hz() -> float:
    """The highest 'cpu MHz' /proc/cpuinfo reports (the current clock, an approximation)."""
    best = 0.0
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("cpu mhz"):
                    best = max(best, float(line.split(":", 1)[1]))
    except (OSError, ValueError):
        pass
    return best * 1e6


__all__ = [
    "CPU_FLOPS_PER_CYCLE",
    "CPU_FLOPS_PER_CYCLE_OTHER",
    "GPU_BF16_PEAK_TFLOPS",
    "PRESET",
    "cpu_clock_hz",
    "cpu_flops_per_cycle",
    "cpu_model",
    "gpu_bf16_peak",
    "machine_info",
]
