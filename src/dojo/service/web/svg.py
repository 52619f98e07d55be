"""Inline SVG for the dashboard, drawn on the server: the ExaPOD map and the per-job charts.

Everything that comes from a job, a tenant or a metric row goes through :func:`esc` before it is
written; numbers are formatted here. The drawings use presentation attributes only (``fill``,
``stroke``), never ``style``, so the page's Content-Security-Policy needs no ``unsafe-inline``.

Map: top-level units (ExaPODs) stacked, cabinets side by side, trays stacked in a cabinet, tiles
in the grid closest to square in a tray (2 x 3). A tile held by one owner is one square; a tile
shared by several jobs, or partly free, shows its chips (5 x 5). Every tile and chip carries
``data-block`` (its name, e.g. ``exapod0/cabinet3/tray1/tile4``) and ``data-owner`` (a job id,
``busy``, ``free`` or, for a shared tile, ``mixed``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from dojo.compute.topology import Topology

FREE_FILL = "#e4e7eb"
BUSY_FILL = "#8d96a0"  # another tenant's allocation, anonymous
# distinct hues, no greys (those mean free and busy)
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#9c755f",
    "#ff9da7",
    "#1b9e77",
)

TILE_PX = 28.0
TILE_GAP_PX = 3.0
TRAY_PAD_PX = 4.0
TRAY_GAP_PX = 5.0
CAB_PAD_PX = 5.0
CAB_GAP_PX = 8.0
LABEL_PX = 14.0
POD_LABEL_PX = 18.0
POD_GAP_PX = 12.0


def esc(value: object) -> str:
    """Text for SVG/HTML content or a quoted attribute."""
    return html.escape(str(value), quote=True)


def shade(hex_colour: str, towards_white: float) -> str:
    """``hex_colour`` mixed with white (0: unchanged, 1: white)."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    t = min(max(towards_white, 0.0), 1.0)
    return "#" + "".join(f"{round(c + (255 - c) * t):02x}" for c in (r, g, b))


@dataclass(frozen=True)
class Owner:
    """Who holds chips on the map: a job (``key`` its id) or ``busy`` (someone else's)."""

    key: str
    label: str  # tooltip text, plain
    fill: str  # "#rrggbb"
    href: str | None = None


def _grid(n: int) -> tuple[int, int]:
    """(columns, rows) closest to square with columns >= rows that hold ``n`` cells."""
    rows = max(1, math.isqrt(n))
    while n % rows and rows > 1:
        rows -= 1
    cols = -(-n // rows)
    return (cols, rows) if cols >= rows else (rows, cols)


def map_svg(topology: Topology, owner_of_chip: Sequence[int], owners: Sequence[Owner]) -> str:
    """The hierarchy of a Dojo topology (levels chip, tile, tray, cabinet, ExaPOD) as SVG.

    ``owner_of_chip``: per chip, an index into ``owners`` or -1 when free.
    """
    if topology.top < 4:
        raise ValueError(
            f"the map draws ExaPOD topologies (chip/tile/tray/cabinet/exapod), not {topology!r}"
        )
    if len(owner_of_chip) != topology.total_chips:
        raise ValueError("owner_of_chip must have one entry per chip")
    cpt = topology.chips_per_block(1)
    tiles_per_tray = topology.levels[2].fanout
    trays_per_cab = topology.levels[3].fanout
    cabs_per_pod = topology.levels[4].fanout
    tcols, trows = _grid(tiles_per_tray)
    ccols, _ = _grid(cpt)
    tray_w = tcols * TILE_PX + (tcols - 1) * TILE_GAP_PX + 2 * TRAY_PAD_PX
    tray_h = trows * TILE_PX + (trows - 1) * TILE_GAP_PX + 2 * TRAY_PAD_PX
    cab_w = tray_w + 2 * CAB_PAD_PX
    cab_h = LABEL_PX + trays_per_cab * tray_h + (trays_per_cab - 1) * TRAY_GAP_PX + 2 * CAB_PAD_PX
    pod_w = cabs_per_pod * cab_w + (cabs_per_pod - 1) * CAB_GAP_PX
    pod_h = POD_LABEL_PX + cab_h
    width = pod_w + 2
    height = topology.count * pod_h + (topology.count - 1) * POD_GAP_PX + 2
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="map" role="img" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" aria-label="compute map">'
    ]
    cab_name, tray_name, tile_name = (topology.levels[i].name for i in (3, 2, 1))
    for pod in range(topology.count):
        py = 1 + pod * (pod_h + POD_GAP_PX)
        out.append(
            f'<text x="1" y="{py + 13:.1f}" class="pod-label" font-size="13" font-weight="600" '
            f'fill="#1f2933">{esc(topology.levels[4].name)}{pod}</text>'
        )
        for cab in range(cabs_per_pod):
            cx = 1 + cab * (cab_w + CAB_GAP_PX)
            cy = py + POD_LABEL_PX
            out.append(
                f'<rect x="{cx:.1f}" y="{cy:.1f}" width="{cab_w:.1f}" height="{cab_h:.1f}" rx="3" '
                'fill="#f7f8fa" stroke="#52606d" stroke-width="1"/>'
            )
            out.append(
                f'<text x="{cx + CAB_PAD_PX:.1f}" y="{cy + LABEL_PX - 2:.1f}" font-size="10" '
                f'fill="#52606d">{esc(cab_name)}{cab}</text>'
            )
            for tray in range(trays_per_cab):
                tx = cx + CAB_PAD_PX
                ty = cy + LABEL_PX + CAB_PAD_PX + tray * (tray_h + TRAY_GAP_PX)
                out.append(
                    f'<rect x="{tx:.1f}" y="{ty:.1f}" width="{tray_w:.1f}" height="{tray_h:.1f}" '
                    'rx="2" fill="#ffffff" stroke="#9aa5b1" stroke-width="0.8"/>'
                )
                for t in range(tiles_per_tray):
                    index = ((pod * cabs_per_pod + cab) * trays_per_cab + tray) * tiles_per_tray + t
                    x = tx + TRAY_PAD_PX + (t % tcols) * (TILE_PX + TILE_GAP_PX)
                    y = ty + TRAY_PAD_PX + (t // tcols) * (TILE_PX + TILE_GAP_PX)
                    name = (
                        f"{topology.levels[4].name}{pod}/{cab_name}{cab}/{tray_name}{tray}/"
                        f"{tile_name}{t}"
                    )
                    chips = owner_of_chip[index * cpt : (index + 1) * cpt]
                    out.append(
                        _tile(
                            name, x, y, chips, owners, ccols, index * cpt, topology.levels[0].name
                        )
                    )
    out.append("</svg>")
    return "".join(out)


def _tile(
    name: str,
    x: float,
    y: float,
    chips: Sequence[int],
    owners: Sequence[Owner],
    cols: int,
    first_chip: int,
    chip_name: str,
) -> str:
    held = set(chips)
    if len(held) == 1:
        (k,) = held
        owner = owners[k] if k >= 0 else None
        rect = (
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{TILE_PX}" height="{TILE_PX}" rx="2" '
            f'fill="{esc(owner.fill if owner else FREE_FILL)}" stroke="#3e4c59" stroke-width="0.5">'
            f"<title>{esc(name)}: {esc(owner.label if owner else 'free')}</title></rect>"
        )
        key = owner.key if owner else "free"
        body = f'<a href="{esc(owner.href)}">{rect}</a>' if owner and owner.href else rect
        return f'<g class="tile" data-block="{esc(name)}" data-owner="{esc(key)}">{body}</g>'
    # a shared tile: its chips
    parts = [
        f'<g class="tile" data-block="{esc(name)}" data-owner="mixed">'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{TILE_PX}" height="{TILE_PX}" rx="2" fill="{FREE_FILL}" '
        f'stroke="#3e4c59" stroke-width="0.5"><title>{esc(name)}: shared</title></rect>'
    ]
    step = (TILE_PX - 2) / cols
    for i, k in enumerate(chips):
        owner = owners[k] if k >= 0 else None
        cx = x + 1 + (i % cols) * step
        cy = y + 1 + (i // cols) * step
        label = owner.label if owner else "free"
        rect = (
            f'<rect x="{cx:.2f}" y="{cy:.2f}" width="{step - 0.6:.2f}" height="{step - 0.6:.2f}" '
            f'fill="{esc(owner.fill if owner else FREE_FILL)}" data-owner="{esc(owner.key if owner else "free")}">'
            f"<title>{esc(name)}/{esc(chip_name)}{first_chip + i}: {esc(label)}</title></rect>"
        )
        parts.append(f'<a href="{esc(owner.href)}">{rect}</a>' if owner and owner.href else rect)
    parts.append("</g>")
    return "".join(parts)


# --- charts ----------------------------------------------------------------------------------

CHART_W, CHART_H = 640.0, 260.0
PAD_L, PAD_R, PAD_T, PAD_B = 58.0, 16.0, 28.0, 36.0
MAX_POINTS = 300  # circles drawn per series; the line keeps up to MAX_LINE points
MAX_LINE = 2000


@dataclass(frozen=True)
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    colour: str


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    last = math.ceil(hi / step - 1e-9) * step
    return [round(first + k * step, 12) for k in range(round((last - first) / step) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.2g}"
    return f"{v:.6g}" if a >= 1 else f"{v:.3g}"


def _thin(n: int, most: int) -> list[int]:
    """Indices of at most ``most`` of ``n`` items, evenly spread, first and last kept."""
    if n <= most:
        return list(range(n))
    step = (n - 1) / (most - 1)
    return sorted({round(i * step) for i in range(most)})


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    band: tuple[Sequence[float], Sequence[float], Sequence[float]] | None = None,
    log_y: bool = False,
    chart_id: str = "",
) -> str:
    """A line chart with a point for each value (and an optional shaded band: xs, lows, highs)."""
    ys_all = [y for s in series for y in s.ys] + ([*band[1], *band[2]] if band else [])
    xs_all = [x for s in series for x in s.xs] + (list(band[0]) if band else [])
    if log_y:
        ys_all = [y for y in ys_all if y > 0]
    if not ys_all or not xs_all:
        return ""
    ty = (lambda v: math.log10(v)) if log_y else (lambda v: v)  # noqa: E731
    y_lo, y_hi = min(ty(y) for y in ys_all), max(ty(y) for y in ys_all)
    if log_y:
        y_lo, y_hi = math.floor(y_lo), math.ceil(y_hi)
        y_ticks = (
            [float(v) for v in range(int(y_lo), int(y_hi) + 1)] if y_hi > y_lo else [y_lo, y_lo + 1]
        )
    else:
        y_ticks = nice_ticks(y_lo, y_hi)
    y_lo, y_hi = min(y_ticks[0], y_lo), max(y_ticks[-1], y_hi)
    if y_hi <= y_lo:
        y_hi = y_lo + 1
    x_lo, x_hi = min(xs_all), max(xs_all)
    if x_hi <= x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    x_ticks = [t for t in nice_ticks(x_lo, x_hi, 6) if x_lo <= t <= x_hi]
    iw, ih = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B

    def px(x: float) -> float:
        return PAD_L + (x - x_lo) / (x_hi - x_lo) * iw

    def py(y: float) -> float:
        return PAD_T + (1 - (ty(y) - y_lo) / (y_hi - y_lo)) * ih

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {CHART_W:.0f} {CHART_H:.0f}" width="{CHART_W:.0f}" height="{CHART_H:.0f}" '
        f'id="{esc(chart_id)}" aria-label="{esc(title)}">',
        f'<text x="{PAD_L:.0f}" y="17" font-size="13" font-weight="600" fill="#1f2933">{esc(title)}</text>',
        f'<rect x="{PAD_L:.0f}" y="{PAD_T:.0f}" width="{iw:.0f}" height="{ih:.0f}" fill="#ffffff" '
        'stroke="#9aa5b1" stroke-width="0.8"/>',
    ]
    for t in y_ticks:
        y = PAD_T + (1 - (t - y_lo) / (y_hi - y_lo)) * ih
        label = _fmt(10**t) if log_y else _fmt(t)
        out.append(
            f'<line x1="{PAD_L:.0f}" x2="{PAD_L + iw:.0f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7eb"/>'
            f'<text x="{PAD_L - 5:.0f}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#52606d">{esc(label)}</text>'
        )
    for t in x_ticks:
        x = px(t)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T + ih:.0f}" y2="{PAD_T + ih + 4:.0f}" '
            f'stroke="#9aa5b1"/><text x="{x:.1f}" y="{PAD_T + ih + 15:.0f}" font-size="10" '
            f'text-anchor="middle" fill="#52606d">{esc(_fmt(t))}</text>'
        )
    out.append(
        f'<text x="{PAD_L + iw / 2:.0f}" y="{CHART_H - 4:.0f}" font-size="11" text-anchor="middle" '
        f'fill="#52606d">{esc(x_label)}</text>'
        f'<text x="12" y="{PAD_T + ih / 2:.0f}" font-size="11" text-anchor="middle" fill="#52606d" '
        f'transform="rotate(-90 12 {PAD_T + ih / 2:.0f})">{esc(y_label)}</text>'
    )
    if band and band[0]:
        keep = _thin(len(band[0]), MAX_LINE)
        upper = [
            f"{px(band[0][i]):.1f},{py(band[2][i]):.1f}"
            for i in keep
            if not log_y or band[2][i] > 0
        ]
        lower = [
            f"{px(band[0][i]):.1f},{py(band[1][i]):.1f}"
            for i in reversed(keep)
            if not log_y or band[1][i] > 0
        ]
        out.append(
            f'<polygon class="band" points="{" ".join(upper + lower)}" fill="#59a14f" '
            'fill-opacity="0.18" stroke="none"><title>95% interval</title></polygon>'
        )
    for s in series:
        pts = [(x, y) for x, y in zip(s.xs, s.ys, strict=True) if not log_y or y > 0]
        if not pts:
            continue
        line = " ".join(
            f"{px(pts[i][0]):.1f},{py(pts[i][1]):.1f}" for i in _thin(len(pts), MAX_LINE)
        )
        out.append(
            f'<g class="series" data-series="{esc(s.name)}"><polyline points="{line}" fill="none" '
            f'stroke="{esc(s.colour)}" stroke-width="1.6"/>'
        )
        for i in _thin(len(pts), MAX_POINTS):
            x, y = pts[i]
            out.append(
                f'<circle class="point" cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.4" fill="{esc(s.colour)}">'
                f"<title>{esc(s.name)} {esc(_fmt(y))} at {esc(_fmt(x))}</title></circle>"
            )
        out.append("</g>")
    lx = PAD_L + iw
    for k, s in enumerate(reversed(series)):
        x = lx - 4 - k * 90
        out.append(
            f'<rect x="{x - 84:.0f}" y="8" width="10" height="10" fill="{esc(s.colour)}"/>'
            f'<text x="{x - 70:.0f}" y="17" font-size="10" fill="#1f2933">{esc(s.name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


# metric names the loss and nines charts show, or that are counters rather than measurements
CHARTED = frozenset({"step", "seq", "loss", "val_loss", "nines", "nines_low", "nines_high"})
NOT_CHARTED = frozenset({"epoch", "rank", "time", "samples", "tokens"})
MAX_OTHER_CHARTS = 6  # a tenant's script may report anything: its first few by name


def job_charts(rows: Sequence[tuple[int, dict[str, object]]]) -> list[str]:
    """The loss chart, the nines chart and one chart for each other value a job reports (a
    tenant's ``accuracy``, say) of its metric rows ``(seq, row)``; x is ``step`` when a row has
    one, else its sequence number. A chart with no values is left out."""
    loss: dict[str, tuple[list[float], list[float]]] = {"loss": ([], []), "val_loss": ([], [])}
    nines: tuple[list[float], list[float]] = ([], [])
    band: tuple[list[float], list[float], list[float]] = ([], [], [])
    has_step = any(_number(r.get("step")) is not None for _, r in rows)
    for seq, row in rows:
        x = _number(row.get("step")) if has_step else float(seq)
        if x is None:
            continue
        for key, (xs, ys) in loss.items():
            y = _number(row.get(key))
            if y is not None:
                xs.append(x)
                ys.append(y)
        n = _number(row.get("nines"))
        if n is not None:
            nines[0].append(x)
            nines[1].append(n)
        lo, hi = _number(row.get("nines_low")), _number(row.get("nines_high"))
        if lo is not None and hi is not None:
            band[0].append(x)
            band[1].append(lo)
            band[2].append(hi)
    x_label = "step" if has_step else "row"
    charts = []
    loss_series = [
        Series(k, xs, ys, c)
        for (k, (xs, ys)), c in zip(loss.items(), ("#4e79a7", "#f28e2b"), strict=True)
        if ys
    ]
    if loss_series:
        values = [y for s in loss_series for y in s.ys]
        log_y = min(values) > 0 and max(values) / min(values) > 100
        charts.append(
            line_chart(
                "Loss" + (" (log scale)" if log_y else ""),
                loss_series,
                x_label=x_label,
                y_label="loss",
                log_y=log_y,
                chart_id="chart-loss",
            )
        )
    if nines[1] or band[0]:
        charts.append(
            line_chart(
                "Nines (95% interval shaded)" if band[0] else "Nines",
                [Series("nines", nines[0], nines[1], "#2f6f3e")] if nines[1] else [],
                x_label=x_label,
                y_label="nines",
                band=band if band[0] else None,
                chart_id="chart-nines",
            )
        )
    other: dict[str, tuple[list[float], list[float]]] = {}
    for seq, row in rows:
        x = _number(row.get("step")) if has_step else float(seq)
        for key, value in row.items():
            y = _number(value)
            if x is None or y is None or key in CHARTED or key in NOT_CHARTED:
                continue
            if key not in other and len(other) >= MAX_OTHER_CHARTS:
                continue
            xs, ys = other.setdefault(key, ([], []))
            xs.append(x)
            ys.append(y)
    for key in sorted(other):
        xs, ys = other[key]
        safe = "".join(c if c.isalnum() else "-" for c in key)[:40]
        charts.append(
            line_chart(
                key,
                [Series(key, xs, ys, "#76b7b2")],
                x_label=x_label,
                y_label=key,
                chart_id=f"chart-{safe}",
            )  # fmt: skip
        )
    return [c for c in charts if c]
