"""The loop report's page: ``index.html`` from a loop result and its pictures.

Every string put into the page is HTML-escaped, since paths, reasons and config values come
from the user. The page is self-contained (relative image paths).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Picture:
    """One image of the page: its file (None when skipped) and a line about it."""

    title: str
    file: str | None
    note: str


# ----------------------------------------------------------------------------- helpers
def as_number(value: Any) -> float | None:
    """A finite-or-infinite float, or None for a missing/non-numeric value."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def fmt_number(value: Any, digits: int = 2) -> str:
    x = as_number(value)
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def upper_bound(value: Any) -> float:
    """An upper bound: None (open, as loop.json writes it) reads as +inf."""
    x = as_number(value)
    return math.inf if x is None else x


# ----------------------------------------------------------------------------- index.html
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _interval(r: dict[str, Any]) -> str:
    bound = ">=" if r.get("nines_is_bound") else ""
    return f"{bound}{fmt_number(r.get('nines'))} [{fmt_number(r.get('nines_low'))}, {fmt_number(upper_bound(r.get('nines_high')))}]"


def _count(value: Any) -> str:
    x = as_number(value)
    return "-" if x is None else f"{int(x):,}"


def noncritical_words(reasons: Any) -> str:
    """``too_slow 16, harsh_braking 4`` from an evaluation's ``reasons`` (non-critical only)."""
    if not isinstance(reasons, dict):
        return "-"
    parts = [
        f"{k.split(':', 1)[1]} {v}"
        for k, v in sorted(reasons.items())
        if isinstance(k, str) and k.startswith("noncritical:")
    ]
    return ", ".join(parts) or "none"


def _moments_cell(r: dict[str, Any]) -> str:
    m = r.get("moments")
    if not isinstance(m, dict):
        return "-"
    return f"{m.get('fixed', 0)} / {m.get('broken', 0)} of {m.get('paired', 0)}"


def _loop_row(r: dict[str, Any]) -> str:
    trig = ", ".join(f"{k} {v}" for k, v in (r.get("windows_by_trigger") or {}).items())
    windows = f"{r.get('windows', '-')} ({trig})" if trig else str(r.get("windows", "-"))
    verdict = "yes" if r.get("promoted") else f"no: {r.get('gate', '')}"
    cells = [
        r.get("loop", "-"),
        windows,
        fmt_number(r.get("train_loss"), 4),
        fmt_number(r.get("occupancy_iou")),
        _count(r.get("decisions")),
        _count(r.get("critical_interventions")),
        _interval(r),
        _count((r.get("against_eval") or {}).get("critical_interventions")),
        _moments_cell(r),
        noncritical_words(r.get("reasons")),
        verdict,
    ]
    cls = ' class="promoted"' if r.get("promoted") else ""
    return f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>"


def _loops_table(rows: list[dict[str, Any]]) -> str:
    head = [
        "loop",
        "windows (by trigger)",
        "train loss",
        "occupancy IoU",
        "decisions",
        "critical",
        "nines [low, high]",
        "deployed, same seeds: critical",
        "drives fixed / broken",
        "non-critical by reason",
        "promoted / gate reason",
    ]
    body = (
        "\n".join(_loop_row(r) for r in rows) or '<tr><td colspan="11">no loop completed</td></tr>'
    )
    return (
        "<table>\n<tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr>\n"
        + body
        + "\n</table>"
    )


def _baseline_line(name: str, r: dict[str, Any] | None) -> str:
    if not r:
        return f"<li>{_e(name)}: not measured</li>"
    return (
        f"<li><b>{_e(name)}</b>: {_e(_count(r.get('critical_interventions')))} critical in "
        f"{_e(_count(r.get('decisions')))} decisions, nines {_e(_interval(r))}; "
        f"non-critical: {_e(noncritical_words(r.get('reasons')))}</li>"
    )


def _moments_section(rows: list[dict[str, Any]]) -> str:
    """Per turn, the held-out drives the candidate fixed or broke against the deployed model."""
    items = []
    for r in rows:
        m = r.get("moments")
        if not isinstance(m, dict):
            continue
        for kind in ("fixed", "broken"):
            listed = ", ".join(
                f"{x['family']} seed {x['seed']} ({x['deployed']} → {x['candidate']})"
                for x in m.get(f"{kind}_moments", [])
            )
            more = m.get(kind, 0) - len(m.get(f"{kind}_moments", []))
            listed += f", and {more} more" if more > 0 else ""
            items.append(
                f"<li>loop {_e(r.get('loop'))} {kind} {_e(m.get(kind, 0))}: {_e(listed or '-')}</li>"
            )
    if not items:
        return "<p>No paired evaluations (older loop files).</p>"
    return (
        "<p>Drives on the turn's fresh seeds where the deployed model had a critical "
        "intervention and the candidate none (fixed), or the reverse (broken); critical "
        "counts deployed → candidate.</p>\n<ul>" + "\n".join(items) + "</ul>"
    )


def _fleet_moments_section(rows: list[dict[str, Any]]) -> str:
    """Per turn, the fleet's own critical moments (the loop's regression suite) the candidate
    fixed or broke against the deployed model, and the rule's verdict."""
    items = []
    for r in rows:
        m = r.get("suite_moments")
        if not isinstance(m, dict):
            continue
        head = (
            f"loop {r.get('loop')}: {m.get('verdict')} (rule {m.get('rule')}); passed: candidate "
            f"{m.get('candidate_passed')}, deployed {m.get('deployed_passed')} of {m.get('paired')}"
        )
        parts = []
        for kind in ("fixed", "broken"):
            listed = ", ".join(
                f"{x.get('source') or x['drive']} at {float(x['t_s']):.1f} s ({x.get('trigger')})"
                for x in m.get(f"{kind}_moments", [])
            )
            more = m.get(kind, 0) - len(m.get(f"{kind}_moments", []))
            listed += f", and {more} more" if more > 0 else ""
            parts.append(f"{kind} {m.get(kind, 0)}: {listed or '-'}")
        items.append(f"<li>{_e(head)}<br>{_e('; '.join(parts))}</li>")
    if not items:
        return "<p>No regression suite of fleet moments (older loop files).</p>"
    return (
        "<p>Every critical moment the fleet met so far (takeovers, collisions), replayed from "
        "5 s before it with the candidate and with the deployed model (<code>moments.toml</code>; "
        "docs/replay.md). Broken: the deployed model passes it, the candidate fails it.</p>\n<ul>"
        + "\n".join(items)
        + "</ul>"
    )


def _verdict(v: Any, deployed: str, other: str) -> str:
    if not isinstance(v, dict):
        return f"not compared with {other}"
    p = (
        fmt_number(v.get("p_value"), 3)
        if as_number(v.get("p_value")) is None
        else f"{float(v['p_value']):.2g}"
    )
    if not v.get("significant"):
        return f"not significantly different from {other} (Fisher p = {p})"
    side = "safer" if v.get("safer") == deployed else "less safe"
    return f"significantly {side} than {other} (Fisher p = {p})"


def _deployed_section(result: dict[str, Any]) -> str:
    dep = result.get("deployed") or {}
    policy = str(dep.get("policy", dep.get("model", "?")))
    lines = [
        f"<p>Deployed after {_e(len(result.get('loops', [])))} loop(s): <code>{_e(dep.get('model', '?'))}</code>"
        f" (loop {_e(dep.get('loop') if dep.get('loop') is not None else '-')}): "
        f"{_e(_count(dep.get('critical_interventions')))} critical in {_e(_count(dep.get('decisions')))} "
        f"decisions, nines {_e(_interval(dep))}.</p>",
        "<ul>",
        f"<li>versus naive: {_e(_verdict(result.get('versus_naive'), policy, 'naive'))}</li>",
        f"<li>versus expert: {_e(_verdict(result.get('versus_expert'), policy, 'expert'))}</li>",
        "</ul>",
    ]
    if result.get("stopped_early"):
        lines.append(f"<p>Stopped early: {_e(result['stopped_early'])}</p>")
    return "\n".join(lines)


def _picture_html(p: Picture) -> str:
    if p.file is None:
        return f'<h2>{_e(p.title)}</h2>\n<p class="skipped">{_e(p.note)}</p>'
    return (
        f'<h2>{_e(p.title)}</h2>\n<figure><img src="{_e(p.file)}" alt="{_e(p.title)}">'
        f"<figcaption>{_e(p.note)}</figcaption></figure>"
    )


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f0f0f0}tr.promoted td{background:#eef8ee}img{max-width:100%;border:1px solid #ddd}
.skipped{color:#a33}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}"""


def render_html(result: dict[str, Any], pictures: list[Picture]) -> str:
    """The page: title, loop table, baselines, verdict, pictures, config."""
    suite = result.get("suite", "?")
    config = json.dumps(result.get("config", {}), indent=1, default=str)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Dojo loop report: suite {_e(suite)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Dojo loop report</h1>\n<p>Held-out suite <code>{_e(suite)}</code>; "
        f"{_e(len(result.get('loops', [])))} loop(s) in {_e(fmt_number(as_number(result.get('wall_s')) or 0.0, 1))} s.</p>",
        "<h2>Loops</h2>",
        _loops_table(list(result.get("loops", []))),
        "<h2>Baselines (same suite, same seeds)</h2>",
        "<ul>"
        + _baseline_line("naive", result.get("naive"))
        + _baseline_line("expert", result.get("expert"))
        + "</ul>",
        "<h2>Deployed model</h2>",
        _deployed_section(result),
        "<h2>Moments fixed and broken between turns</h2>",
        _moments_section(list(result.get("loops", []))),
        "<h2>The fleet's moments (regression suite)</h2>",
        _fleet_moments_section(list(result.get("loops", []))),
        *(_picture_html(p) for p in pictures),
        f"<h2>Config</h2>\n<pre>{_e(config)}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


__all__ = [
    "Picture",
    "as_number",
    "fmt_number",
    "noncritical_words",
    "render_html",
    "upper_bound",
]
