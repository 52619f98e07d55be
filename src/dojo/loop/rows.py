"""What a turn of the loop reports: its recent training loss, comparisons, the printed row."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def recent_loss(run: str | Path, share: float = 0.1) -> float | None:
    """Mean training loss over the last ``share`` of a run's steps (its ``metrics.jsonl``): one
    step's loss is one batch's, too noisy to compare turns by."""
    losses: list[float] = []
    try:
        with open(Path(run) / "metrics.jsonl", encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if (
                    isinstance(row, dict)
                    and "step" in row
                    and isinstance(row.get("loss"), (int, float))
                ):
                    losses.append(float(row["loss"]))
    except OSError:
        return None
    if not losses:
        return None
    tail = losses[-max(1, int(len(losses) * share)) :]
    return sum(tail) / len(tail)


def train_loss(trained: dict[str, Any]) -> float:
    """The run's recent mean loss; its last step's when no metrics were written."""
    recent = recent_loss(trained["run"])
    return float(trained["loss"]) if recent is None else recent


def versus(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    from dojo.eval.evaluate import compare_results

    c = compare_results(a, b)
    safer = {"a": a["policy"], "b": b["policy"]}.get(c["better"])  # None when not significant
    return {"p_value": c["p_value"], "significant": c["significant"], "safer": safer}


def nines_interval(r: dict[str, Any]) -> str:
    """``2.60 [2.52, 2.69]``, ``>=4.11 [3.95, inf]``: the nines of a result with their bounds."""
    high = r["nines_high"]
    high_text = "inf" if high is None or math.isinf(high) else f"{high:.2f}"
    point = (">=" if r["nines_is_bound"] else "") + f"{r['nines']:.2f}"
    return f"{point} [{r['nines_low']:.2f}, {high_text}]"


def nines_words(r: dict[str, Any]) -> str:
    return (
        f"{r['critical_interventions']:>5,} critical in {r['decisions']:,} decisions: "
        f"nines {nines_interval(r)}"
    )


_HEAD = f"{'loop':>4}  {'windows (by trigger)':<44}{'loss':>8}{'IoU':>6}{'decisions':>11}{'critical':>9}  {'nines [95%]':<20}{'moments':<14}promoted"


def format_row(row: dict[str, Any], header: bool = False) -> str:
    """One printed line per turn (with the header before the first)."""
    trig = ", ".join(f"{k} {v}" for k, v in row["windows_by_trigger"].items())
    windows = f"{row['windows']} ({trig})"
    if len(windows) > 43:
        windows = windows[:40] + "..."
    iou = "-" if row["occupancy_iou"] is None else f"{row['occupancy_iou']:.2f}"
    nines = nines_interval(row)
    promoted = "yes" if row["promoted"] else f"no: {row['gate']}"
    if row["promoted"] and row.get("gate", "passed") != "passed":
        promoted += f" ({row['gate']})"  # a warning the rule let through
    sm = row.get("suite_moments")  # the fleet's moments passed: candidate / deployed, of all
    moments = f"{sm['candidate_passed']}/{sm['deployed_passed']} of {sm['paired']}" if sm else "-"
    line = (
        f"{row['loop']:>4}  {windows:<44}{row['train_loss']:>8.4f}{iou:>6}{row['decisions']:>11,}"
        f"{row['critical_interventions']:>9,}  {nines:<20}{moments:<14}{promoted}"
    )
    return (_HEAD + "\n" + line) if header else line


__all__ = ["format_row", "nines_interval", "nines_words", "recent_loss", "train_loss", "versus"]
