"""Where a job runs: the typed value behind the ``jobs.placement`` column.

The scheduler (:mod:`dojo.service.sched.dispatch`) writes it when it places a job, the agent
reads how many devices it got, the dashboard draws it. In the job store it is JSON, written by
:meth:`Placement.to_dict`; :meth:`Placement.from_dict` reads that and every shape rows were
written in before this type existed, so old stores stay readable:

- the scheduler's chip placement: ``resource: chips``, ``system``, ``count``, ``block``,
  ``level``, ``contiguous``, ``chip_ranges`` (``[first, stop)`` pairs), ``tiles`` and ``hosts``
  (names), and ``preempt: true`` once the job is to be preempted;
- a GPU placement: ``resource: gpus``, ``count`` and optionally ``hosts`` (names, or objects
  with ``host``/``name``); a placement naming hosts and no chips is a GPU one;
- hand-written ones the dashboard has always drawn: ``chips`` (chip numbers or ``[first, stop)``
  pairs, read into ``chip_ranges``), ``blocks`` (block names, or objects with ``name`` or
  ``block``), ``tiles`` (tile names or tile numbers), ``block`` (one whole block), and a bare
  list of block names.

Structure is checked here (ValueError); whether the names and chips exist is a question for a
topology (:func:`dojo.service.web.view.placement_chips`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

CHIPS, GPUS = "chips", "gpus"
_CHIP_KEYS = ("chip_ranges", "chips", "blocks", "tiles", "block")


@dataclass(frozen=True)
class Placement:
    """The devices a job got (D1 chips, or GPUs as a count) and where they are.

    ``None`` marks a field the placement does not give (so that :meth:`to_dict` writes back what
    was read); ``kind`` is ``"chips"`` or ``"gpus"``.
    """

    kind: str
    count: int | None = None
    system: str | None = None  # the topology the chips are numbered in, e.g. "exapod:2"
    block: str | None = None  # the smallest block holding every chip ("" when it spans units)
    level: str | None = None  # that block's level
    contiguous: bool | None = None
    chip_ranges: tuple[tuple[int, int], ...] | None = None  # [first, stop) chip numbers
    tiles: tuple[str | int, ...] | None = None  # tile names (or tile numbers, hand-written)
    blocks: tuple[str, ...] | None = None  # whole blocks, by name (hand-written)
    hosts: tuple[str, ...] | None = None  # cabinets for chips, machines for GPUs
    preempt: bool = False  # the scheduler wants the job stopped (it resumes when placed again)

    @property
    def gpu(self) -> bool:
        return self.kind == GPUS

    @property
    def chips(self) -> list[int]:
        """The chip numbers of ``chip_ranges`` (none for a placement by block names)."""
        return [c for first, stop in self.chip_ranges or () for c in range(first, stop)]

    def preempting(self) -> Placement:
        return replace(self, preempt=True)

    @classmethod
    def for_chips(
        cls,
        *,
        system: str,
        chips: Iterable[int],
        block: str,
        level: str,
        contiguous: bool,
        tiles: Iterable[str],
        hosts: Iterable[str],
    ) -> Placement:
        chip_list = sorted(chips)
        return cls(
            kind=CHIPS,
            system=system,
            count=len(chip_list),
            block=block,
            level=level,
            contiguous=contiguous,
            chip_ranges=chip_ranges(chip_list),
            tiles=tuple(tiles),
            hosts=tuple(hosts),
        )

    @classmethod
    def for_gpus(cls, count: int) -> Placement:
        return cls(kind=GPUS, count=count)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of the ``placement`` column (keys in the scheduler's order)."""
        out: dict[str, Any] = {"resource": self.kind}
        for key in ("system", "count", "block", "level", "contiguous"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.chip_ranges is not None:
            out["chip_ranges"] = [[first, stop] for first, stop in self.chip_ranges]
        for key in ("tiles", "blocks", "hosts"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value)
        if self.preempt:
            out["preempt"] = True
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Placement:
        """Read a ``placement`` column in any shape it was written in (see the module doc)."""
        if isinstance(data, list):
            data = {"blocks": data}
        if not isinstance(data, dict):
            raise ValueError("placement is not an object")
        resource = data.get("resource")
        if resource not in (CHIPS, GPUS):
            has_chips = any(k in data for k in _CHIP_KEYS)
            resource = GPUS if "hosts" in data and not has_chips else CHIPS
        count = data.get("count")
        ranges = None
        if data.get("chip_ranges") is not None:
            ranges = tuple(_pair(item, "chip range") for item in _list(data["chip_ranges"]))
        elif data.get("chips") is not None:
            ranges = tuple(_chip_entry(item) for item in _list(data["chips"]))
        return cls(
            kind=resource,
            count=count if _is_int(count) else None,
            system=_str_or_none(data.get("system")),
            block=_block(data.get("block")),
            level=_str_or_none(data.get("level")),
            contiguous=data["contiguous"] if isinstance(data.get("contiguous"), bool) else None,
            chip_ranges=ranges,
            tiles=_tiles(data.get("tiles")),
            blocks=_blocks(data.get("blocks")),
            hosts=_hosts(data.get("hosts")),
            preempt=bool(data.get("preempt")),
        )


def read(column: Any) -> Placement | None:
    """The placement of a row: None when it has none, or one that cannot be read (a hand-edited
    row must not stop a scheduling pass or an agent; the dashboard reports those)."""
    if not column:
        return None
    try:
        return Placement.from_dict(column)
    except ValueError:
        return None


def chip_ranges(chips: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """``[0, 1, 2, 7]`` -> ``((0, 3), (7, 8))`` (half-open ranges)."""
    out: list[list[int]] = []
    for c in sorted(chips):
        if out and out[-1][1] == c:
            out[-1][1] = c + 1
        else:
            out.append([c, c + 1])
    return tuple((a, b) for a, b in out)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("placement chips is not a list")
    return value


def _pair(item: Any, what: str) -> tuple[int, int]:
    if not (isinstance(item, list) and len(item) == 2 and all(_is_int(v) for v in item)):
        raise ValueError(f"{what} {item!r} is not a [first, stop) pair")
    first, stop = item
    if not 0 <= first <= stop:
        raise ValueError(f"{what} {item} is not a [first, stop) pair of chip numbers")
    return first, stop


def _chip_entry(item: Any) -> tuple[int, int]:
    if _is_int(item):
        return item, item + 1
    if isinstance(item, list):
        return _pair(item, "chip range")
    raise ValueError(f"chip entry {item!r} is neither a number nor a [first, stop) pair")


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _block(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"block entry {value!r} is not a block name")


def _names(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [value]
    if isinstance(value, list):
        return [v.get("name", v.get("block")) if isinstance(v, dict) else v for v in value]
    raise ValueError(f"placement {key!r} is neither a name nor a list")


def _tiles(value: Any) -> tuple[str | int, ...] | None:
    if value is None:
        return None
    out: list[str | int] = []
    for entry in _names(value, "tiles"):
        if not (isinstance(entry, str) or _is_int(entry)):
            raise ValueError(f"tiles entry {entry!r} is not a block name")
        out.append(entry)
    return tuple(out)


def _blocks(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    out: list[str] = []
    for entry in _names(value, "blocks"):
        if not isinstance(entry, str):
            raise ValueError(f"blocks entry {entry!r} is not a block name")
        out.append(entry)
    return tuple(out)


def _hosts(value: Any) -> tuple[str, ...] | None:
    """Host names; entries that name none are left out (hosts are informational)."""
    if not isinstance(value, list):
        return None
    out = []
    for h in value:
        name = h.get("host", h.get("name")) if isinstance(h, dict) else h
        if isinstance(name, str) and name:
            out.append(name)
    return tuple(out)
