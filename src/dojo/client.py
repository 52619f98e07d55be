"""For a tenant's own training script in a Dojo ``script`` job: where its files are, and
:func:`report` for its metrics.

    import dojo.client as dojo

    for step in range(start, steps):
        ...
        dojo.report(step=step, loss=loss.item(), lr=lr)
    torch.save(model.state_dict(), dojo.output_dir() / "model.pt")

Only the standard library is imported, so a script starts as fast with it as without. Outside a
job (no ``DOJO_*`` variables) the folders are under the current one and :func:`report` prints
its rows, so the same script runs on a laptop.
"""

from __future__ import annotations

import json
import math
import os
from numbers import Real
from pathlib import Path


def _folder(var: str, default: str) -> Path:
    path = Path(os.environ.get(var) or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def output_dir() -> Path:
    """Files left here when the job succeeds become the tenant's models."""
    return _folder("DOJO_OUTPUT_DIR", "output")


def checkpoint_dir() -> Path:
    """Kept across preemptions and retries: save here, and resume from what is here."""
    return _folder("DOJO_CHECKPOINT_DIR", "checkpoints")


def data_dir() -> Path | None:
    """The job's dataset (read-only), or None when the job names none."""
    value = os.environ.get("DOJO_DATA_DIR")
    return Path(value) if value else None


def rank() -> int:
    """This process's rank (torchrun's ``RANK``; 0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def report(step: int, *, all_ranks: bool = False, **values: float) -> None:
    """Record metric values at ``step`` (e.g. ``report(step=100, loss=0.42)``).

    Rank 0's rows only, unless ``all_ranks`` (then each row gains ``rank``). The agent sends them
    to the job's metrics (``GET /v1/jobs/ID/metrics``, the dashboard) as they are written.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise TypeError(f"report(step={step!r}): step must be a whole number >= 0.")
    if not values:
        raise TypeError("report() needs at least one value, e.g. report(step=1, loss=0.5).")
    row: dict[str, object] = {"step": step}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"report({name}={value!r}): values must be numbers.")
        number = float(value)
        row[name] = number if math.isfinite(number) else None  # JSON has no NaN or inf
    if all_ranks:
        row["rank"] = rank()
    elif rank() != 0:
        return
    line = json.dumps(row, separators=(",", ":")) + "\n"
    target = os.environ.get("DOJO_METRICS_FILE")
    if not target:
        print(line, end="", flush=True)
        return
    with open(target, "a", encoding="utf-8") as f:  # one write a row: readers see whole lines
        f.write(line)


__all__ = ["checkpoint_dir", "data_dir", "output_dir", "rank", "report"]
