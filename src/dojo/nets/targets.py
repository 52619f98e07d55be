"""What the heads are trained against, torch-free: the label sources and the planner targets.

``LABEL_SOURCES``: where a training window's targets come from. ``telemetry`` (the default, and
the only source before issue 18): the action the driver in control applied, and the occupancy
grid the drive logged (40 m ahead). ``autolabel``: the offline auto-labeler's rows
(``dojo autolabel``, :mod:`dojo.data.autolabel`): the careful driver's action on the logged
scene, the planner targets below, and its occupancy grid (80 m ahead by default).

The planner targets, one value each per window (:data:`PLANNER_TARGETS`), in the *encoded*
space the planner head predicts and its loss compares:

* gaps (the lead's and the four next-lane gaps) as ``ln(gap_m)``, the gap clipped to
  ``[MIN_GAP_M, GAP_REACH_M]``: a gap beyond the reach, or nobody there at all, is the reach
  (a censored value, "at least 80 m"), so the head learns to say "free road" rather than being
  left unasked there; in log space an error is a relative error, which is what matters for a
  gap (2 m off at 10 m is grave, at 70 m it is not);
* ``closing_mps`` as it is [m/s];
* ``inv_ttc_per_s``: 1 / TTC [1/s], 0 when not closing, at most ``INV_TTC_MAX_PER_S``: bounded
  where TTC is not (infinite when opening, near zero just before a crash).

Validity (``valid``, False: the target is not asked for): the next-lane gaps where that lane
does not exist; closing speed and inverse TTC where there is no visible lead within the reach.
The lead gap is always valid (no lead: the reach).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

LABEL_SOURCES = ("telemetry", "autolabel")
LABEL_SOURCE = "telemetry"

PLANNER_TARGETS = (
    "lead_gap_m",
    "closing_mps",
    "inv_ttc_per_s",
    "left_ahead_gap_m",
    "left_behind_gap_m",
    "right_ahead_gap_m",
    "right_behind_gap_m",
)
GAP_TARGETS = (0, 3, 4, 5, 6)  # indices of PLANNER_TARGETS that are gaps (predicted as ln gap)
LEAD_GAP, CLOSING, INV_TTC = 0, 1, 2
GAP_REACH_M = 80.0  # [m] a gap beyond this counts as this: the reach of the auto-label grid
MIN_GAP_M = 0.5  # [m] the floor of a gap before its log (a touching bumper is not -inf)
INV_TTC_MAX_PER_S = 2.0  # [1/s] TTC under 0.5 s: all equally urgent
NO_LEAD_GAP_M = 1.0e3  # [m] a gap at least this large in a label is "nobody there"


def planner_targets(
    rows: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """(values float32 (n, P), valid bool (n, P)) from auto-label columns (each (n,), NaN for null).

    ``rows`` holds ``lead_id``, ``lead_gap_m``, ``closing_mps``, ``ttc_s`` and the four
    ``{left,right}_{ahead,behind}_gap_m`` (see :data:`dojo.data.store.AUTOLABELS`).
    """
    n = len(rows["lead_gap_m"])
    values = np.zeros((n, len(PLANNER_TARGETS)), dtype=np.float64)
    valid = np.zeros((n, len(PLANNER_TARGETS)), dtype=bool)
    gap = np.asarray(rows["lead_gap_m"], dtype=np.float64)
    lead = (
        (np.asarray(rows["lead_id"]) >= 0)
        & np.isfinite(gap)
        & (gap < NO_LEAD_GAP_M)
        & (gap <= GAP_REACH_M)
    )
    values[:, LEAD_GAP] = _log_gap(np.where(lead, gap, GAP_REACH_M))
    valid[:, LEAD_GAP] = True
    closing = np.asarray(rows["closing_mps"], dtype=np.float64)
    ttc = np.asarray(rows["ttc_s"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(np.isfinite(ttc) & (ttc > 0), 1.0 / ttc, 0.0)
    values[:, CLOSING] = np.where(lead & np.isfinite(closing), closing, 0.0)
    valid[:, CLOSING] = lead & np.isfinite(closing)
    values[:, INV_TTC] = np.clip(inv, 0.0, INV_TTC_MAX_PER_S)
    valid[:, INV_TTC] = lead
    for i in GAP_TARGETS[1:]:
        side = np.asarray(rows[PLANNER_TARGETS[i]], dtype=np.float64)
        exists = np.isfinite(side)
        values[:, i] = _log_gap(np.where(exists, side, GAP_REACH_M))
        valid[:, i] = exists
    return values.astype(np.float32), valid


def decode_targets(encoded: np.ndarray) -> np.ndarray:
    """Encoded targets (n, P) in physical units: gaps [m], closing [m/s], inverse TTC [1/s]."""
    out = np.array(encoded, dtype=np.float64)
    out[:, list(GAP_TARGETS)] = np.exp(out[:, list(GAP_TARGETS)])
    return out


def _log_gap(gap_m: np.ndarray) -> np.ndarray:
    return np.log(np.clip(gap_m, MIN_GAP_M, GAP_REACH_M))


LOG_REACH = math.log(GAP_REACH_M)

__all__ = [
    "CLOSING",
    "GAP_REACH_M",
    "GAP_TARGETS",
    "INV_TTC",
    "INV_TTC_MAX_PER_S",
    "LABEL_SOURCE",
    "LABEL_SOURCES",
    "LEAD_GAP",
    "LOG_REACH",
    "MIN_GAP_M",
    "NO_LEAD_GAP_M",
    "PLANNER_TARGETS",
    "decode_targets",
    "planner_targets",
]
