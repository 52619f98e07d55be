"""The resume position: windows consumed per shard, saved JSON-safe, restored, merged over ranks.

A shard's order is fixed before it decodes anything, so "how many windows of each shard were
consumed" is a complete position. :class:`_Position` holds the bookkeeping
:class:`~dojo.data.loader.WindowDataset` inherits; :func:`merge_states` combines the ranks' dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dojo.errors import ConfigError
from dojo.validate import whole

STATE_FORMAT = "dojo-loader-position"
STATE_VERSION = 1


class _Position:
    """A :class:`~dojo.data.loader.WindowDataset`'s position in its epoch (see the module docstring)."""

    epoch: int
    rank: int
    world_size: int
    fingerprint: str

    def _reset_position(self) -> None:
        self._resume: dict[int, int] = {}  # shard -> windows already consumed when iteration starts
        self._resume_shards: int | None = None
        self._resume_next: dict[int, int] = {}  # rank -> local shard its DataLoader serves first
        self._seen: dict[int, int] = {}  # shard -> windows consumed in this pass
        self._seen_shards: int | None = None
        self._last: dict[int, int] = {}  # rank -> local shard of the last consumed window

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning (call before each epoch, as with DistributedSampler)."""
        self.epoch = whole("epoch", epoch, 0)
        self._reset_position()

    def observe(self, batch: Mapping[str, Any]) -> None:
        """Record that a batch (or one window) was consumed, for :meth:`state_dict`.

        Iterating the dataset in this process records itself, and :class:`WindowLoader` calls
        this for each batch it hands over; with a DataLoader of your own and workers (which
        produce the windows in copies of the dataset), pass each batch here as you use it.
        """
        try:
            shard, shards, position = (
                np.atleast_1d(np.asarray(batch[k])).astype(np.int64)
                for k in ("shard", "shards", "position")
            )
        except KeyError as e:
            raise ConfigError(
                f"observe() needs a batch from this loader; it has no {e.args[0]!r}."
            ) from None
        if len(shard) == 0:
            return
        if len(set(shards.tolist())) != 1:
            raise ConfigError(
                f"observe() got windows read with different shard counts {sorted(set(shards.tolist()))}."
            )
        self._record(int(shards[0]), shard.tolist(), position.tolist())

    def _record(self, shards: int, shard: list[int], position: list[int]) -> None:
        self._seen_shards = shards
        for s, p in zip(shard, position, strict=True):
            self._seen[s] = p + 1  # a shard's windows come in order: the last one is the furthest
        workers = max(1, shards // self.world_size)
        last = shard[-1]
        self._last[last // workers] = last % workers

    def state_dict(self) -> dict[str, Any]:
        """The position in the epoch, JSON-safe: windows consumed per shard, and who serves next.

        In DDP each rank knows its own shards; combine the ranks' dicts with :func:`merge_states`.
        """
        shards = self._seen_shards if self._seen_shards is not None else self._resume_shards
        positions = dict(self._resume)
        positions.update(self._seen)
        next_worker = dict(self._resume_next)
        if shards is not None:
            workers = max(1, shards // self.world_size)
            next_worker.update({r: (w + 1) % workers for r, w in self._last.items()})
            mine = range(self.rank * workers, (self.rank + 1) * workers)
            positions = {s: p for s, p in positions.items() if s in mine}
            next_worker = {r: w for r, w in next_worker.items() if r == self.rank}
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "epoch": self.epoch,
            "world_size": self.world_size,
            "shards": shards,
            "positions": {str(s): int(p) for s, p in sorted(positions.items()) if p > 0},
            "next_worker": {str(r): int(w) for r, w in sorted(next_worker.items())},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved position: the next iteration yields the rest of that epoch."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ConfigError(
                "The state is not a saved loader position (no 'format': 'dojo-loader-position')."
            )
        if state.get("version") != STATE_VERSION:
            raise ConfigError(
                f"The saved loader position is version {state.get('version')!r}; this Dojo reads {STATE_VERSION}."
            )
        if state.get("fingerprint") != self.fingerprint:
            raise ConfigError(
                "The saved loader position is for other windows or order settings "
                "(specs, frames, stride, shuffle, buffer_windows or seed differ)."
            )
        try:
            epoch = whole("epoch", state["epoch"], 0)
            shards = None if state.get("shards") is None else whole("shards", state["shards"], 1)
            positions = {
                int(s): whole("position", p, 0) for s, p in dict(state["positions"]).items()
            }
            next_worker = {
                int(r): whole("next_worker", w, 0) for r, w in dict(state["next_worker"]).items()
            }
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"The saved loader position is malformed ({type(e).__name__}: {e})."
            ) from e
        self.set_epoch(epoch)
        self._resume, self._resume_shards, self._resume_next = positions, shards, next_worker


def merge_states(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One position from every DDP rank's :meth:`WindowDataset.state_dict` (gathered by the trainer)."""
    if not states:
        raise ConfigError("merge_states() needs at least one state.")
    first = dict(states[0])
    for s in states[1:]:
        for key in ("format", "version", "fingerprint", "epoch", "world_size"):
            if s.get(key) != first.get(key):
                raise ConfigError(
                    f"The ranks' loader positions differ in {key!r}; they are not from one run."
                )
    shards = {int(s["shards"]) for s in states if s.get("shards") is not None}
    if len(shards) > 1:
        raise ConfigError(
            f"The ranks' loader positions were taken with different shard counts {sorted(shards)}."
        )
    merged = {
        **first,
        "shards": shards.pop() if shards else None,
        "positions": {},
        "next_worker": {},
    }
    for s in states:
        merged["positions"].update(s["positions"])
        merged["next_worker"].update(s["next_worker"])
    return merged
