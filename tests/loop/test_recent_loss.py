"""The loop's per-turn train loss: the mean of the run's last steps, not one batch's."""

from __future__ import annotations

import json
from pathlib import Path

from dojo.loop.rows import recent_loss


def test_mean_of_the_last_tenth_of_steps_skipping_validation_and_broken_lines(
    tmp_path: Path,
) -> None:
    rows = [json.dumps({"step": i, "loss": float(i)}) for i in range(1, 21)]
    rows.insert(
        10, json.dumps({"step": 10, "val_loss": 99.0, "val_windows": 8})
    )  # not a training step
    rows.append("{truncated")  # a line cut short by a kill
    (tmp_path / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    assert recent_loss(tmp_path) == (19 + 20) / 2


def test_no_metrics_gives_none(tmp_path: Path) -> None:
    assert recent_loss(tmp_path) is None
    (tmp_path / "metrics.jsonl").write_text("")
    assert recent_loss(tmp_path) is None
