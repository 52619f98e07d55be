"""The loop's report: ``OUT/report/index.html`` with PNGs beside it.

>>> write_report(run_loop(config), config.out)   # -> Path("OUT/report/index.html")

Four pictures, each drawn from what the loop left under ``OUT``:

* ``nines.png``: nines per loop with 95% interval bars (an open upper end drawn as an arrow),
  promoted turns marked, against the expert line (a ``>=`` bound when it had no critical
  intervention) and the naive line with its interval as a band;
* ``families.png``: critical interventions per scenario family for naive, expert and each
  loop's candidate (baselines from ``OUT/eval/{naive,expert}.json``);
* ``loss.png``: training loss per loop from ``OUT/runs/loopK/metrics.jsonl``, smoothed;
* ``moment.png``: one takeover mined from the clip store ``OUT/store`` (a critical one when
  there is one): camera mosaic and occupancy grid at that moment, over what the network and the
  safety driver did (acceleration, steering) in the seconds around it.

A picture that cannot be drawn (no store, no takeover, no metrics) is left out and the page
says why. The page is self-contained (relative image paths); every string put into it is
HTML-escaped, since paths, reasons and config values come from the user.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from dojo.loop.report_html import Picture, as_number, render_html, upper_bound

REPORT_DIR = "report"
INDEX = "index.html"
PNGS = ("nines.png", "families.png", "loss.png", "moment.png", "fleet_moment.png")
MOMENT_SPAN_S = 5.0  # telemetry shown either side of the takeover
DRIVER_COLOURS = {"network": "tab:blue", "safety_driver": "tab:red", "human": "tab:gray"}
DPI = 100


# ----------------------------------------------------------------------------- helpers
def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------------- nines.png
def _y_range(result: dict[str, Any]) -> tuple[float, float]:
    """(bottom, top) of the nines axis: every finite value with a margin, never below 0."""
    keys = (
        "naive_nines",
        "naive_nines_low",
        "naive_nines_high",
        "expert_nines",
        "expert_nines_low",
    )
    values = [result.get(k) for k in keys]
    for row in result.get("loops", []):
        values += [row.get("nines"), row.get("nines_low"), row.get("nines_high")]
    finite = [x for x in (as_number(v) for v in values) if x is not None and math.isfinite(x)]
    if not finite:
        return 0.0, 1.0
    return max(0.0, min(finite) - 0.5), max(finite) + 0.5


def _baselines(ax: Axes, result: dict[str, Any]) -> None:
    naive, low, high = (
        as_number(result.get(k)) for k in ("naive_nines", "naive_nines_low", "naive_nines_high")
    )
    if naive is not None:
        ax.axhline(naive, color="tab:orange", lw=1.5, label=f"naive {naive:.2f}")
        if low is not None:
            ax.axhspan(
                low,
                min(upper_bound(high), ax.get_ylim()[1]),
                color="tab:orange",
                alpha=0.15,
                label="naive 95% interval",
            )
    expert, e_low = as_number(result.get("expert_nines")), as_number(result.get("expert_nines_low"))
    if expert is not None:
        bound = bool(result.get("expert_nines_is_bound"))
        ax.axhline(
            expert,
            color="tab:green",
            lw=1.5,
            ls="--" if bound else "-",
            label=f"expert {'>= ' if bound else ''}{expert:.2f}",
        )
        if e_low is not None and not bound and e_low < expert:
            ax.axhline(
                e_low, color="tab:green", lw=1, ls=":", label=f"expert lower bound {e_low:.2f}"
            )


@dataclass(frozen=True)
class _Style:
    marker: str
    size: float
    colour: str
    face: str
    label: str


_PROMOTED = _Style("*", 14, "tab:purple", "tab:purple", "promoted")
_REFUSED = _Style("o", 7, "tab:gray", "white", "refused by the gate")


def _nines_points(ax: Axes, rows: list[dict[str, Any]], top: float) -> None:
    """Each turn's nines with its interval; an open upper end runs to the top with an arrow."""
    for promoted, st in ((True, _PROMOTED), (False, _REFUSED)):
        pick = [
            r
            for r in rows
            if bool(r.get("promoted")) is promoted and as_number(r.get("nines")) is not None
        ]
        if not pick:
            continue
        x = np.array([r["loop"] for r in pick], dtype=float)
        y = np.array([float(r["nines"]) for r in pick])
        low = np.array([as_number(r.get("nines_low")) or y[i] for i, r in enumerate(pick)])
        high = np.array([min(upper_bound(r.get("nines_high")), top) for r in pick])
        ax.errorbar(
            x,
            y,
            yerr=[np.maximum(y - low, 0), np.maximum(high - y, 0)],
            ls="none",
            capsize=4,
            marker=st.marker,
            ms=st.size,
            color=st.colour,
            mfc=st.face,
            label=st.label,
        )
        for xi, r in zip(x, pick, strict=True):
            if math.isinf(upper_bound(r.get("nines_high"))):
                ax.annotate(
                    "",
                    xy=(xi, top),
                    xytext=(xi, top - 0.3),
                    arrowprops={"arrowstyle": "->", "color": st.colour},
                )


def plot_nines(result: dict[str, Any], path: Path) -> Picture:
    """Nines per loop with interval bars against the expert and naive lines."""
    rows = list(result.get("loops", []))
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    bottom, top = _y_range(result)
    ax.set_ylim(bottom=bottom, top=top)
    _baselines(ax, result)
    _nines_points(ax, rows, top)
    ax.set_xlabel("loop")
    ax.set_ylabel("nines = -log10(critical / decisions)")
    ax.set_title("Nines per loop (95% interval over drives; arrow: no upper bound)")
    ax.set_xticks([int(r["loop"]) for r in rows] or [0])
    ax.grid(alpha=0.3)
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8
    )  # beside the plot: never over a point
    _save(fig, path)
    return Picture(
        "Nines per loop",
        path.name,
        "Each candidate's nines on the held-out suite; promoted turns are starred.",
    )


# ----------------------------------------------------------------------------- families.png
def _family_counts(result: dict[str, Any], out: Path) -> dict[str, dict[str, float]]:
    """{series: {family: critical interventions}} for naive, expert and every loop."""
    series: dict[str, dict[str, float]] = {}
    for name in ("naive", "expert"):
        data = _read_json(out / "eval" / f"{name}.json")
        fams = data.get("families") if data else None
        if isinstance(fams, dict):
            series[name] = {f: float(v.get("critical_interventions", 0)) for f, v in fams.items()}
    for row in result.get("loops", []):
        fams = row.get("families") or {}
        series[f"loop {row['loop']}"] = {
            f: float(v.get("critical_interventions", 0)) for f, v in fams.items()
        }
    return series


def plot_families(result: dict[str, Any], out: Path, path: Path) -> Picture:
    """Grouped bars: critical interventions per scenario family, one bar per model."""
    title = "Critical interventions per scenario family"
    series = _family_counts(result, out)
    families: list[str] = []
    for counts in series.values():
        families += [f for f in counts if f not in families]
    if not families:
        return Picture(
            title, None, "No per-family results were found (no eval/*.json and no rows)."
        )
    fig = Figure(figsize=(max(7.0, 1.3 * len(families)), 4.5))
    ax = fig.subplots()
    width = 0.8 / len(series)
    x = np.arange(len(families))
    for i, (name, counts) in enumerate(series.items()):
        bars = ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            [counts.get(f, 0) for f in families],
            width,
            label=name,
        )
        if (
            len(series) * len(families) <= 60
        ):  # counts on the bars while they stay legible (0 shows too)
            ax.bar_label(bars, fmt="%g", fontsize=7)
    ax.set_xticks(x, families)
    ax.set_ylabel("critical interventions")
    ax.set_title(title + " (same held-out seeds for every model)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return Picture(
        title,
        path.name,
        "Fewer is better; naive and expert from eval/naive.json and eval/expert.json.",
    )


# ----------------------------------------------------------------------------- loss.png
def read_losses(metrics: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, losses) of a training run's metrics.jsonl; empty when missing."""
    steps: list[float] = []
    losses: list[float] = []
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(rec, dict)
            and as_number(rec.get("step")) is not None
            and as_number(rec.get("loss")) is not None
        ):
            steps.append(float(rec["step"]))
            losses.append(float(rec["loss"]))
    return np.asarray(steps), np.asarray(losses)


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (the first ones average what there is)."""
    if values.size == 0:
        return values
    window = max(1, int(window))
    csum = np.cumsum(np.insert(values.astype(float), 0, 0.0))
    idx = np.arange(1, values.size + 1)
    start = np.maximum(idx - window, 0)
    return (csum[idx] - csum[start]) / (idx - start)


def plot_loss(result: dict[str, Any], out: Path, path: Path) -> Picture:
    """Training loss per loop, raw (faint) and smoothed."""
    title = "Training loss per loop"
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    drawn: list[np.ndarray] = []
    for row in result.get("loops", []):
        steps, losses = read_losses(out / "runs" / f"loop{row['loop']}" / "metrics.jsonl")
        if not steps.size:
            continue
        line = ax.plot(
            steps, running_mean(losses, max(1, steps.size // 20)), label=f"loop {row['loop']}"
        )
        ax.plot(steps, losses, color=line[0].get_color(), alpha=0.2, lw=0.8)
        drawn.append(losses)
    if not drawn:
        return Picture(
            title, None, "No training metrics were found under runs/loopK/metrics.jsonl."
        )
    every = np.concatenate(drawn)
    if every.min() > 0 and every.max() / every.min() > 10:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title + " (running mean; raw faint)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return Picture(
        title, path.name, "Each candidate is trained from scratch on that turn's dataset version."
    )


# ----------------------------------------------------------------------------- moment.png
@dataclass(frozen=True)
class Moment:
    """A takeover and the clip that holds it."""

    drive_id: str
    t_s: float
    critical: bool
    reason: str
    clip_id: str
    clip_t0_s: float
    clip_t1_s: float
    family: str


_TAKEOVER_SQL = """
SELECT e.drive_id, e.t_s, coalesce(e.critical, false), coalesce(e.reason, ''), c.clip_id, c.t0_s, c.t1_s,
       coalesce(c.family, '')
FROM events e JOIN clips c ON c.drive_id = e.drive_id AND e.t_s BETWEEN c.t0_s AND c.t1_s
WHERE e.kind = 'intervention_start'
ORDER BY coalesce(e.critical, false) DESC, e.drive_id, e.t_s
LIMIT 1
"""


def find_takeover(con: Any) -> Moment | None:
    """The first critical takeover of the store (else any takeover), or None."""
    row = con.execute(_TAKEOVER_SQL).fetchone()
    if row is None:
        return None
    d, t, crit, reason, clip, t0, t1, fam = row
    return Moment(
        str(d), float(t), bool(crit), str(reason), str(clip), float(t0), float(t1), str(fam)
    )


def _frames_at(store: Any, m: Moment) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Camera frames (cams, H, W[, 3]) uint8 nearest the takeover, its occupancy grid, camera names."""
    from dojo.data.loader import WindowDataset

    spec = (m.clip_id, max(m.clip_t0_s, m.t_s - 0.3), min(m.clip_t1_s, m.t_s + 0.3))
    ds = WindowDataset(store, specs=[spec], frames=1, shuffle=False)
    samples = list(ds)
    if not samples or ds.rig is None:
        raise LookupError(f"no camera frame of clip {m.clip_id} near t = {m.t_s:.1f} s")
    best = min(samples, key=lambda s: abs(float(s["t_s"]) - m.t_s))
    frames = np.asarray(best["images"])[:, -1]
    grid = np.asarray(best["occupancy"]) if bool(best.get("has_occupancy", False)) else None
    return np.ascontiguousarray(frames, dtype=np.uint8), grid, list(ds.rig.cameras)


def _telemetry(con: Any, m: Moment) -> dict[str, np.ndarray]:
    rows = con.execute(
        "SELECT t_s, accel_mps2, steer_rad, coalesce(driver, '?') FROM telemetry "
        "WHERE drive_id = ? AND t_s BETWEEN ? AND ? ORDER BY t_s",
        [m.drive_id, m.t_s - MOMENT_SPAN_S, m.t_s + MOMENT_SPAN_S],
    ).fetchall()
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    as_float = [np.array([np.nan if v is None else v for v in c], dtype=float) for c in cols[:3]]
    return {
        "t": as_float[0] - m.t_s,
        "accel": as_float[1],
        "steer": as_float[2],
        "driver": np.array(cols[3], dtype=object),
    }


def _handback_s(con: Any, m: Moment) -> float | None:
    row = con.execute(
        "SELECT min(t_s) FROM events WHERE drive_id = ? AND kind = 'intervention_end' AND t_s > ? AND t_s <= ?",
        [m.drive_id, m.t_s, m.t_s + MOMENT_SPAN_S],
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0]) - m.t_s


def _telemetry_figure(
    tel: dict[str, np.ndarray], handback: float | None, width_px: int
) -> Image.Image:
    fig = Figure(figsize=(max(width_px / DPI, 6.0), 4.2))
    axes = fig.subplots(2, 1, sharex=True)
    for ax, key, label in ((axes[0], "accel", "accel [m/s²]"), (axes[1], "steer", "steer [rad]")):
        ax.plot(tel["t"], tel[key], color="0.75", lw=1, zorder=1)
        for driver in sorted(set(tel["driver"].tolist())):
            pick = tel["driver"] == driver
            ax.scatter(
                tel["t"][pick],
                tel[key][pick],
                s=10,
                zorder=2,
                label=str(driver),
                color=DRIVER_COLOURS.get(str(driver), "tab:olive"),
            )
        ax.axvline(0.0, color="black", lw=1.2, label="takeover")
        if handback is not None:
            ax.axvline(handback, color="black", lw=1, ls="--", label="handed back")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[0].set_title("What the network did against what the safety driver did")
    axes[1].set_xlabel("seconds from the takeover")
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png", bbox_inches="tight")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _stack(top: Image.Image, bottom: Image.Image) -> Image.Image:
    width = max(top.width, bottom.width)
    canvas = Image.new("RGB", (width, top.height + bottom.height), (255, 255, 255))
    canvas.paste(top, ((width - top.width) // 2, 0))
    canvas.paste(bottom, ((width - bottom.width) // 2, top.height))
    return canvas


def plot_moment(store_path: Path, path: Path) -> Picture:
    """Camera mosaic + BEV at a mined takeover, over the telemetry around it; skipped without one."""
    from dojo.data.catalog import connect
    from dojo.data.store import Store
    from dojo.errors import DojoError
    from dojo.world.occupancy import FREE
    from dojo.world.picture import mosaic

    title = "A mined takeover"
    if not store_path.is_dir():
        return Picture(title, None, f"Skipped: no clip store at {store_path}.")
    try:
        store = Store(store_path)
    except DojoError as e:
        return Picture(title, None, f"Skipped: {store_path} is not a usable clip store ({e}).")
    con = connect(store)
    moment = find_takeover(con)
    if moment is None:
        return Picture(
            title, None, "Skipped: the clip store holds no takeover (no intervention_start event)."
        )
    frames, grid, names = _frames_at(store, moment)
    labelled = grid is not None
    if grid is None:
        grid = np.full((60, 40), FREE, dtype=np.uint8)
    kind = "critical takeover" if moment.critical else "takeover (no critical one in the store)"
    caption = (
        f"{kind} at t = {moment.t_s:.1f} s, drive {moment.drive_id[:12]}, {moment.family or '?'}: "
        f"{moment.reason or '?'}" + ("" if labelled else " (no occupancy label)")
    )
    top = mosaic(frames, grid, names, caption)
    tel = _telemetry(con, moment)
    _stack(top, _telemetry_figure(tel, _handback_s(con, moment), top.width)).save(path)
    return Picture(
        title if moment.critical else "A mined takeover (not critical)",
        path.name,
        caption + f"; clip {moment.clip_id}.",
    )


def _suite_moment(result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(a turn's row, one fleet moment of it to show): the latest turn's first broken moment,
    else its first fixed one; None when no turn broke or fixed one."""
    for row in reversed(result.get("loops") or []):
        sm = row.get("suite_moments") or {}
        for kind in ("broken", "fixed"):
            if sm.get(f"{kind}_moments"):
                return row, {**sm[f"{kind}_moments"][0], "kind": kind}
    return None


def plot_fleet_moment(result: dict[str, Any], out: Path, path: Path) -> Picture:
    """Camera mosaic + BEV of one fleet moment a turn broke or fixed: as logged, as the deployed
    model drove it and as the candidate did, one above the other."""
    from dojo.data.store import Store
    from dojo.eval.replay import LOGGED, fleet_config, worlds_at
    from dojo.eval.resim import load_stored_drive
    from dojo.eval.suite import DEFAULT_BEFORE_S
    from dojo.world.camera import CameraRig, render
    from dojo.world.occupancy import OccupancySpec, occupancy
    from dojo.world.picture import mosaic

    title = "A fleet moment: logged, deployed, candidate"
    found = _suite_moment(result)
    if found is None:
        return Picture(
            title, None, "Skipped: no turn broke or fixed a moment of the fleet's suite."
        )
    row, m = found
    drive = load_stored_drive(Store(out / "store"), m["drive"])
    policies = {"deployed": str(row["against"]), "candidate": str(row["candidate"])}
    worlds = worlds_at(drive, float(m["t_s"]), DEFAULT_BEFORE_S, policies)
    cfg = fleet_config(drive.config, "naive", [str(drive.family)], 1, 1)  # the log's rig
    rig = CameraRig.named(cfg.rig, rgb=cfg.rgb, width=cfg.camera_width, height=cfg.camera_height)
    tiles = []
    for name, (world, t) in worlds.items():
        frames = render(world.roads, world.vehicles, rig, threads=1)[0]
        grid = occupancy(world.roads, world.vehicles, OccupancySpec())[0]
        who = "as logged" if name == LOGGED else f"{name} ({Path(policies[name]).name})"
        tiles.append(mosaic(frames, grid, list(rig.names), f"{who}, t = {t:.1f} s"))
    picture = tiles[0]
    for tile in tiles[1:]:
        picture = _stack(picture, tile)
    picture.save(path)
    caption = (
        f"loop {row['loop']} {m['kind']} this moment: {m.get('source') or m['drive']} at "
        f"{float(m['t_s']):.1f} s ({m.get('trigger')}), replayed from {DEFAULT_BEFORE_S:g} s "
        "before it"
    )
    return Picture(title, path.name, caption + ".")


def _guarded(title: str, draw: Any, *args: Any) -> Picture:
    """Draw one picture; a failure leaves it out with the error on the page rather than losing the report."""
    try:
        picture: Picture = draw(*args)
    except Exception as e:  # noqa: BLE001 - the loop's result matters more than one picture
        return Picture(title, None, f"Could not draw this picture: {type(e).__name__}: {e}")
    return picture


def write_report(result: dict[str, Any], out: str | Path) -> Path:
    """Write ``OUT/report/index.html`` and its PNGs from a :func:`run_loop` result; the index path."""
    out = Path(out)
    folder = out / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name in PNGS:  # a picture skipped this time must not show a stale one from an earlier run
        (folder / name).unlink(missing_ok=True)
    pictures = [
        _guarded("Nines per loop", plot_nines, result, folder / "nines.png"),
        _guarded(
            "Critical interventions per scenario family",
            plot_families,
            result,
            out,
            folder / "families.png",
        ),
        _guarded("Training loss per loop", plot_loss, result, out, folder / "loss.png"),
        _guarded("A mined takeover", plot_moment, out / "store", folder / "moment.png"),
        _guarded(
            "A fleet moment: logged, deployed, candidate",
            plot_fleet_moment,
            result,
            out,
            folder / "fleet_moment.png",
        ),
    ]
    index = folder / INDEX
    index.write_text(render_html(result, pictures), encoding="utf-8")
    return index


__all__ = [
    "Picture",
    "find_takeover",
    "plot_families",
    "plot_fleet_moment",
    "plot_loss",
    "plot_moment",
    "plot_nines",
    "read_losses",
    "render_html",
    "running_mean",
    "write_report",
]
