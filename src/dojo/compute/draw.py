"""A picture of the hierarchy with the jobs on it (``dojo plan --draw OUT.png``), drawn with Pillow.

Every chip is a small square inside nested frames, one frame a block at every level (tiles in
trays in cabinets in ExaPODs; GPUs in nodes in racks). Each level's children are laid out in the
grid closest to square; the top-level units in rows about twice as wide as tall. Free chips are
grey, each job has its colour, the highlighted job is orange.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from dojo.compute.placement import Allocator
from dojo.compute.topology import Topology
from dojo.errors import DojoConfigError

FREE = (205, 208, 214)
HIGHLIGHT = (243, 112, 33)
JOB_COLOURS = [
    (66, 133, 244),
    (52, 168, 83),
    (171, 71, 188),
    (0, 172, 193),
    (124, 179, 66),
    (141, 110, 99),
]
FRAME = [(120, 120, 120), (70, 90, 120), (40, 60, 100), (20, 30, 70), (0, 0, 0), (0, 0, 0)]
MAX_WIDTH_PX = 1800
HEADER_PX, FOOTER_PX, MARGIN_PX = 34, 40, 12


@dataclass(frozen=True)
class _Box:
    w: int
    h: int
    rows: int  # grid of children
    cols: int


def _gap(level: int) -> int:
    return 1 + 2 * level  # [px] space between children of a block of ``level``


def _grid(n: int, child_w: int, child_h: int, gap: int, aspect: float) -> tuple[int, int]:
    """(rows, cols) for ``n`` children whose block is closest to ``aspect`` (width / height)."""
    best: tuple[float, int, int] | None = None
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        w, h = cols * (child_w + gap), rows * (child_h + gap)
        score = abs(math.log(w / h / aspect)) + 0.01 * (rows * cols - n)
        if best is None or score < best[0]:
            best = (score, rows, cols)
    assert best is not None
    return best[1], best[2]


def _layout(topology: Topology, cell: int) -> list[_Box]:
    boxes = [_Box(cell, cell, 1, 1)]
    for li in range(1, topology.top + 1):
        child, gap = boxes[-1], _gap(li)
        rows, cols = _grid(topology.levels[li].fanout, child.w, child.h, gap, 1.0)
        boxes.append(_Box(cols * (child.w + gap) + gap, rows * (child.h + gap) + gap, rows, cols))
    top, gap = boxes[-1], _gap(topology.top + 1) + 4
    rows, cols = _grid(topology.count, top.w, top.h, gap, 2.0)
    boxes.append(_Box(cols * (top.w + gap) + gap, rows * (top.h + gap) + gap, rows, cols))
    return boxes


def draw_allocation(
    allocator: Allocator,
    out: str | Path,
    title: str = "",
    highlight: str | None = None,
    note: str = "",
) -> Path:
    """Write a PNG of ``allocator``'s topology and jobs to ``out``; the path."""
    path = Path(out)
    if path.suffix.lower() != ".png":
        raise DojoConfigError(f"draw: out={str(out)!r} must be a .png file.")
    topo = allocator.topology
    if topo.total_chips > 200_000:
        raise DojoConfigError(
            f"draw: {topo.total_chips:,} chips are too many to draw; draw a smaller system."
        )
    cell = 2
    for c in range(40, 1, -1):
        if _layout(topo, c)[-1].w + 2 * MARGIN_PX <= MAX_WIDTH_PX:
            cell = c
            break
    boxes = _layout(topo, cell)
    whole = boxes[-1]
    img = Image.new(
        "RGB", (max(whole.w + 2 * MARGIN_PX, 480), whole.h + HEADER_PX + FOOTER_PX), "white"
    )
    pen = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    owners = allocator.owners
    hl_slot = allocator.slot(highlight) if highlight in allocator.placements else None

    def colour(slot: int) -> tuple[int, int, int]:
        if slot < 0:
            return FREE
        return HIGHLIGHT if slot == hl_slot else JOB_COLOURS[slot % len(JOB_COLOURS)]

    def block(level: int, index: int, x: int, y: int) -> None:
        if level == 0:
            pen.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour(int(owners[index])))
            return
        box, child, gap = boxes[level], boxes[level - 1], _gap(level)
        pen.rectangle(
            [x, y, x + box.w - 1, y + box.h - 1], outline=FRAME[min(level, len(FRAME) - 1)]
        )
        fan = topo.levels[level].fanout
        for j in range(fan):
            r, c = divmod(j, box.cols)
            block(
                level - 1,
                index * fan + j,
                x + gap + c * (child.w + gap),
                y + gap + r * (child.h + gap),
            )

    top, gap = boxes[-2], _gap(topo.top + 1) + 4
    for k in range(topo.count):
        r, c = divmod(k, whole.cols)
        x, y = MARGIN_PX + gap + c * (top.w + gap), HEADER_PX + gap + r * (top.h + gap)
        block(topo.top, k, x, y)
    levels = " > ".join(
        f"{lv.name} x{lv.fanout}" if i else lv.part for i, lv in enumerate(topo.levels)
    )
    pen.text(
        (MARGIN_PX, 6),
        title or f"{topo.name}: {topo.total_chips:,} chips ({levels})",
        fill="black",
        font=font,
    )
    pen.text((MARGIN_PX, 20), levels if title else "", fill=(80, 80, 80), font=font)
    foot = (
        f"used {100 * allocator.utilization():.1f}%, fragmentation {100 * allocator.fragmentation():.1f}%"
        f"   grey: free   orange: this job   {note}"
    )
    pen.text((MARGIN_PX, img.height - FOOTER_PX + 12), foot, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


__all__ = ["draw_allocation"]
