"""Dataset statistics and the dataset card (Markdown) of one version, and how it was made.

Pure: a manifest in, Markdown out, so the card can be written before the manifest (a reader who
finds a card without a manifest knows the version was never finished).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

SPLITS = ("train", "val")


def totals(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    es = list(entries)
    seconds = sum(e["seconds"] for e in es)
    return {
        "windows": len(es),
        "frames": sum(e["frames"] for e in es),
        "seconds": round(seconds, 6),
        "hours": round(seconds / 3600.0, 6),
        "drives": len({e["drive_id"] for e in es}),
        "clips": len({e["clip_id"] for e in es}),
    }


def grouped(entries: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Totals per value of ``key`` (a list-valued key counts an entry under each of its values)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        values = e[key] if isinstance(e[key], list) else [e[key]]
        for v in values:
            groups[str(v)].append(e)
    return {k: totals(v) for k, v in sorted(groups.items())}


def statistics(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts overall, per split, per trigger, per scenario family and per label source."""
    return {
        **totals(entries),
        "splits": {s: totals(e for e in entries if e["split"] == s) for s in SPLITS},
        "per_trigger": grouped(entries, "triggers"),
        "per_family": grouped(entries, "family"),
        "per_label_source": grouped(entries, "label_source"),
    }


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _row(label: str, t: Mapping[str, Any]) -> list[Any]:
    return [label, t["windows"], t["drives"], t["frames"], f"{t['seconds']:.1f}"]


def card(manifest: Mapping[str, Any]) -> str:
    """The dataset card: Markdown statistics of one version, and how it was made."""
    t, recipe, mining = manifest["totals"], manifest["recipe"], manifest.get("mining", {})
    split = manifest["split"]
    # a recipe mines one window for all its triggers, or (the loop's) several parts, each its own
    parts = recipe.get("parts") or [
        {"triggers": recipe["triggers"], "window_s": recipe["window_s"]}
    ]
    windows = "; ".join(
        f"{p['window_s'][0]:+g} s to {p['window_s'][1]:+g} s around each moment of {', '.join(p['triggers'])}"
        for p in parts
    )
    head = ["", "windows", "drives", "frames", "seconds"]
    out = [
        f"# Dataset {manifest['name']} v{manifest['version']}",
        "",
        f"Created {manifest['created_at']} by Dojo {manifest['dojo_version']} from the clip store "
        f"`{manifest['store']}`. Content hash `{manifest['content_hash']}`.",
        "",
        f"**{t['windows']} windows, {t['frames']} frames, {t['hours']:.4f} hours of video, "
        f"{t['drives']} drives, {t['clips']} clips.**",
        "",
        "Made by:",
        "",
        "```",
        str(recipe.get("command", "")),
        "```",
        "",
        f"Windows: {windows}, cut to the clips' frames; "
        f"sampled normal driving: {recipe['sample_normal']:g} of the untriggered slots (seed {recipe['seed']}).",
        "",
        "## Split",
        "",
        f"No drive is in both. Rule: {split['rule']} (val_share {split['val_share']:g}, seed {split['seed']}).",
        "",
        markdown_table(head, [_row(s, t["splits"][s]) for s in SPLITS] + [_row("all", t)]),
    ]
    if t["windows"] and not t["splits"]["val"]["windows"]:
        out += [
            "",
            f"**val is empty**: none of the {t['drives']} drives drew val; mine more drives "
            "or raise val_share for a validation set.",
        ]
    moments, dropped = mining.get("moments", {}), mining.get("dropped_no_video", {})
    per_trigger = t["per_trigger"]
    names = list(recipe["triggers"]) + ([n for n in per_trigger if n not in recipe["triggers"]])
    rows = []
    for n in names:
        g = per_trigger.get(n, totals([]))
        rows.append(
            [
                n,
                moments.get(n, ""),
                dropped.get(n, ""),
                g["windows"],
                g["frames"],
                f"{g['seconds']:.1f}",
            ]
        )
    out += [
        "",
        "## Per trigger",
        "",
        "A window that several triggers made counts under each; `normal` is sampled normal driving. "
        "Dropped: moments with no camera frame in their window (not uploaded by the car).",
        "",
        markdown_table(
            ["trigger", "moments", "dropped (no video)", "windows", "frames", "seconds"], rows
        ),
    ]
    slots = mining.get("normal_slots")
    if slots:
        out += [
            "",
            f"Normal driving: {slots.get('kept', 0)} of {slots.get('candidates', 0)} candidate slots kept.",
        ]
    out += [
        "",
        "## Per scenario family",
        "",
        markdown_table(
            ["family", "windows", "drives", "frames", "seconds"],
            [_row(k, v) for k, v in t["per_family"].items()],
        ),
        "",
        "## Label sources",
        "",
        "Who was driving for most of each window: the loop learns actions from `human` and "
        "`safety_driver` windows (HG-DAgger).",
        "",
        markdown_table(
            ["label source", "windows", "drives", "frames", "seconds"],
            [_row(k, v) for k, v in t["per_label_source"].items()],
        ),
        "",
    ]
    return "\n".join(out)


__all__ = ["SPLITS", "card", "grouped", "markdown_table", "statistics", "totals"]
