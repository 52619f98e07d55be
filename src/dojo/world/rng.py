"""Counter-based random numbers, so a world's draws depend only on its own seed.

Each draw is a hash of (world seed, step, stream, index). Nothing is carried between calls, so a
world steps identically whether it is alone or in a batch of thousands, and any world can be
reset without touching the others. The hash is SplitMix64's finaliser (Steele et al., 2014).
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_STEP_MUL = np.uint64(0xD1B54A32D192ED03)
_STREAM_MUL = np.uint64(0xAEF17502108EF2D9)
_INDEX_MUL = np.uint64(0xDB4F0B9175AE2165)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def uniform(seeds: np.ndarray, step: np.ndarray | int, stream: int, n: int) -> np.ndarray:
    """Uniform floats in [0, 1), shape (W, n), for world seeds (W,) at a step (scalar or (W,))."""
    seeds = np.asarray(seeds, dtype=np.uint64)
    step_arr = np.asarray(step, dtype=np.uint64)
    with np.errstate(over="ignore"):
        base = seeds * _GOLDEN + step_arr * _STEP_MUL + np.uint64(stream) * _STREAM_MUL
        idx = np.arange(1, n + 1, dtype=np.uint64) * _INDEX_MUL
        x = _mix(_mix(base)[:, None] ^ idx[None, :])
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
