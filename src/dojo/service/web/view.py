"""What the dashboard's pages show, from rows the queries read: the compute map (which chips each
placed job holds, drawn over as many ExaPODs as the placements need), and the short texts of
the tables (where a job runs, when something happened).

Placements arrive typed (:class:`~dojo.service.placement.Placement`); the chips they name are
found here, on the map's topology. A placement whose names or chips are not on the map is
counted under "could not be drawn"; GPU jobs are listed under the map.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple
from urllib.parse import quote

from dojo.compute.specs import load_family
from dojo.compute.topology import Topology
from dojo.errors import DojoConfigError
from dojo.service.placement import Placement
from dojo.service.store.schema import aware
from dojo.service.web.session import ROOT, Viewer
from dojo.service.web.svg import BUSY_FILL, PALETTE, Owner, map_svg, shade

MAX_PODS = 8  # ExaPODs the map will draw
MAX_HOST_CHARS = 200
_UNIT_RE = re.compile(r"^/?exapod(\d+)(/|$)")
_SYSTEM_RE = re.compile(r"^exapod(?::(\d+))?$")  # the scheduler's "system", e.g. exapod:2


class PlacedJob(NamedTuple):
    """A job that holds compute, as the map query reads it (``placement`` None: unreadable)."""

    id: str
    tenant_id: str
    name: str
    status: str
    placement: Placement | None
    tenant_name: str


@cache
def exapods(count: int) -> Topology:
    return Topology(load_family("dojo.toml"), "exapod", count)


def when(t: datetime | None) -> str:
    t = aware(t)
    return t.strftime("%Y-%m-%d %H:%M:%SZ") if t else "–"


def where(placement: Placement | None, stored: Any) -> str:
    """A short summary of a placement for tables (``stored``: the column, for "placed" when it
    holds something that cannot be read)."""
    if placement is None:
        return "placed" if stored else "–"
    if placement.gpu and placement.count is not None:
        return f"{placement.count} GPUs"
    if placement.block:
        return placement.block
    for names in (placement.blocks, placement.tiles, placement.hosts):
        if names:
            more = f" (+{len(names) - 1})" if len(names) > 1 else ""
            return f"{names[0]}{more}"
    if placement.chip_ranges:
        n = len(placement.chips)
        return f"{n} chip{'s' if n != 1 else ''}"
    return "placed"


def placement_chips(placement: Placement, topology: Topology) -> list[int] | None:
    """The chips of ``topology`` a placement names, or None when it names none (a GPU job).

    Its ``chip_ranges`` if it has them, else the first of ``blocks`` (block names at any level,
    e.g. ``exapod0/cabinet3/tray1/tile4``), ``tiles`` (tile names or tile numbers) and ``block``
    (one name: the whole block) that names any. A name or chip outside the topology raises
    ValueError.
    """
    total = topology.total_chips
    chips: list[int] = []
    try:
        if placement.chip_ranges is not None:
            for first, stop in placement.chip_ranges:
                if stop > total:
                    raise ValueError(f"chip range {[first, stop]} is outside 0..{total}")
                chips.extend(range(first, stop))
        else:
            named: tuple[Sequence[str | int], ...] = (
                placement.blocks or (),
                placement.tiles or (),
                (placement.block,) if placement.block else (),
            )
            entries = next((e for e in named if e), ())  # the first that names any block
            for entry in entries:
                if isinstance(entry, int):  # a tile number
                    chips.extend(topology.block(1, entry).chips)
                else:
                    chips.extend(topology.find(entry).chips)
    except DojoConfigError as e:
        raise ValueError(str(e)) from None
    if not chips:
        return None
    if max(chips) >= total:
        raise ValueError(f"chip numbers must be within 0..{total - 1}")
    return chips


def units_needed(placements: Iterable[Placement]) -> int:
    """How many ExaPODs the map needs to show every placement (1 at least, MAX_PODS at most)."""
    top = 0
    per_unit = exapods(1).total_chips
    for p in placements:
        names: list[str | int] = [
            *(p.blocks or ()),
            *(p.tiles or ()),
            *([p.block] if p.block else []),
        ]
        for name in names:
            m = _UNIT_RE.match(name) if isinstance(name, str) else None
            if m:
                top = max(top, int(m.group(1)))
        m = _SYSTEM_RE.match(p.system) if p.system is not None else None
        if m:
            top = max(top, int(m.group(1) or 1) - 1)
        for _first, stop in p.chip_ranges or ():
            if stop > 0:
                top = max(top, (stop - 1) // per_unit)
    return min(max(1, top + 1), MAX_PODS)


@dataclass
class MapView:
    svg: str
    summary: str
    legend: list[dict[str, Any]]
    gpu_jobs: list[dict[str, Any]]
    unplaced: str


def compute_map(rows: Sequence[PlacedJob], viewer: Viewer) -> MapView:
    """The map of every placed job: the viewer's own (all, for an admin) by name, others as busy."""
    topology = exapods(units_needed(r.placement for r in rows if r.placement is not None))
    busy = Owner(key="busy", label="busy", fill=BUSY_FILL)
    owners: list[Owner] = [busy]
    owner_of_chip = [-1] * topology.total_chips
    legend: dict[str, list[dict[str, Any]]] = {}
    gpu_jobs: list[dict[str, Any]] = []
    tenant_colour: dict[str, str] = {}
    bad = overlaps = 0
    used = {"yours": 0, "busy": 0}
    for job_id, tenant_id, name, status, placement, tenant_name in rows:
        mine = viewer.admin or tenant_id == viewer.tenant_id
        if mine:
            group = legend.setdefault(tenant_name if viewer.admin else "", [])
            if viewer.admin:
                base = tenant_colour.setdefault(
                    tenant_name, PALETTE[len(tenant_colour) % len(PALETTE)]
                )
                fill = shade(base, (len(group) % 4) * 0.22)
            else:
                fill = PALETTE[len(group) % len(PALETTE)]
            who = f"{tenant_name}: " if viewer.admin else ""
            preempting = ", preempting" if placement is not None and placement.preempt else ""
            label = f"{who}{name or job_id} ({job_id}, {status}{preempting})"
            href = f"{ROOT}/jobs/{quote(job_id, safe='')}"
            owner = Owner(key=job_id, label=label, fill=fill, href=href)
            group.append({"label": f"{name or job_id} ({status})", "fill": fill, "href": href})
            owners.append(owner)
            index = len(owners) - 1
        else:
            owner, index = busy, 0
        if placement is None:
            bad += 1
            continue
        if placement.gpu:
            hosts = [h[:MAX_HOST_CHARS] for h in placement.hosts or ()]
            gpu_jobs.append(
                {
                    "label": owner.label if mine else "busy",
                    "href": owner.href if mine else None,
                    "gpus": placement.count if placement.count is not None else "?",
                    "hosts": ", ".join(hosts) or "–",
                }
            )
            continue
        try:
            chips = placement_chips(placement, topology)
        except ValueError:
            bad += 1
            continue
        for c in chips or ():
            if owner_of_chip[c] == -1:
                owner_of_chip[c] = index
                used["yours" if mine else "busy"] += 1
            else:
                overlaps += 1
    total = topology.total_chips
    free = total - used["yours"] - used["busy"]
    unit = f"{topology.count} ExaPOD{'s' if topology.count > 1 else ''}"
    if viewer.admin:
        summary = f"{unit}: {total:,} D1 chips; {used['yours']:,} held by jobs, {free:,} free."
    else:
        summary = (
            f"{unit}: {total:,} D1 chips; {used['yours']:,} held by your jobs, "
            f"{used['busy']:,} by other tenants, {free:,} free."
        )
    notes = []
    if bad:
        notes.append(f"{bad} placement{'s' if bad > 1 else ''} could not be drawn.")
    if overlaps:
        notes.append(f"{overlaps} chips are claimed by more than one job (the first is shown).")
    return MapView(
        svg=map_svg(topology, owner_of_chip, owners),
        summary=summary,
        legend=[{"title": k, "items": v} for k, v in legend.items()],
        gpu_jobs=gpu_jobs,
        unplaced=" ".join(notes),
    )
